"""Training-set formats by name (`train_format`): each format is one file here that registers a builder
`(cfg) -> FaceTrainDataset`; Config validates `train_format` against this registry."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from Utils.registry import Registry

from ..errors import DataPathError
from .base import FaceTrainDataset

__all__ = ["register_train_format", "list_train_formats", "build_train_dataset", "require_path"]

_FORMATS: Registry[Callable[..., FaceTrainDataset]] = Registry("train_format")


def register_train_format(name: str) -> Callable:
    """Decorator registering `build(cfg) -> FaceTrainDataset` under `name`."""
    def wrap(build: Callable[..., FaceTrainDataset]) -> Callable[..., FaceTrainDataset]:
        return _FORMATS.add(name, build)
    return wrap


def list_train_formats() -> list[str]:
    return _FORMATS.names()


def build_train_dataset(cfg) -> FaceTrainDataset:
    """The training set `cfg.train_format` names, with the config's transforms; with `cfg.train_sets`, the union of
    the sets it lists (Datasets/train_sets/multi.py)."""
    if getattr(cfg, "train_sets", None):
        from .multi import build_train_sets  # deferred: multi imports this module

        return build_train_sets(cfg, build_train_dataset, list_train_formats())
    return _FORMATS.get(cfg.train_format)(cfg)


def require_path(key: str, value: str, kind: str = "path") -> Path:
    """The existing path a config key names, or a DataPathError naming the key."""
    if not value:
        raise DataPathError(f"{key}: not set (needs the {kind})")
    p = Path(value).expanduser()
    if not p.exists():
        raise DataPathError(f"{key}: no such file or directory: {value}")
    return p
