"""Every path a run will need, checked before any heavy work (building the synthetic set, reading a .rec index,
building the networks): a typo in the last --val_sets entry must not cost the minutes of generating the training
data first. Each problem is a one-line DataPathError naming the config key and the path."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

from Datasets.errors import DataPathError
from Datasets import list_train_formats
from Datasets.train_sets.multi import parse_train_set

from .run_dir import run_dir_of_checkpoint

__all__ = ["preflight", "TRAIN_PATH_CHECKS"]


def _need_file(key: str, value: str | os.PathLike) -> None:
    p = Path(value)
    if not p.exists():
        raise DataPathError(f"{key}: no such file: {p}")
    if p.is_dir():
        raise DataPathError(f"{key}: {p} is a directory, expected a file")
    if not os.access(p, os.R_OK):
        raise DataPathError(f"{key}: {p} is not readable (permissions)")


def _need_dir(key: str, value: str | os.PathLike) -> None:
    p = Path(value)
    if not p.is_dir():
        raise DataPathError(f"{key}: {'not a directory' if p.exists() else 'no such directory'}: {p}")


def _folder_paths(cfg) -> None:
    if not cfg.train_root:
        raise DataPathError("train_root: not set (needs the image folder root)")
    _need_dir("train_root", cfg.train_root)
    _need_file("train_list", cfg.train_list or Path(cfg.train_root) / "train_list.txt")


def _rec_paths(cfg) -> None:
    if not cfg.train_root:
        raise DataPathError("train_root: not set (needs the folder holding train.rec and train.idx)")
    _need_dir("train_root", cfg.train_root)
    for name in ("train.rec", "train.idx"):
        _need_file("train_root", Path(cfg.train_root) / name)


# train_format -> what its files must be; formats generated on the spot (synthetic) need nothing
TRAIN_PATH_CHECKS: dict[str, Callable] = {"folder": _folder_paths, "rec": _rec_paths}


def _train_paths(cfg) -> None:
    if not cfg.train_sets:
        if cfg.train_format in TRAIN_PATH_CHECKS:
            TRAIN_PATH_CHECKS[cfg.train_format](cfg)
        return
    for entry in cfg.train_sets:  # each set as if it were the only one, named by its entry
        fmt, root, list_file = parse_train_set(entry, list_train_formats())
        if fmt in TRAIN_PATH_CHECKS:
            try:
                TRAIN_PATH_CHECKS[fmt](dataclasses.replace(cfg, train_sets=[], train_format=fmt, train_root=root,
                                                           train_list=list_file))
            except DataPathError as exc:
                raise DataPathError(f"train_sets '{entry}': {exc}") from None


def _val_paths(cfg) -> None:
    for spec in cfg.val_sets:
        if spec == "synthetic":
            continue
        pairs_file, _, image_root = spec.partition("::")
        if not os.path.exists(pairs_file):  # a CFP protocol folder is a valid entry too
            raise DataPathError(f"val_sets: no such file or directory: {pairs_file}")
        if Path(pairs_file).is_file() and not os.access(pairs_file, os.R_OK):
            raise DataPathError(f"val_sets: {pairs_file} is not readable (permissions)")
        if image_root:
            _need_dir("val_sets", image_root)


def _writable_dir(key: str, value: str) -> None:
    """`value` is, or can be created as, a folder this process may write into."""
    p = Path(value).absolute()
    probe = p
    while not probe.exists():  # the nearest existing ancestor decides whether the folder can be made
        probe = probe.parent
    if not probe.is_dir():
        raise DataPathError(f"{key}: {probe} is a file, so {p} cannot be a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataPathError(f"{key}: {probe} is not writable")


def preflight(cfg, train: bool = True, val: bool = True) -> None:
    """Check the run's paths: training data (unless the caller brings its own dataset), verification sets (likewise),
    the checkpoint to resume, and that output_dir can be written (unless write_nothing)."""
    if train:
        _train_paths(cfg)
    if val:
        _val_paths(cfg)
    if cfg.resume:
        if not Path(cfg.resume).exists():
            raise DataPathError(f"resume: no such file or run directory: {cfg.resume}")
        _need_file("resume", Path(cfg.resume) / "last.pt" if Path(cfg.resume).is_dir() else cfg.resume)
    if not cfg.write_nothing:  # a resumed run writes into the checkpoint's run directory
        key, target = ("resume", run_dir_of_checkpoint(cfg.resume)) if cfg.resume else ("output_dir", cfg.output_dir)
        _writable_dir(key, str(target))
