"""Embeddings kept on disk between evaluation runs, keyed by what made them (checkpoint + data + settings).

A rerun with other metric flags (distractor sizes, cleaning on/off, another FAR) finds its features here and skips
extraction; any change of checkpoint file, image root, image list or extraction setting gives another key and a new
extraction. Files: <folder>/<role>.npy (float32, read memory-mapped) and <role>.json ({"key", "count", ...}); both
are written under temporary names and renamed, so an interrupted run never leaves a half file that looks valid.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FeatureCache", "cache_key"]


def cache_key(checkpoint: str | os.PathLike, *parts: Any) -> str:
    """SHA-1 of the checkpoint's resolved path, mtime and size, and of `parts` (JSON-serialisable)."""
    ckpt = Path(checkpoint)
    stat = ckpt.stat() if ckpt.is_file() else None
    text = json.dumps([str(ckpt.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0, *parts])
    return hashlib.sha1(text.encode()).hexdigest()


class FeatureCache:
    """One folder of cached feature arrays, one file pair per role ("probes", "distractors", ...)."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def load(self, role: str, key: str, count: int) -> np.ndarray | None:
        """The cached (count, D) array of `role` if it was made under `key`, memory-mapped; else None."""
        npy, meta = self.folder / f"{role}.npy", self.folder / f"{role}.json"
        if not (npy.is_file() and meta.is_file()):
            return None
        try:
            if json.loads(meta.read_text()).get("key") != key:
                return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a damaged sidecar is a miss: the features are simply made again
        feats = np.load(npy, mmap_mode="r")  # only one search chunk at a time is read into memory
        return feats if feats.shape[0] == count else None

    def save(self, role: str, key: str, feats: np.ndarray, **info: Any) -> Path:
        """Store `feats` for `role` under `key` (with `info` in the sidecar); returns the .npy path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{role}.tmp.npy"
        np.save(tmp, feats)
        tmp.replace(self.folder / f"{role}.npy")
        side = self.folder / f".{role}.tmp.json"
        side.write_text(json.dumps({"key": key, "count": int(feats.shape[0]), **info}))
        side.replace(self.folder / f"{role}.json")
        return self.folder / f"{role}.npy"
