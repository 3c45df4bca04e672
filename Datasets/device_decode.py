"""Optional JPEG decoding on the GPU for the .rec and folder training sets (`gpu_decode=true`).

At hundreds of images per second per GPU, decoding 112x112 JPEGs is what keeps a few CPU cores busy; nvJPEG
(torchvision.io.decode_jpeg with device="cuda") does it on the GPU. The loader workers then only read the encoded
bytes and draw the flip; the training step decodes the batch on its device, resizes where needed, flips and
normalises exactly as the CPU path does ((x - 127.5) / 128, channel order applied).

Where CUDA, torchvision's GPU decoder or a JPEG is missing (a PNG in the set), the batch is decoded on the CPU
(torchvision, else PIL) and copied: the result is the same images, only slower. The CPU path decodes with
libjpeg and resizes with antialiased bilinear interpolation, so it matches the PIL path to within a grey level or
two, not bitwise. A file no decoder reads is a DataFormatError naming it (this path has no skip policy).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .errors import DataFormatError
from .transforms import decode_image

__all__ = ["EncodedTrainSet", "collate_encoded", "decode_batch"]

_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, stacklevel=3)


class EncodedTrainSet(Dataset):
    """A FaceTrainDataset (rec / folder) whose items stay encoded: (bytes as uint8 tensor, label, 0, flip, name)."""

    def __init__(self, dataset):
        if dataset.augment and not dataset.augment.flip_only():
            raise ValueError("gpu_decode: only flips can be applied to images decoded on the GPU; the recipe holds "
                             + ", ".join(s.name for s in dataset.augment.specs if s.name != "flip"))
        self.dataset = dataset
        self.num_classes = dataset.num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        source, label, name = self.dataset._load(int(index))
        if not 0 <= label < self.num_classes:
            raise DataFormatError(f"{name}: label {label} outside [0, {self.num_classes})")
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                source = f.read()
        data = torch.frombuffer(bytearray(source), dtype=torch.uint8)
        # seeded per sample and epoch as the CPU path's flip (a resumed run draws the same)
        augment = self.dataset.augment
        flip = bool(augment) and augment.flip_drawn(index)
        return data, int(label), 0, flip, name


def collate_encoded(items):
    """(list of encoded uint8 tensors, labels int64, n_bad int64, flips bool, names)."""
    data, labels, bad, flips, names = zip(*items)
    return (list(data), torch.tensor(labels, dtype=torch.int64), torch.tensor(bad, dtype=torch.int64),
            torch.tensor(flips, dtype=torch.bool), list(names))


def _decode_cpu(data: torch.Tensor, name: str) -> torch.Tensor:
    """uint8 (3, h, w) RGB on the CPU: torchvision's decoder, PIL for what it does not read."""
    from torchvision.io import ImageReadMode, decode_image as tv_decode

    try:
        return tv_decode(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        pass
    try:
        img = decode_image(data.numpy().tobytes())
    except Exception as exc:
        raise DataFormatError(f"unreadable training image {name} ({type(exc).__name__}: {exc}); gpu_decode has no "
                              f"skip policy: set gpu_decode=false to skip bad images") from None
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)


def _decode(data: list[torch.Tensor], names: list[str], device: torch.device) -> list[torch.Tensor]:
    if device.type == "cuda":
        try:
            from torchvision.io import ImageReadMode, decode_jpeg

            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        except (RuntimeError, ImportError) as exc:  # no nvJPEG in this build, or a non-JPEG in the batch
            _warn_once(f"gpu_decode: decoding on the CPU instead ({type(exc).__name__}: {str(exc)[:120]})")
    return [_decode_cpu(d, n).to(device, non_blocking=True) for d, n in zip(data, names)]


def decode_batch(batch, device: torch.device, input_hw, color_order: str = "RGB") -> torch.Tensor:
    """A collate_encoded batch -> float32 (N, 3, H, W) on `device`, as the CPU path would have produced it."""
    data, _, _, flips, names = batch
    h, w = int(input_hw[0]), int(input_hw[1])
    out = torch.empty(len(data), 3, h, w, device=device)
    flips = flips.tolist()  # a host tensor from the loader: no device read
    for i, img in enumerate(_decode(data, names, device)):
        x = img.float()
        if x.shape[1:] != (h, w):
            x = F.interpolate(x[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
            x = x.round().clamp_(0, 255)  # the CPU path resizes uint8 images
        if flips[i]:
            x = x.flip(2)
        out[i] = x
    if color_order == "BGR":
        out = out.flip(1)
    elif color_order != "RGB":
        raise ValueError(f"color_order must be 'RGB' or 'BGR', got '{color_order}'")
    return (out - 127.5) / 128.0
