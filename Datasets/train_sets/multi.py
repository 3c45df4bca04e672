"""Several training sets in one run (`train_sets`: "format:root" entries, e.g. "rec:/data/ms1m,folder:/data/casia").

Each set keeps its own labels; set k's labels are shifted by the class counts of the sets before it, so the run
sees one label space whose size is the sum (a Partial-FC head then shards the union). Identities shared between
sets are not merged: nothing in the files says two sets' identities are the same person.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from torch.utils.data import Dataset

from ..augment import EpochIndex
from ..errors import DataPathError
from .base import FaceTrainDataset

__all__ = ["ConcatTrainSets", "parse_train_set", "build_train_sets"]


def parse_train_set(entry: str, formats: list[str]) -> tuple[str, str, str]:
    """"format:root" (folder: "folder:root::list_file") -> (format, root, list file or "")."""
    fmt, sep, rest = entry.partition(":")
    if not sep or fmt not in formats:
        raise DataPathError(f"train_sets: '{entry}' is not 'format:root' with a format among {', '.join(formats)}")
    root, _, list_file = rest.partition("::")
    if not root and fmt != "synthetic":
        raise DataPathError(f"train_sets: '{entry}' names no root folder")
    return fmt, root, list_file


class ConcatTrainSets(Dataset):
    """Sets one after another: sample i of set k is global sample offsets[k] + i, its label + class_offsets[k].

    Args:
        sets: the member training sets (each with num_classes and len).
        names: one name per set for the summary (its "format:root" entry).
    """

    def __init__(self, sets: list[FaceTrainDataset], names: list[str]):
        if not sets:
            raise ValueError("ConcatTrainSets needs at least one set")
        self.sets, self.names = list(sets), list(names)
        sizes = np.array([len(s) for s in self.sets], dtype=np.int64)
        classes = np.array([int(s.num_classes) for s in self.sets], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.class_offsets = np.concatenate([[0], np.cumsum(classes)])
        self.num_classes = int(self.class_offsets[-1])
        self.notes = [n for s in self.sets for n in getattr(s, "notes", [])]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(set, index within the set) of global sample `index`."""
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return k, int(index) - int(self.offsets[k])

    def __getitem__(self, index: int):
        k, i = self.locate(int(index))
        # the member seeds its augmentation from the epoch the sampler's index carries: keep it
        item = self.sets[k][EpochIndex(i, getattr(index, "epoch", 0))]
        return (item[0], int(item[1]) + int(self.class_offsets[k])) + tuple(item[2:])

    def labels(self) -> np.ndarray:
        return np.concatenate([s.labels() + int(off) for s, off in zip(self.sets, self.class_offsets)])

    def summary_rows(self) -> list[tuple[str, str]]:
        """One row per set: its images, classes and the label range it occupies; then the union."""
        rows = []
        for k, (s, name) in enumerate(zip(self.sets, self.names)):
            lo, hi = int(self.class_offsets[k]), int(self.class_offsets[k + 1])
            rows.append((name, f"{len(s):,} images, {s.num_classes:,} classes (labels {lo}..{hi - 1})"))
        rows.append(("all sets", f"{len(self):,} images, {self.num_classes:,} classes"))
        return rows


def build_train_sets(cfg, build_one, formats: list[str]) -> ConcatTrainSets:
    """The union of `cfg.train_sets`; `build_one(cfg)` builds one set from a config naming only it."""
    sets, names = [], []
    for entry in cfg.train_sets:
        fmt, root, list_file = parse_train_set(entry, formats)
        one = dataclasses.replace(cfg, train_sets=[], train_format=fmt, train_root=root, train_list=list_file)
        try:
            sets.append(build_one(one))
        except DataPathError as exc:  # "train_root: ..." would name a key the user did not set
            raise DataPathError(f"train_sets '{entry}': {exc}") from None
        names.append(entry)
    return ConcatTrainSets(sets, names)
