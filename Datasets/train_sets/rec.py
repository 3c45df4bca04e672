"""insightface RecordIO (`train_format=rec`): `train_root/train.rec` + `train.idx`, read without mxnet."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataFormatError, DataPathError
from ..recordio import RecordIOReader, unpack_record
from .base import FaceTrainDataset, dataset_kwargs
from .registry import register_train_format, require_path

__all__ = ["RecordIOTrainDataset"]

_FLOAT32_EXACT = 1 << 24  # every integer below 2^24 is a float32; above, neighbours round to one value


class RecordIOTrainDataset(FaceTrainDataset):
    """insightface `train.rec` + `train.idx` (with or without the header record), read without mxnet.

    With a header record (key 0, flag > 0, no image; label = [N + 1, N + 1 + C]) the images are keys 1..N and the
    class count is C. Without one, every indexed record is an image and the class count comes from the `property`
    file beside the .rec (`classes,H,W`, as insightface ships it) or, failing that, from one scan of the labels.
    """

    def __init__(self, root: str | os.PathLike, rec_name: str = "train", **kwargs):
        root = Path(root)
        self.reader = RecordIOReader(root / f"{rec_name}.rec", root / f"{rec_name}.idx")
        self.notes: list[str] = []  # what a person should know about how the set was read (the trainer logs it)
        # image i is key _key_start + i (header layout) or the i-th indexed key: no per-image array to pickle
        num_classes, self._key_start, self._n = self._layout(root)
        super().__init__(num_classes, **kwargs)

    def _note(self, message: str) -> None:
        self.notes.append(message)
        warnings.warn(message, stacklevel=3)

    def _layout(self, root: Path) -> tuple[int, int | None, int]:
        r = self.reader
        if r.has_key(0):
            off = r.offset_of(0)
            header, rest = unpack_record(r.read_at(off), f"{r.rec_path}: record 0 (offset {off})")
            if header.flag >= 2 and len(rest) == 0:
                first = self._exact(header.label[0], "first identity key (images + 1)", off,
                                    lambda k: r.is_label_only(k - 1) is False and r.is_label_only(k) is True)
                end = self._exact(header.label[1], "end of the identity keys", off,
                                  lambda k: r.is_label_only(k - 1) is True and r.is_label_only(k) is not True)
                n_images = first - 1
                if n_images < 1 or end < first:
                    raise DataFormatError(f"{r.rec_path}: header record at offset {off} has label [{first}, {end}]; "
                                          f"expected [images + 1, images + 1 + classes]")
                if r.index.count_in(1, first) != n_images:
                    lo = r.index.count_in(-(1 << 62), 1)  # rows before key 1
                    keys = np.asarray(r.keys[lo:lo + n_images])
                    gap = np.flatnonzero(keys != np.arange(1, len(keys) + 1))
                    missing = int(gap[0]) + 1 if len(gap) else len(keys) + 1
                    raise DataFormatError(f"{r.idx_path}: header record announces images 1..{n_images} but key "
                                          f"{missing} is not indexed")
                return end - first, 1, n_images
        n = len(r)
        prop = root / "property"
        if prop.is_file():
            try:
                return int(prop.read_text().split(",")[0]), None, n
            except ValueError:
                raise DataFormatError(f"{prop}: expected 'classes,height,width'") from None
        return self._scan_classes(r.keys), None, n

    def _exact(self, value, what: str, off: int, is_boundary) -> int:
        """A header boundary as an exact key. The header stores it as float32, exact only below 2^24; above, the
        true key is within one float32 step of the stored value and is where the records change kind."""
        v = int(value)
        if abs(v) < _FLOAT32_EXACT:
            return v
        step = int(np.spacing(np.float32(v)))
        hits = [k for k in range(v - step, v + step + 1) if is_boundary(k)]
        if len(hits) != 1:
            raise DataFormatError(f"{self.reader.rec_path}: header record at offset {off} gives the {what} as "
                                  f"float32 {v} (not exact above 2^24) and the records within +-{step} of it do not "
                                  f"show one boundary ({hits or 'none'})")
        if hits[0] != v:
            self._note(f"{self.reader.rec_path}: the header record stores the {what} as float32 {v}, which cannot be "
                       f"exact above 2^24; the index and the records' flags put it at {hits[0]}")
        return hits[0]

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
        return self._n

    def _key(self, index: int) -> int:
        return self._key_start + index if self._key_start is not None else int(self.reader.keys[index])

    def labels(self) -> np.ndarray:
        return np.array([self._label_of(self._key(i)) for i in range(self._n)], dtype=np.int64)

    def _load(self, index: int):
        key = self._key(int(index))
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
