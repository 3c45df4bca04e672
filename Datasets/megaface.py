"""MegaFace Challenge 1 inputs: the devkit's JSON image lists, insightface's noise lists, and the images they name.

- Probe list (devkit `templatelists/facescrub_features_list.json`): {"path": [...], "id": [...]}, one identity
  name per image path (3,530 FaceScrub images of 80 identities in the released devkit).
- Distractor lists (`megaface_features_list.json_<N>_<set>`): {"path": [...]} with N in 10 .. 1,000,000; the lists of
  different sizes are separate random draws, not prefixes of each other, so each size is read on its own.
- Noise lists (insightface `facescrub_noises.txt`, `megaface_noises.txt`): one name per line, '#' lines are comments.
  FaceScrub noise names are image file names (matched against the base name of a probe path); MegaFace noise
  entries are distractor paths relative to the image root.
Paths in the lists are relative to an image root given by the user (aligned crops laid out as the lists say);
Datasets.images.ImageList reads them.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DataFormatError, DataPathError

__all__ = ["ProbeList", "read_probe_list", "read_distractor_list", "find_distractor_lists", "read_noise_list",
           "facescrub_noise_mask", "megaface_noise_mask"]

_DISTRACTOR_NAME = re.compile(r"^megaface_features_list\.json_(\d+)_(\d+)$")


@dataclass
class ProbeList:
    """The FaceScrub probe set: image paths, identity names and their integer labels (first-appearance order)."""
    paths: list[str]
    ids: list[str]
    labels: np.ndarray  # int64 (N,), label of ids[i]
    identities: list[str]  # identity name of each label
    source: str = ""

    def __len__(self) -> int:
        return len(self.paths)


def _load_json(path: str | os.PathLike, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataPathError(f"{what} not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{path}: not UTF-8 text (byte {exc.start}): is this a devkit JSON list?") from None
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object with a 'path' list, got {type(data).__name__}")
    return data


def _string_list(data: dict, key: str, path: str | os.PathLike) -> list[str]:
    if key not in data:
        raise DataFormatError(f"{path}: missing key '{key}' (keys present: {', '.join(map(str, data)) or 'none'})")
    values = data[key]
    if not isinstance(values, list):
        raise DataFormatError(f"{path}: '{key}' must be a list, got {type(values).__name__}")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v:
            raise DataFormatError(f"{path}: '{key}'[{i}] must be a non-empty string, got {v!r}")
    return values


def read_probe_list(path: str | os.PathLike) -> ProbeList:
    """Parse the devkit's FaceScrub list {"path": [...], "id": [...]} (equal lengths, strings)."""
    data = _load_json(path, "probe list")
    paths = _string_list(data, "path", path)
    ids = _string_list(data, "id", path)
    if len(paths) != len(ids):
        raise DataFormatError(f"{path}: 'path' has {len(paths)} entries but 'id' has {len(ids)}")
    dup = _first_duplicate(paths)
    if dup is not None:
        raise DataFormatError(f"{path}: image '{paths[dup]}' is listed twice (entry {dup})")
    index: dict[str, int] = {}
    labels = np.fromiter((index.setdefault(i, len(index)) for i in ids), dtype=np.int64, count=len(ids))
    return ProbeList(paths=paths, ids=ids, labels=labels, identities=list(index), source=str(path))


def read_distractor_list(path: str | os.PathLike) -> list[str]:
    """Parse a devkit distractor list {"path": [...]} into its relative image paths."""
    data = _load_json(path, "distractor list")
    paths = _string_list(data, "path", path)
    dup = _first_duplicate(paths)
    if dup is not None:
        raise DataFormatError(f"{path}: image '{paths[dup]}' is listed twice (entry {dup})")
    return paths


def find_distractor_lists(folder: str | os.PathLike, set_id: int = 1) -> dict[int, Path]:
    """{size: path} of the `megaface_features_list.json_<size>_<set_id>` files in `folder`, sizes ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataPathError(f"distractor list folder not found: {folder}")
    found = {}
    for p in folder.iterdir():
        m = _DISTRACTOR_NAME.match(p.name)
        if m and int(m.group(2)) == set_id:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def read_noise_list(path: str | os.PathLike) -> set[str]:
    """Names in an insightface noise list: one per line, blank lines and '#' comment lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataPathError(f"noise list not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x})") from None
    names = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if any(c.isspace() for c in name):
            raise DataFormatError(f"{path}:{lineno}: expected one image name per line, got {name!r}")
        names.add(name)
    return names


def facescrub_noise_mask(probe_paths: Sequence[str], noise_names: set[str]) -> np.ndarray:
    """bool (N,): probes whose file name (the last path component) is in the FaceScrub noise list."""
    return np.array([p.replace("\\", "/").rsplit("/", 1)[-1] in noise_names for p in probe_paths], dtype=bool)


def megaface_noise_mask(distractor_paths: Sequence[str], noise_paths: set[str]) -> np.ndarray:
    """bool (M,): distractors whose relative path is in the MegaFace noise list."""
    return np.array([p.replace("\\", "/").lstrip("/") in noise_paths for p in distractor_paths], dtype=bool)


def _first_duplicate(items: Sequence[str]) -> int | None:
    seen: set[str] = set()
    for i, item in enumerate(items):
        if item in seen:
            return i
        seen.add(item)
    return None
