"""Checkpoint files: written atomically, read back with their metadata.

A checkpoint is a dict saved by torch.save. Keys every producer writes:
    "backbone":  backbone state_dict (unwrapped: no "module." prefix)
    "meta":      {"backbone": name, "embedding_size": D, "input_size": [H, W], "color_order": "RGB" | "BGR",
                  "normalization": "(x - 127.5) / 128"}
    "config":    Config.to_dict() of the run that wrote it
Training checkpoints add "head", "optimizer", "scheduler", "scaler", "epoch", "iteration", "sampler", "rng", ...

Every value is a tensor or a plain type (dict, list, tuple, str, int, float, bool, None), so that
`torch.load(weights_only=True)` reads it: unpickling anything else can run code the file holds, and a downloaded
checkpoint is untrusted. `read_torch_file` is the one reader of .pt/.pth files; a file that needs more is refused
unless the caller passes trust=True (the command lines' --trust_checkpoint).
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

from Backbones import get_backbone

__all__ = ["NORMALIZATION", "CheckpointWriteError", "UntrustedFileError", "read_torch_file", "save_checkpoint",
           "load_checkpoint", "backbone_meta", "load_backbone"]

NORMALIZATION = "(x - 127.5) / 128"


class UntrustedFileError(ValueError):
    """A .pt file that weights_only loading refuses; the message names the file and the flag that accepts it."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, no permission); the previous file is left as it was."""


def read_torch_file(path: str | os.PathLike, trust: bool = False, map_location: str | torch.device = "cpu",
                    flag: str = "--trust_checkpoint", mmap: bool = False) -> Any:
    """torch.load with weights_only=True; with `trust` a file that needs full unpickling is loaded anyway.

    `mmap` maps the tensors' storage instead of reading it (a rank re-sharding a large head reads only its rows).

    Refused files raise UntrustedFileError (one line naming `path` and `flag`) before any of their objects is built;
    other unreadable files raise ValueError.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if not trust:
            # the weights_only unpickler stops at the first global it does not allow: nothing of the file has run
            found = re.search(r"GLOBAL (\S+)", str(exc))
            what = f"the object {found.group(1)}" if found else "objects besides tensors and plain types"
            raise UntrustedFileError(f"{path}: refused, it pickles {what}, and unpickling it could run code it "
                                     f"holds; load it only if you trust its source: {flag}=true") from None
    except Exception as exc:
        raise ValueError(f"{path} cannot be read as a PyTorch file: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    try:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)  # trusted by the caller's flag
    except Exception as exc:
        raise ValueError(f"{path} cannot be read as a PyTorch file: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the previous file or the new one, never a truncated one: rename within one
    file system is atomic. A write that fails (disk full: ENOSPC) raises CheckpointWriteError naming `path`, the
    previous file untouched and no temporary file left.
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
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        error = CheckpointWriteError(f"cannot write checkpoint {path}: {exc.strerror or exc}; the previous one is "
                                     f"unchanged")
        error.errno = exc.errno  # ENOSPC: disk full
        raise error from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", trust: bool = False,
                    flag: str = "--trust_checkpoint") -> dict[str, Any]:
    """Load a project checkpoint (weights_only unless `trust`); a missing, unreadable or refused file is a one-line
    error naming it."""
    path = Path(path)
    if path.is_dir():  # a run directory: its latest checkpoint
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = read_torch_file(path, trust, map_location, flag)
    if not isinstance(state, dict) or "backbone" not in state:
        raise ValueError(f"checkpoint {path} has no 'backbone' entry (not a checkpoint of this project; "
                         f"use Utils/model_import.py for other projects' weights)")
    return state


def backbone_meta(name: str, embedding_size: int, input_size, color_order: str) -> dict[str, Any]:
    return {"backbone": name, "embedding_size": int(embedding_size), "input_size": [int(v) for v in input_size],
            "color_order": color_order, "normalization": NORMALIZATION}


def load_backbone(path: str | os.PathLike, device: str | torch.device = "cpu", trust: bool = False):
    """Rebuild the backbone a checkpoint describes and load its weights. Returns (model in eval mode, meta)."""
    state = load_checkpoint(path, trust=trust)
    meta = state.get("meta") or {}
    missing = [k for k in ("backbone", "embedding_size", "input_size") if k not in meta]
    if missing:
        raise ValueError(f"checkpoint {path}: metadata lacks {', '.join(missing)}")
    model = get_backbone(meta["backbone"], meta["embedding_size"], tuple(meta["input_size"]))
    model.load_state_dict(state["backbone"])
    meta.setdefault("color_order", "RGB")
    meta.setdefault("normalization", NORMALIZATION)
    return model.to(device).eval(), meta
