"""insightface RecordIO (`train_format=rec`): `train_root/train.rec` + `train.idx`, read without mxnet."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataFormatError, DataPathError
from ..recordio import RecordIOReader, unpack_record
from .base import FaceTrainDataset, dataset_kwargs
from .registry import register_train_format, require_path

__all__ = ["RecordIOTrainDataset"]


class RecordIOTrainDataset(FaceTrainDataset):
    """insightface `train.rec` + `train.idx` (with or without the header record), read without mxnet.

    With a header record (key 0, flag > 0, no image; label = [N + 1, N + 1 + C]) the images are keys 1..N and the
    class count is C. Without one, every indexed record is an image and the class count comes from the `property`
    file beside the .rec (`classes,H,W`, as insightface ships it) or, failing that, from one scan of the labels.
    """

    def __init__(self, root: str | os.PathLike, rec_name: str = "train", **kwargs):
        root = Path(root)
        self.reader = RecordIOReader(root / f"{rec_name}.rec", root / f"{rec_name}.idx")
        num_classes, self._keys = self._layout(root)
        super().__init__(num_classes, **kwargs)

    def _layout(self, root: Path) -> tuple[int, np.ndarray]:
        r = self.reader
        if r.has_key(0):
            off = r.offset_of(0)
            header, rest = unpack_record(r.read_at(off), f"{r.rec_path}: record 0 (offset {off})")
            if header.flag >= 2 and len(rest) == 0:
                first, end = int(header.label[0]), int(header.label[1])
                n_images = first - 1
                if n_images < 1 or end < first:
                    raise DataFormatError(f"{r.rec_path}: header record at offset {off} has label [{first}, {end}]; "
                                          f"expected [images + 1, images + 1 + classes]")
                keys = np.arange(1, first, dtype=np.int64)
                missing = np.setdiff1d(keys, r.keys)
                if len(missing):
                    raise DataFormatError(f"{r.idx_path}: header record announces images 1..{n_images} but key "
                                          f"{int(missing[0])} is not indexed")
                return end - first, keys
        keys = np.unique(r.keys)
        prop = root / "property"
        if prop.is_file():
            try:
                return int(prop.read_text().split(",")[0]), keys
            except ValueError:
                raise DataFormatError(f"{prop}: expected 'classes,height,width'") from None
        return self._scan_classes(keys), keys

    def _scan_classes(self, keys: np.ndarray) -> int:
        top = -1
        for k in tqdm(keys, desc="scanning .rec labels", unit="rec", leave=False, disable=len(keys) < 50_000):
            top = max(top, self._label_of(int(k)))
        return top + 1

    def _label_of(self, key: int) -> int:
        return self._int_label(self.reader.read_header(key), key, self.reader.offset_of(key))

    def _int_label(self, header, key: int, off: int) -> int:
        value = header.label[0] if header.flag > 0 else header.label  # array labels: insightface uses label[0]
        if not np.isfinite(value):
            raise DataFormatError(f"{self.reader.rec_path}: record {key} (offset {off}) has label {value}")
        return int(value)

    def __len__(self) -> int:
        return len(self._keys)

    def labels(self) -> np.ndarray:
        return np.array([self._label_of(int(k)) for k in self._keys], dtype=np.int64)

    def _load(self, index: int):
        key = int(self._keys[index])
        off = self.reader.offset_of(key)
        name = f"{self.reader.rec_path}: record {key} (offset {off})"
        header, image = unpack_record(self.reader.read_at(off), name)
        return image, self._int_label(header, key, off), name


@register_train_format("rec")
def build_rec(cfg) -> RecordIOTrainDataset:
    root = require_path("train_root", cfg.train_root, "folder holding train.rec and train.idx")
    if root.is_file() and root.suffix == ".rec":
        return RecordIOTrainDataset(root.parent, root.stem, **dataset_kwargs(cfg))
    for name in ("train.rec", "train.idx"):
        if not (root / name).is_file():
            raise DataPathError(f"train_root: {root / name} does not exist")
    return RecordIOTrainDataset(root, **dataset_kwargs(cfg))
