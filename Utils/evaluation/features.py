"""Batched embedding extraction for evaluation: images and their horizontal flips, no_grad, eval mode, autocast.

The model sees exactly what the dataset yields (already normalised, see Datasets.transforms.normalize_image); the
flip is taken on the normalised tensor along the width axis, which equals normalising the flipped image.
Precision is chosen here with torch.autocast, never inside a model's forward. `fast=True` (the scripts' default)
runs a prepared copy of the model (Utils/evaluation/fast_inference.py: folded BN, channels_last); `fast=False`
runs the model as given.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from ..device import autocast, autocast_dtype, resolve_device
from .fast_inference import FastModel, default_batch_size

__all__ = ["extract_embeddings", "embed_batch"]


def _model_device(model: torch.nn.Module) -> torch.device | None:
    param = next(model.parameters(), None)
    return None if param is None else param.device


def embed_batch(model: torch.nn.Module, images: torch.Tensor, device: torch.device,
                dtype: torch.dtype | None, pad_to: int = 0) -> torch.Tensor:
    """(2n, D) embeddings of a host batch (n, 3, H, W) and of its flips, on `device`, float32. The copy overlaps
    the previous batch's compute (pinned memory, non_blocking); both views go through one forward (eval-mode
    layers treat samples independently, so zero rows padding the batch to `pad_to` change nothing and keep a
    compiled graph at one shape)."""
    images = images.to(device, non_blocking=True)
    n2 = 2 * images.shape[0]
    both = torch.cat([images, torch.flip(images, dims=[3])])
    if n2 < pad_to:
        both = torch.cat([both, both.new_zeros((pad_to - n2, *both.shape[1:]))])
    with autocast(device, dtype):
        return model(both)[:n2].float()


@torch.no_grad()
def extract_embeddings(model: torch.nn.Module, dataset: Dataset, batch_size: int = 128,
                       device: str | torch.device = "cpu", amp_dtype: str | torch.dtype | None = None,
                       num_workers: int = 0, desc: str = "embeddings",
                       progress: bool = True, fast: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of every dataset item and of its horizontal flip: two float32 arrays (M, D), in dataset order.

    Args:
        model: a backbone already on `device`; it is put in eval mode for the pass and its mode restored after.
        dataset: item i = float32 tensor (3, H, W) (or a tuple whose first element is that tensor).
        batch_size: images per forward (each also flipped); 0 = chosen for the device (fast_inference).
        amp_dtype: None for full precision, torch.bfloat16 / torch.float16, or a name (Utils.device.AMP_NAMES).
        fast: run `FastModel.prepare(model, ...)` (or `model` itself when it is a FastModel already).
    """
    if len(dataset) == 0:
        raise ValueError("cannot extract embeddings of an empty dataset")
    if batch_size < 0:
        raise ValueError(f"batch_size: must be >= 1 (or 0 for the device's default), got {batch_size}")
    dev = resolve_device(device)
    dtype = autocast_dtype(amp_dtype, dev)
    batch_size = batch_size or default_batch_size(dev)
    if fast or isinstance(model, FastModel):
        model = FastModel.prepare(model, dev, dtype, len(dataset))
    pad_to = 2 * batch_size if getattr(model, "compiled", False) else 0  # one shape: the graph is built once
    where = _model_device(model)
    if where is not None and (where.type != dev.type or (dev.index is not None and where.index != dev.index)):
        raise ValueError(f"model is on {where} but embeddings were asked on {dev}; move the model first")

    # pinned host batches on CUDA, so that the non_blocking copy in embed_batch is asynchronous
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda", drop_last=False,
                        **(dict(prefetch_factor=4) if num_workers else {}))
    emb = emb_flip = None
    done = 0
    was_training = model.training
    model.eval()
    try:
        with tqdm(total=len(dataset), desc=desc, unit="img", dynamic_ncols=True, disable=not progress) as bar:
            for batch in loader:
                images = batch[0] if isinstance(batch, (list, tuple)) else batch
                n = images.shape[0]
                out = embed_batch(model, images, dev, dtype, pad_to).cpu().numpy()  # the batch's one device read
                if emb is None:
                    emb = np.empty((len(dataset), out.shape[1]), dtype=np.float32)
                    emb_flip = np.empty_like(emb)
                emb[done:done + n] = out[:n]
                emb_flip[done:done + n] = out[n:2 * n]
                done += n
                bar.update(n)
    finally:
        model.train(was_training)
    if done != len(dataset):
        raise RuntimeError(f"the data loader yielded {done} images for a dataset of {len(dataset)}")
    return emb, emb_flip
