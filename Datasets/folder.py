"""Image folder + list file: `root/<identity>/<image>` with lines `relative/path label`.

The list format is the seed's (`generate_dataset_list`): one image per line, the path (relative to the root, or
absolute) then the integer label, separated by whitespace; paths may contain spaces (the label is the last field).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["IMAGE_EXTENSIONS", "read_list_file", "scan_identity_folders", "write_list_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff")


def read_list_file(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(relative paths, int64 labels) of a list file; a malformed line or a negative label names file and line."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not a UTF-8 text list file ({exc.reason} at byte {exc.start})") from None
    names: list[str] = []
    labels: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(None, 1)
        try:
            if len(parts) != 2:
                raise ValueError
            label = int(parts[1])
        except ValueError:
            raise DataFormatError(f"{path}:{n}: expected 'relative/path label', got '{line[:80]}'") from None
        if label < 0:
            raise DataFormatError(f"{path}:{n}: label {label} is negative")
        names.append(parts[0])
        labels.append(label)
    if not names:
        raise DataFormatError(f"{path}: list file holds no images")
    return names, np.asarray(labels, dtype=np.int64)


def scan_identity_folders(root: str | os.PathLike,
                          extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> tuple[list[str], np.ndarray, list[str]]:
    """Walk `root/<identity>/...` in sorted order: (relative image paths, labels, identity names).

    Labels number the identity folders that hold at least one image, in sorted order, from 0. Images in nested
    sub-folders of an identity belong to it.
    """
    root = Path(root)
    names: list[str] = []
    labels: list[int] = []
    identities: list[str] = []
    for ident in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(str(f.relative_to(root)) for f in ident.rglob("*")
                       if f.is_file() and f.suffix.lower() in extensions)
        if not files:
            continue
        names.extend(f.replace(os.sep, "/") for f in files)
        labels.extend([len(identities)] * len(files))
        identities.append(ident.name)
    return names, np.asarray(labels, dtype=np.int64), identities


def write_list_file(path: str | os.PathLike, names: list[str], labels) -> None:
    """Write `relative/path label` lines (atomically: a half-written list is never left behind)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for name, label in zip(names, labels):
            f.write(f"{name} {int(label)}\n")
    os.replace(tmp, path)
