"""What every training set shares: decoding, flip, normalisation and the bad-image policy.

An item is (image float32 (3, H, W), label int, n_bad int). A training image that cannot be decoded is skipped
with a `BadImageWarning` naming it, replaced by another sample, and counted in n_bad so the trainer can report it
(or, with cfg.bad_image_policy == "error", raises `DataFormatError`): one bad file in millions must not end a
multi-day run. Damage to the container itself (a broken .rec record, a label outside [0, classes)) is an error.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..augment import Augment
from ..errors import BadImageWarning, DataFormatError
from ..transforms import decode_image, normalize_image

__all__ = ["FaceTrainDataset", "dataset_kwargs"]

_MAX_REPLACEMENTS = 64  # consecutive unreadable samples before the set is declared broken
_STRIDE = 7919  # a prime: replacement indices walk the whole set


class FaceTrainDataset(Dataset):
    """Base: decoding, flip, normalisation and the bad-image policy; subclasses say how to load sample i.

    Args:
        num_classes: identities; labels must lie in [0, num_classes).
        input_hw: network input (H, W).
        color_order: "RGB" or "BGR" (channel order the network sees).
        random_flip: horizontal flip with probability 0.5 (used when `augment` is None).
        bad_image_policy: "skip" (warn, count, use another sample) or "error".
        augment: recipe of Datasets.augment ops ("flip:0.5,lowres:0.2"); None -> flip only, per `random_flip`.
        seed: run seed; with the epoch and the sample index it seeds each sample's augmentation.
    """

    def __init__(self, num_classes: int, input_hw=(112, 112), color_order: str = "RGB", random_flip: bool = True,
                 bad_image_policy: str = "skip", augment: list[str] | str | None = None, seed: int = 0):
        if bad_image_policy not in ("skip", "error"):
            raise ValueError(f"bad_image_policy must be 'skip' or 'error', got '{bad_image_policy}'")
        self.num_classes = int(num_classes)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.color_order = color_order
        self.random_flip = bool(random_flip)
        if augment is None:
            augment = ["flip:0.5"] if random_flip else []
        self.augment = Augment(augment, self.input_hw, seed)
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

    def _augmented(self, img: Image.Image, index: int) -> torch.Tensor:
        if not self.augment:
            return normalize_image(img, self.input_hw, self.color_order)
        h, w = self.input_hw
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        # a CHW view of the HWC pixels, no copy: the ops make their own outputs
        chw = self.augment(torch.from_numpy(np.array(img)).permute(2, 0, 1), index).numpy()
        if self.color_order == "BGR":
            chw = chw[::-1]
        # normalize_image's arithmetic on the CHW result directly, bit for bit: no transpose back to HWC
        out = np.empty(chw.shape, dtype=np.float32)
        np.subtract(chw, np.float32(127.5), out=out, dtype=np.float32)
        out *= np.float32(1.0 / 128.0)
        return torch.from_numpy(out)

    def __getitem__(self, index: int):
        n = len(self)
        n_bad = 0
        for attempt in range(_MAX_REPLACEMENTS):
            i = (int(index) + attempt * _STRIDE) % n
            if i in self._bad:
                continue
            img, label, what = self._decode(i)
            if img is not None:
                # seeded by the requested index (it carries the epoch), not the replacement's: a resumed run
                # draws the same whatever files were skipped
                return self._augmented(img, index), int(label), n_bad
            if self.bad_image_policy == "error":
                raise DataFormatError(f"unreadable training image {what} (bad_image_policy='error')")
            self._bad.add(i)
            n_bad += 1
            warnings.warn(f"skipped unreadable training image {what}", BadImageWarning, stacklevel=2)
        raise DataFormatError(f"{_MAX_REPLACEMENTS} unreadable training images in a row, starting at sample {index} "
                              f"(last: {what}); is the data set damaged?")


def dataset_kwargs(cfg) -> dict:
    """The FaceTrainDataset arguments a Config sets (input size, colour order, augmentation, bad-image policy)."""
    # random_flip=false (the older switch) still turns the flip off, whatever the recipe says
    augment = [a for a in cfg.augment if cfg.random_flip or a.split(":")[0] != "flip"]
    return dict(input_hw=cfg.input_hw, color_order=cfg.color_order, random_flip=cfg.random_flip,
                bad_image_policy=cfg.bad_image_policy, augment=augment, seed=cfg.seed)
