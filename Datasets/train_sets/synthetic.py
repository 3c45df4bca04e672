"""The embedded synthetic set (`train_format=synthetic`, the default): generated once under `data_root` by
Datasets.synthetic, then read as an image folder + list."""
from __future__ import annotations

from ..synthetic import ensure_synthetic
from .base import dataset_kwargs
from .folder import FolderTrainDataset
from .registry import register_train_format

__all__ = ["build_synthetic"]


@register_train_format("synthetic")
def build_synthetic(cfg) -> FolderTrainDataset:
    paths = ensure_synthetic(cfg)
    return FolderTrainDataset(paths.train_root, paths.train_list, **dataset_kwargs(cfg))
