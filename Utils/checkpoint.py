"""Checkpoint files: written atomically, read back with their metadata.

A checkpoint is a dict saved by torch.save. Keys every producer writes:
    "backbone":  backbone state_dict (unwrapped: no "module." prefix)
    "meta":      {"backbone": name, "embedding_size": D, "input_size": [H, W], "color_order": "RGB" | "BGR",
                  "normalization": "(x - 127.5) / 128"}
    "config":    Config.to_dict() of the run that wrote it
Training checkpoints add "head", "optimizer", "scheduler", "scaler", "epoch", "iteration", "sampler", "rng", ...
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from Backbones import get_backbone

__all__ = ["NORMALIZATION", "save_checkpoint", "load_checkpoint", "backbone_meta", "load_backbone"]

NORMALIZATION = "(x - 127.5) / 128"


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the previous file or the new one, never a truncated one: rename within one
    file system is atomic.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a project checkpoint; a missing or unreadable file is a one-line error naming it."""
    path = Path(path)
    if path.is_dir():  # a run directory: its latest checkpoint
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        # our own checkpoints hold config dicts and RNG states besides tensors; they are trusted files
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict) or "backbone" not in state:
        raise ValueError(f"checkpoint {path} has no 'backbone' entry (not a checkpoint of this project; "
                         f"use Utils/model_import.py for other projects' weights)")
    return state


def backbone_meta(name: str, embedding_size: int, input_size, color_order: str) -> dict[str, Any]:
    return {"backbone": name, "embedding_size": int(embedding_size), "input_size": [int(v) for v in input_size],
            "color_order": color_order, "normalization": NORMALIZATION}


def load_backbone(path: str | os.PathLike, device: str | torch.device = "cpu"):
    """Rebuild the backbone a checkpoint describes and load its weights. Returns (model in eval mode, meta)."""
    state = load_checkpoint(path)
    meta = state.get("meta") or {}
    missing = [k for k in ("backbone", "embedding_size", "input_size") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint {path}: metadata lacks {', '.join(missing)}")
    model = get_backbone(meta["backbone"], meta["embedding_size"], tuple(meta["input_size"]))
    model.load_state_dict(state["backbone"])
    meta.setdefault("color_order", "RGB")
    meta.setdefault("normalization", NORMALIZATION)
    return model.to(device).eval(), meta
