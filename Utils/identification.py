"""Closed-set identification on a plain folder of identities (root/<identity>/<image>), e.g. the AT&T/ORL faces.

Two protocols over the same features (image + horizontal flip, combined as the seed does: concatenated; cosine):
- leave-one-out: every image is a probe against all the others; rank-1 means its nearest other image has its
  identity. An identity with a single image has nothing to match and its probe is counted apart.
- gallery/probe: the first K images of each identity (natural name order) form the gallery, the rest are probes.
Rank-k (CMC): the probe's identity is among the k identities whose best gallery image scores highest.

The metric functions are pure numpy; `FaceImages` turns unaligned images of any size and mode (greyscale PGM...)
into the network's input, stretched, centre-cropped or padded to its aspect ratio as the user asks.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["IMAGE_EXTENSIONS", "IdentityFolder", "scan_identity_folder", "FaceImages", "fit_image",
           "identification_features", "true_identity_ranks", "cmc_curve", "gallery_split", "evaluate_identification"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp")
RESIZE_MODES = ("stretch", "crop", "pad")
FEATURE_MODES = ("concat", "sum", "single")


def _natural_key(name: str) -> list:
    # s2 before s10, 2.pgm before 10.pgm: the order a person reads the folder in
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


@dataclass
class IdentityFolder:
    """Image paths with integer labels (index into `names`), identities and files in natural order."""
    root: str
    paths: list[str]
    labels: np.ndarray  # int64 (N,)
    names: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def scan_identity_folder(root: str | os.PathLike, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> IdentityFolder:
    """Every sub-folder of `root` is an identity; its image files (by extension, case-insensitive) its images.
    Sub-folders without images are left out; a root with no images at all is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"identity folder not found: {root}")
    exts = {e.lower() for e in extensions}
    paths, labels, names = [], [], []
    for folder in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: _natural_key(d.name)):
        files = sorted((f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in exts),
                       key=lambda f: _natural_key(f.name))
        if not files:
            continue
        label = len(names)
        names.append(folder.name)
        paths += [str(f) for f in files]
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root}: no identity sub-folders with images ({', '.join(sorted(exts))})")
    return IdentityFolder(str(root), paths, np.asarray(labels, dtype=np.int64), names)


def fit_image(img, input_hw: Sequence[int], mode: str = "stretch"):
    """Bring a PIL image to the aspect ratio of `input_hw` (H, W): "stretch" leaves it (the resize to the input
    stretches it), "crop" cuts the centre, "pad" adds black borders. The final resize is normalize_image's."""
    from PIL import Image

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    h, w = int(input_hw[0]), int(input_hw[1])
    iw, ih = img.size
    if mode == "stretch" or iw * h == ih * w:
        return img
    if mode == "crop":
        if iw * h > ih * w:  # too wide
            cw = round(ih * w / h)
            left = (iw - cw) // 2
            return img.crop((left, 0, left + cw, ih))
        ch = round(iw * h / w)
        top = (ih - ch) // 2
        return img.crop((0, top, iw, top + ch))
    if iw * h > ih * w:  # pad: too wide -> taller canvas
        canvas = Image.new(img.mode, (iw, round(iw * h / w)))
    else:
        canvas = Image.new(img.mode, (round(ih * w / h), ih))
    canvas.paste(img, ((canvas.size[0] - iw) // 2, (canvas.size[1] - ih) // 2))
    return canvas


class FaceImages(Dataset):
    """Image files -> network inputs: RGB (greyscale replicated), fitted to the input's aspect ratio, resized,
    channel order applied, (x - 127.5) / 128. A missing or corrupt file is an error naming it."""

    def __init__(self, paths: Sequence[str], input_hw: Sequence[int], color_order: str = "RGB",
                 resize: str = "stretch"):
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.paths, self.input_hw, self.color_order, self.resize = list(paths), tuple(input_hw), color_order, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        from Datasets.transforms import decode_image, normalize_image

        try:
            img = decode_image(self.paths[i])  # RGB: a greyscale PGM gets its one channel three times
        except Exception as exc:
            raise ValueError(f"{self.paths[i]}: cannot be decoded ({type(exc).__name__}: {exc})") from None
        return normalize_image(fit_image(img, self.input_hw, self.resize), self.input_hw, self.color_order)


def identification_features(emb: np.ndarray, emb_flip: np.ndarray | None, mode: str = "concat") -> np.ndarray:
    """L2-normalised features: image and flip embeddings concatenated (the seed), summed, or the image alone."""
    if mode not in FEATURE_MODES:
        raise ValueError(f"feature mode must be one of {', '.join(FEATURE_MODES)}, got {mode!r}")
    if mode != "single" and emb_flip is None:
        raise ValueError(f"feature mode '{mode}' needs the flipped images' embeddings")
    x = np.asarray(emb, dtype=np.float64)
    if mode == "concat":
        x = np.concatenate([x, np.asarray(emb_flip, dtype=np.float64)], axis=1)
    elif mode == "sum":
        x = x + np.asarray(emb_flip, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise ValueError("embeddings contain non-finite values or all-zero rows")
    return (x / norms).astype(np.float32)


def true_identity_ranks(probe: np.ndarray, probe_labels: np.ndarray, gallery: np.ndarray,
                        gallery_labels: np.ndarray, exclude_self: bool = False, chunk: int = 1024
                        ) -> tuple[np.ndarray, np.ndarray]:
    """For each probe: the 1-based rank of its identity among gallery identities scored by their best image
    (cosine of normalised features), and the gallery index of its nearest image. Rank 0 marks a probe whose
    identity has no gallery image to find. Ties count in the probe's favour (strictly higher scores outrank it).

    `exclude_self`: probes and gallery are the same images (leave-one-out): an image never matches itself.
    Scores are computed `chunk` probes at a time: memory O(chunk x gallery).
    """
    probe_labels = np.asarray(probe_labels, dtype=np.int64)
    gallery_labels = np.asarray(gallery_labels, dtype=np.int64)
    if exclude_self and len(probe) != len(gallery):
        raise ValueError("exclude_self needs the probes to be the gallery")
    ids, inverse = np.unique(gallery_labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inverse[order]) != 0])  # first column of each identity
    column = {int(label): j for j, label in enumerate(ids)}
    ranks = np.zeros(len(probe), dtype=np.int64)
    nearest = np.zeros(len(probe), dtype=np.int64)
    g = np.asarray(gallery, dtype=np.float32)
    for lo in range(0, len(probe), chunk):
        hi = min(lo + chunk, len(probe))
        scores = np.asarray(probe[lo:hi], dtype=np.float32) @ g.T
        if exclude_self:
            scores[np.arange(hi - lo), np.arange(lo, hi)] = -np.inf
        nearest[lo:hi] = scores.argmax(axis=1)
        per_id = np.maximum.reduceat(scores[:, order], starts, axis=1)  # (chunk, identities): best image each
        for i, label in enumerate(probe_labels[lo:hi]):
            j = column.get(int(label))
            if j is None or not np.isfinite(per_id[i, j]):
                continue  # rank 0: nothing of this identity to find
            ranks[lo + i] = 1 + int(np.count_nonzero(per_id[i] > per_id[i, j]))
    return ranks, nearest


def cmc_curve(ranks: np.ndarray, max_rank: int) -> np.ndarray:
    """Fraction of the rankable probes (rank > 0) found within rank 1..max_rank."""
    valid = ranks[ranks > 0]
    if len(valid) == 0:
        raise ValueError("no probe has a gallery image of its identity")
    return np.array([(valid <= k).mean() for k in range(1, max_rank + 1)])


def gallery_split(labels: np.ndarray, gallery_per_identity: int) -> np.ndarray:
    """Boolean gallery mask: the first `gallery_per_identity` images (in order) of each identity."""
    if gallery_per_identity < 1:
        raise ValueError(f"gallery_per_identity must be >= 1, got {gallery_per_identity}")
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels):
        seen[int(label)] = seen.get(int(label), 0) + 1
        mask[i] = seen[int(label)] <= gallery_per_identity
    return mask


def evaluate_identification(features: np.ndarray, labels: np.ndarray, protocol: str = "loo",
                            gallery_per_identity: int = 5, max_rank: int = 5) -> dict:
    """Rank-1 and the CMC of normalised `features` (N, D) with identity `labels` (N,).

    Returns a dict: protocol, identities, gallery/probe counts, unrankable (probes with no image of their
    identity to find), rank1, cmc (list, rank 1..max_rank), and per-probe `ranks` / `nearest` (gallery indices into
    the full image list) for error listings.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if protocol == "loo":
        probe_idx = gallery_idx = np.arange(len(labels))
        ranks, nearest = true_identity_ranks(features, labels, features, labels, exclude_self=True)
    elif protocol == "split":
        mask = gallery_split(labels, gallery_per_identity)
        gallery_idx, probe_idx = np.flatnonzero(mask), np.flatnonzero(~mask)
        if len(probe_idx) == 0:
            raise ValueError(f"no probes: every identity has at most {gallery_per_identity} images "
                             f"(lower gallery_per_identity or use the leave-one-out protocol)")
        ranks, nearest = true_identity_ranks(features[probe_idx], labels[probe_idx], features[gallery_idx],
                                             labels[gallery_idx])
    else:
        raise ValueError(f"protocol must be 'loo' or 'split', got {protocol!r}")
    max_rank = max(1, min(max_rank, len(np.unique(labels[gallery_idx]))))
    cmc = cmc_curve(ranks, max_rank)
    return {"protocol": protocol, "identities": int(len(np.unique(labels))), "images": int(len(labels)),
            "gallery": int(len(gallery_idx)), "probes": int(len(probe_idx)),
            "unrankable": int(np.count_nonzero(ranks == 0)), "rank1": float(cmc[0]), "cmc": cmc.tolist(),
            "probe_index": probe_idx, "ranks": ranks, "nearest": gallery_idx[nearest]}
