"""Image folder + list file (`train_format=folder`): `train_root/<identity>/<image>` listed by `relative/path label`
lines (`train_list`, default `<train_root>/train_list.txt`; `python -m Utils.tools.generate_dataset_list` writes it)."""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataPathError
from ..folder import read_list_file
from .base import FaceTrainDataset, dataset_kwargs
from .registry import register_train_format, require_path

__all__ = ["FolderTrainDataset"]


class FolderTrainDataset(FaceTrainDataset):
    """Images under `root` listed by a list file of `relative/path label` lines."""

    def __init__(self, root: str | os.PathLike, list_file: str | os.PathLike, **kwargs):
        self.root = str(root)
        self.list_file = str(list_file)
        names, labels = read_list_file(self.list_file)
        # one numpy bytes array, not a list of str: 4x smaller than numpy unicode, and no copy-on-write of
        # millions of refcounted objects in each forked worker
        self._names = np.array([n.encode("utf-8") for n in names])
        self._labels = labels
        super().__init__(int(labels.max()) + 1, **kwargs)

    def __len__(self) -> int:
        return len(self._labels)

    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def _load(self, index: int):
        path = os.path.join(self.root, self._names[index].decode("utf-8"))
        return path, int(self._labels[index]), path


@register_train_format("folder")
def build_folder(cfg) -> FolderTrainDataset:
    root = require_path("train_root", cfg.train_root, "image folder root")
    if cfg.train_list:
        list_file = require_path("train_list", cfg.train_list, "list file")
    else:
        list_file = root / "train_list.txt"
        if not list_file.is_file():
            raise DataPathError(f"train_list: not set and {list_file} does not exist (write it with "
                                f"`python -m Utils.tools.generate_dataset_list {root}`)")
    return FolderTrainDataset(root, list_file, **dataset_kwargs(cfg))
