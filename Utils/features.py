"""Batched embedding extraction for evaluation: images and their horizontal flips, no_grad, eval mode, autocast.

The model sees exactly what the dataset yields (already normalised, see Datasets.transforms.normalize_image); the
flip is taken on the normalised tensor along the width axis, which equals normalising the flipped image.
Precision is chosen here with torch.autocast, never inside a model's forward.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["resolve_device", "resolve_amp_dtype", "extract_embeddings"]

_AMP_NAMES = {"none": None, "": None, "fp32": None, "float32": None,
              "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; "cuda" without a GPU is a one-line error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: '{device}' is not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: '{device}' requested but CUDA is not available (use --device=cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device: '{device}' does not exist ({torch.cuda.device_count()} GPU(s) visible)")
    return dev


def resolve_amp_dtype(amp: str | torch.dtype | None) -> torch.dtype | None:
    """None/"none" -> full precision; "bf16"/"bfloat16" and "fp16"/"float16" -> the autocast dtype."""
    if amp is None or isinstance(amp, torch.dtype):
        return amp
    key = str(amp).strip().lower()
    if key not in _AMP_NAMES:
        raise ValueError(f"amp: '{amp}' is not one of: none, bf16, fp16")
    return _AMP_NAMES[key]


def _model_device(model: torch.nn.Module) -> torch.device | None:
    param = next(model.parameters(), None)
    return None if param is None else param.device


@torch.no_grad()
def extract_embeddings(model: torch.nn.Module, dataset: Dataset, batch_size: int = 128,
                       device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
                       num_workers: int = 0, desc: str = "embeddings",
                       progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every dataset item and of its horizontal flip: two float32 arrays (M, D), in dataset order.

    Args:
        model: a backbone already on `device`; it is put in eval mode for the pass and its mode restored after.
        dataset: item i = float32 tensor (3, H, W) (or a tuple whose first element is that tensor).
        amp_dtype: None for full precision, or torch.bfloat16 / torch.float16 (names such as "bf16" accepted).
    """
    from tqdm import tqdm

    if len(dataset) == 0:
        raise ValueError("cannot extract embeddings of an empty dataset")
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    dtype = resolve_amp_dtype(amp_dtype)
    where = _model_device(model)
    if where is not None and (where.type != dev.type or (dev.index is not None and where.index != dev.index)):
        raise ValueError(f"model is on {where} but embeddings were asked on {dev}; move the model first")

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda", drop_last=False)
    emb = emb_flip = None
    done = 0
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(dataset), desc=desc, unit="img", dynamic_ncols=True, disable=not progress) as bar:
            for batch in loader:
                images = batch[0] if isinstance(batch, (list, tuple)) else batch
                images = images.to(dev, non_blocking=True)
                n = images.shape[0]
                # one forward for both views: eval-mode layers treat samples independently
                both = torch.cat([images, torch.flip(images, dims=[3])])
                with torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    out = model(both)
                out = out.float().cpu().numpy()
                if emb is None:
                    emb = np.empty((len(dataset), out.shape[1]), dtype=np.float32)
                    emb_flip = np.empty_like(emb)
                emb[done:done + n] = out[:n]
                emb_flip[done:done + n] = out[n:]
                done += n
                bar.update(n)
    finally:
        model.train(was_training)
    if done != len(dataset):
        raise RuntimeError(f"the data loader yielded {done} images for a dataset of {len(dataset)}")
    return emb, emb_flip
