"""List files of an image folder: `root/<identity>/<image>` described by lines `relative/path label`.

The list format is the original project's (`Utils/tools/generate_dataset_list.py` writes it): one image per line,
the path (relative to the root, or absolute) then the integer label, separated by whitespace; paths may contain
spaces (the label is the last field).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataFormatError

__all__ = ["read_list_file", "write_list_file"]


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
        if not 0 <= label < 2 ** 63:  # the labels become an int64 array
            raise DataFormatError(f"{path}:{n}: label {label} is " + ("negative" if label < 0 else "too large"))
        names.append(parts[0])
        labels.append(label)
    if not names:
        raise DataFormatError(f"{path}: list file holds no images")
    return names, np.asarray(labels, dtype=np.int64)


def write_list_file(path: str | os.PathLike, names: list[str], labels) -> None:
    """Write `relative/path label` lines (atomically: a half-written list is never left behind)."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for name, label in zip(names, labels):
            f.write(f"{name} {int(label)}\n")
    os.replace(tmp, path)
