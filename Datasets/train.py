"""Training datasets: image folder + list, insightface RecordIO, and the embedded synthetic set (a folder).

An item is (image float32 (3, H, W), label int, n_bad int). A training image that cannot be decoded is skipped
with a `BadImageWarning` naming it, replaced by another sample, and counted in n_bad so the trainer can report it
(or, with cfg.bad_image_policy == "error", raises `DataFormatError`): one bad file in millions must not end a
multi-day run. Damage to the container itself (a broken .rec record, a label outside [0, classes)) is an error.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import BadImageWarning, DataFormatError, DataPathError
from .folder import read_list_file
from .recordio import RecordIOReader, unpack_record
from .transforms import decode_image, normalize_image

__all__ = ["FaceTrainDataset", "FolderTrainDataset", "RecordIOTrainDataset", "build_train_dataset"]

_MAX_REPLACEMENTS = 64  # consecutive unreadable samples before the set is declared broken
_STRIDE = 7919  # a prime: replacement indices walk the whole set


class FaceTrainDataset(Dataset):
    """Base: decoding, flip, normalisation and the bad-image policy; subclasses say how to load sample i.

    Args:
        num_classes: identities; labels must lie in [0, num_classes).
        input_hw: network input (H, W).
        color_order: "RGB" or "BGR" (channel order the network sees).
        random_flip: horizontal flip with probability 0.5.
        bad_image_policy: "skip" (warn, count, use another sample) or "error".
    """

    def __init__(self, num_classes: int, input_hw=(112, 112), color_order: str = "RGB", random_flip: bool = True,
                 bad_image_policy: str = "skip"):
        if bad_image_policy not in ("skip", "error"):
            raise ValueError(f"bad_image_policy must be 'skip' or 'error', got '{bad_image_policy}'")
        self.num_classes = int(num_classes)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.color_order = color_order
        self.random_flip = bool(random_flip)
        self.bad_image_policy = bad_image_policy
        self._bad: set[int] = set()  # per process: indices already found unreadable

    # -- subclass interface
    def _load(self, index: int):
        """(encoded bytes or file path, label, name for messages) of sample `index`."""
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """int64 label of every sample (for samplers and statistics)."""
        raise NotImplementedError

    # -- shared logic
    def _decode(self, index: int):
        source, label, name = self._load(index)
        if not 0 <= label < self.num_classes:
            raise DataFormatError(f"{name}: label {label} outside [0, {self.num_classes})")
        try:
            img = decode_image(source)
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ... for bad data
            return None, label, f"{name}: {type(exc).__name__}: {exc}"
        return img, label, name

    def __getitem__(self, index: int):
        n = len(self)
        index = int(index)
        n_bad = 0
        for attempt in range(_MAX_REPLACEMENTS):
            i = (index + attempt * _STRIDE) % n
            if i in self._bad:
                continue
            img, label, what = self._decode(i)
            if img is not None:
                if self.random_flip and torch.rand(()) < 0.5:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                return normalize_image(img, self.input_hw, self.color_order), int(label), n_bad
            if self.bad_image_policy == "error":
                raise DataFormatError(f"unreadable training image {what} (bad_image_policy='error')")
            self._bad.add(i)
            n_bad += 1
            warnings.warn(f"skipped unreadable training image {what}", BadImageWarning, stacklevel=2)
        raise DataFormatError(f"{_MAX_REPLACEMENTS} unreadable training images in a row, starting at sample {index} "
                              f"(last: {what}); is the data set damaged?")


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
        from tqdm import tqdm
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


def _require(key: str, value: str, kind: str = "path") -> Path:
    if not value:
        raise DataPathError(f"{key}: not set (needs the {kind})")
    p = Path(value).expanduser()
    if not p.exists():
        raise DataPathError(f"{key}: no such file or directory: {value}")
    return p


def build_train_dataset(cfg) -> FaceTrainDataset:
    """The training set `cfg.train_format` names ("synthetic" | "folder" | "rec"), with the config's transforms."""
    kwargs = dict(input_hw=cfg.input_hw, color_order=cfg.color_order, random_flip=cfg.random_flip,
                  bad_image_policy=cfg.bad_image_policy)
    fmt = cfg.train_format
    if fmt == "synthetic":
        from .synthetic import ensure_synthetic
        paths = ensure_synthetic(cfg)
        return FolderTrainDataset(paths.train_root, paths.train_list, **kwargs)
    if fmt == "folder":
        root = _require("train_root", cfg.train_root, "image folder root")
        if cfg.train_list:
            list_file = _require("train_list", cfg.train_list, "list file")
        else:
            list_file = root / "train_list.txt"
            if not list_file.is_file():
                raise DataPathError(f"train_list: not set and {list_file} does not exist (write it with "
                                    f"`python -m Utils.generate_dataset_list {root}`)")
        return FolderTrainDataset(root, list_file, **kwargs)
    if fmt == "rec":
        root = _require("train_root", cfg.train_root, "folder holding train.rec and train.idx")
        if root.is_file() and root.suffix == ".rec":
            return RecordIOTrainDataset(root.parent, root.stem, **kwargs)
        for name in ("train.rec", "train.idx"):
            if not (root / name).is_file():
                raise DataPathError(f"train_root: {root / name} does not exist")
        return RecordIOTrainDataset(root, **kwargs)
    raise ValueError(f"train_format: unknown format '{fmt}'; choose from: synthetic, folder, rec")
