"""Lists of images as the networks see them, and folders of identities.

- `ImageList`: image files (optionally under a root) or encoded bytes -> float32 (3, H, W) network inputs:
  decoded, fitted to the input's aspect ratio (`fit`), resized, channel order applied, (x - 127.5) / 128. Every
  evaluation set (verification pairs, MegaFace lists, identity folders) reads its images through it. A missing or
  undecodable image raises `DataFormatError` naming it: a benchmark score computed on a silently shrunken set
  would not be comparable with published numbers.
- `scan_identity_folders`: `root/<identity>/<image>` -> relative image paths, labels and identity names.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataFormatError, DataPathError
from .transforms import FIT_MODES, decode_image, fit_image, normalize_image

__all__ = ["IMAGE_EXTENSIONS", "ImageList", "IdentityFolder", "scan_identity_folders"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff")


class ImageList(Dataset):
    """Item i = network input of image i.

    Args:
        items: file paths (relative to `root` when it is given) or encoded image bytes.
        input_hw: network input (H, W).
        color_order: "RGB" or "BGR" (channel order the network sees).
        fit: "stretch" | "crop" | "pad" for images of another aspect ratio (Datasets.transforms.fit_image).
        root: folder the paths are relative to; it must exist.
        source: what the list came from, for messages about encoded images ("lfw.bin: image 7 ...").
    """

    def __init__(self, items: Sequence[str | bytes], input_hw: Sequence[int] = (112, 112), color_order: str = "RGB",
                 fit: str = "stretch", root: str | os.PathLike | None = None, source: str = ""):
        if fit not in FIT_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(FIT_MODES)}, got {fit!r}")
        if root is not None and not Path(root).is_dir():
            raise DataPathError(f"image root not found: {root}")
        self.items = items if isinstance(items, list) else list(items)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.color_order, self.fit, self.source = color_order, fit, source
        self.root = None if root is None else str(root)

    def __len__(self) -> int:
        return len(self.items)

    def path(self, i: int) -> str:
        """The file of item i (items given as bytes have none)."""
        item = self.items[i]
        return item if self.root is None else os.path.join(self.root, item)

    def __getitem__(self, i: int) -> torch.Tensor:
        item = self.items[i]
        if isinstance(item, (bytes, bytearray, memoryview)):
            source, where = item, f"{self.source}: image {i}"
        else:
            source = self.path(i)
            if self.root is not None and not os.path.isfile(source):
                raise DataFormatError(f"image not found: {source} (entry {i} of the list)")
            where = f"{source}:"
        try:
            img = decode_image(source)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for bad data
            raise DataFormatError(f"{where} cannot be decoded ({type(exc).__name__}: {exc})") from None
        return normalize_image(fit_image(img, self.input_hw, self.fit), self.input_hw, self.color_order)


@dataclass
class IdentityFolder:
    """Images of `root/<identity>/...`: paths relative to root, integer labels (index into `names`)."""
    root: str
    paths: list[str]
    labels: np.ndarray  # int64 (N,)
    names: list[str]

    def __len__(self) -> int:
        return len(self.paths)

    def files(self) -> list[str]:
        """The paths joined to the root."""
        return [os.path.join(self.root, p) for p in self.paths]


def _natural_key(name: str) -> list:
    # s2 before s10, 2.pgm before 10.pgm: the order a person reads the folder in
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def scan_identity_folders(root: str | os.PathLike, natural_order: bool = False, recursive: bool = True,
                          extensions: Sequence[str] = IMAGE_EXTENSIONS) -> IdentityFolder:
    """Every sub-folder of `root` is an identity, its image files (by extension, case-insensitive) its images.

    Identities holding no image are left out; labels number the others from 0 in folder order. `natural_order`
    sorts names as a person reads them (s2 before s10), else by code point (the list files' order); `recursive`
    takes images in nested sub-folders of an identity too. Paths use '/' whatever the OS. A missing root, or one
    with no images at all, is an error naming it.
    """
    root_path = Path(root)
    if not root_path.is_dir():
        raise FileNotFoundError(f"identity folder not found: {root}")
    exts = {e.lower() for e in extensions}
    key = (lambda name: _natural_key(Path(name).name)) if natural_order else None
    paths: list[str] = []
    labels: list[int] = []
    names: list[str] = []
    for ident in sorted((d.name for d in root_path.iterdir() if d.is_dir()), key=key):
        found = (root_path / ident).rglob("*") if recursive else (root_path / ident).iterdir()
        rel = sorted((str(f.relative_to(root_path)) for f in found if f.is_file() and f.suffix.lower() in exts),
                     key=key)
        if not rel:
            continue
        paths.extend(r.replace(os.sep, "/") for r in rel)
        labels.extend([len(names)] * len(rel))
        names.append(ident)
    if not paths:
        raise ValueError(f"{root}: no identity sub-folders with images ({', '.join(sorted(exts))})")
    return IdentityFolder(str(root), paths, np.asarray(labels, dtype=np.int64), names)
