"""Verification sets: pairs of images with same/different flags and 10 folds, from any supported source.

`load_verification_set(spec, cfg)` takes "synthetic", a path to an insightface .bin, or "pairs_file::image_root"
(LFW pairs.txt, the original project's two-path lists, a CFP Protocol folder, or CALFW / CPLFW `pairs_*.txt`).
Without "::image_root", image paths are relative to the pairs file's folder (for CFP, to the Protocol folder; for
CALFW / CPLFW, to the `aligned images` folder beside the list: as the datasets ship).
Images are normalised as the training images are, unflipped. An image used by several pairs is stored once (LFW's
6,000 pairs use 7,701 distinct images, not 12,000): `pairs()` gives each pair's two image indices.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .binfile import load_bin
from .errors import DataPathError
from .images import ImageList
from .pairs import PairList, contiguous_folds, is_cfp_protocol, read_lfw_pairs, read_pairs
from .synthetic import ensure_synthetic

__all__ = ["VerificationSet", "load_verification_set"]


@dataclass
class VerificationSet:
    """Pair k is images `pairs()[k]`; `issame` (N,) bool, `folds` (N,) int64 in 0..9."""
    name: str
    images: Dataset
    issame: np.ndarray
    folds: np.ndarray
    pair_index: np.ndarray | None = None  # (N, 2) indices into `images`; None: pair k = images 2k and 2k + 1

    def __len__(self) -> int:
        return len(self.issame)

    def pairs(self) -> np.ndarray:
        """(N, 2) int64: the indices into `images` of each pair's left and right image."""
        if self.pair_index is not None:
            return self.pair_index
        return np.arange(2 * len(self.issame), dtype=np.int64).reshape(-1, 2)


def _resolve_images(pairs: PairList, root: str, key: str) -> tuple[list[str], np.ndarray]:
    """The distinct image paths under `root` (each checked to exist, naming the pair line if not) and the (N, 2)
    index of each pair's two images among them."""
    paths: list[str] = []
    where_is: dict[str, int] = {}
    index = np.empty((len(pairs.left), 2), dtype=np.int64)
    for k, (a, b) in enumerate(zip(pairs.left, pairs.right)):
        for side, rel in enumerate((a, b)):
            p = os.path.join(root, rel)
            if p not in where_is:
                if not os.path.isfile(p):
                    where = pairs.lines[k] if pairs.lines else f"pair {k}"
                    raise DataPathError(f"{key}: {where}: image {p} does not exist")
                where_is[p] = len(paths)
                paths.append(p)
            index[k, side] = where_is[p]
    return paths, index


# The verification sets insightface ships beside its training sets (faces_emore/, faces_webface_112x112/, ...).
BESIDE_TRAINING_SET = ("lfw.bin", "cfp_fp.bin", "agedb_30.bin")


def resolve_val_sets(cfg) -> tuple[list[str], str]:
    """cfg.val_sets with "auto" expanded, and a note saying what "auto" chose ("" when nothing to say).

    "auto" is the synthetic set when training on it; with real training data, the insightface .bin files found in
    train_root, else nothing (real data is not validated on generated faces, and nothing is generated for it)."""
    specs, note = [], ""
    for spec in cfg.val_sets:
        if spec != "auto":
            specs.append(spec)
        elif cfg.train_format == "synthetic":
            specs.append("synthetic")
        else:
            root = Path(cfg.train_root).expanduser() if cfg.train_root else None
            found = [str(root / n) for n in BESIDE_TRAINING_SET if root is not None and (root / n).is_file()]
            specs += found
            note = (f"val_sets: validating on {', '.join(Path(f).name for f in found)} found beside the training "
                    f"set in {root}" if found else
                    f"val_sets: none given and no {', '.join(BESIDE_TRAINING_SET)} in train_root {cfg.train_root}; "
                    f"training without validation (give --val_sets=path/to/lfw.bin to validate)")
    return list(dict.fromkeys(specs)), note


def load_verification_set(spec: str, cfg) -> VerificationSet:
    """The verification set named by `spec` (an entry of cfg.val_sets), with cfg.input_size and cfg.color_order."""
    hw, order = cfg.input_hw, cfg.color_order
    if spec == "synthetic":
        paths = ensure_synthetic(cfg)
        pairs = read_lfw_pairs(paths.val_pairs)
        files, index = _resolve_images(pairs, paths.val_root, "val_sets")
        return VerificationSet("synthetic", ImageList(files, hw, order), pairs.issame, pairs.folds, index)
    if "::" in spec:
        pairs_file, image_root = spec.split("::", 1)
    else:
        pairs_file, image_root = spec, ""
    if not os.path.exists(pairs_file):
        raise DataPathError(f"val_sets: no such file or directory: {pairs_file}")
    if "::" not in spec and Path(pairs_file).suffix.lower() == ".bin":
        bins, issame = load_bin(pairs_file)
        return VerificationSet(Path(pairs_file).stem, ImageList(bins, hw, order, source=pairs_file), issame,
                               contiguous_folds(len(issame)))
    if image_root and not os.path.isdir(image_root):
        raise DataPathError(f"val_sets: image root {image_root} is not a directory")
    pairs = read_pairs(pairs_file)
    root = image_root or pairs.base or str(Path(pairs_file).parent)
    files, index = _resolve_images(pairs, root, "val_sets")
    return VerificationSet(_set_name(pairs_file), ImageList(files, hw, order), pairs.issame, pairs.folds, index)


def _set_name(pairs_file: str) -> str:
    """A readable name: "cfp_fp" for a CFP protocol, the folder name for a generic "pairs.txt", else the stem."""
    p = Path(pairs_file).resolve()
    if is_cfp_protocol(p):
        return "cfp_ff" if p.name == "FF" else "cfp_fp"
    if p.stem.lower() in ("pairs", "pair", "pair_list", "pairs_list") and p.parent.name:
        return p.parent.name
    if p.stem.lower().startswith("pairs_"):  # pairs_CALFW.txt -> "calfw", the name of its .bin
        return p.stem[len("pairs_"):].lower()
    return p.stem
