"""Closed-set identification on a plain folder of identities (root/<identity>/<image>), e.g. the AT&T/ORL faces.

Two protocols over the same features (image + horizontal flip, concatenated as the original project does; cosine):
- leave-one-out: every image is a probe against all the others; rank-1 means its nearest other image has its
  identity. An identity with a single image has nothing to match and its probe is counted apart.
- gallery/probe: the first K images of each identity (natural name order) form the gallery, the rest are probes.
Rank-k (CMC): the probe's identity is among the k identities whose best gallery image scores highest.

The functions are pure numpy; the images come through Datasets.images (identity folder scan, ImageList with its
stretch / crop / pad fitting of unaligned images).
"""
from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_MODES", "identification_features", "true_identity_ranks", "cmc_curve", "gallery_split",
           "evaluate_identification"]

FEATURE_MODES = ("concat", "sum", "single")


def identification_features(emb: np.ndarray, emb_flip: np.ndarray | None, mode: str = "concat") -> np.ndarray:
    """L2-normalised features: image and flip embeddings concatenated (the original project), summed, or the image
    alone."""
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
