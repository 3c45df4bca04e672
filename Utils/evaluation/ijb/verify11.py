"""IJB 1:1 verification: cosine of every template pair, computed in chunks, and TAR at FAR from the ROC.

IJB-C has 15.6 M pairs of 23,124 templates: gathering both sides of every pair at once (insightface's batches of
100,000 pairs, or a whole-list gather) costs 2 x pairs x D x 4 bytes (64 GB at 512-d for the full list); scoring
`chunk` pairs at a time keeps the working set at 2 x chunk x D x 4 bytes (200 MB for 50,000 pairs) on top of the
templates and the scores themselves.

TAR at FAR is read as insightface's eval_ijbc reads it: sklearn's roc_curve, then the point whose FPR is closest to
the target (`tar_at_far`). That point may lie a little above the target; `tar_at_far_le` is the stricter reading
(the best TAR among points whose FPR is <= the target), reported next to it.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import auc, roc_curve
from tqdm import tqdm

__all__ = ["IJB_FARS", "template_rows", "pair_scores", "evaluate_1to1"]

IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def template_rows(template_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Row of each `wanted` template id in the sorted unique `template_ids` (every one must be there)."""
    rows = np.searchsorted(template_ids, wanted)
    rows = np.minimum(rows, len(template_ids) - 1)
    missing = template_ids[rows] != wanted
    if missing.any():
        raise ValueError(f"template {wanted[int(np.argmax(missing))]} has no pooled feature")
    return rows


_GRAM_ROWS = 1024  # templates per block of the Gram route: a 1024 x 23,124 float32 block is 95 MB


def _scores_by_gather(feats, rows1, rows2, chunk, bar) -> np.ndarray:
    out = np.empty(len(rows1), dtype=np.float32)
    for s in range(0, len(rows1), chunk):
        e = min(s + chunk, len(rows1))
        out[s:e] = np.einsum("ij,ij->i", feats[rows1[s:e]], feats[rows2[s:e]])
        bar.update(e - s)
    return out


def _scores_by_gram(feats, rows1, rows2, bar) -> np.ndarray:
    """Pairs grouped by their first template; per block of first templates one matmul against all templates, from
    which the block's pairs are read. Memory: one block of the Gram matrix plus the pairs' sort order."""
    out = np.full(len(rows1), np.nan, dtype=np.float32)  # a pair no block covered would show, not hide
    order = np.argsort(rows1, kind="stable")
    first = rows1[order]
    bounds = np.searchsorted(first, np.arange(0, len(feats) + _GRAM_ROWS, _GRAM_ROWS))
    others = np.ascontiguousarray(feats.T)
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b], bounds[b + 1]
        if lo == hi:
            continue
        gram = feats[b * _GRAM_ROWS:(b + 1) * _GRAM_ROWS] @ others
        idx = order[lo:hi]
        out[idx] = gram[first[lo:hi] - b * _GRAM_ROWS, rows2[idx]]
        bar.update(hi - lo)
    return out


def pair_scores(feats: np.ndarray, rows1: np.ndarray, rows2: np.ndarray, chunk: int = 50_000,
                progress: bool = True, method: str = "auto") -> np.ndarray:
    """float32 dot product of feats[rows1[k]] and feats[rows2[k]] for every pair k, in bounded memory.

    "gather": `chunk` pairs at a time, both sides gathered and multiplied (memory-bound: ~10 us per 512-d pair on a
    loaded CPU). "gram": blocks of the template x template matrix by matmul, which costs templates^2 x D whatever
    the pair count but runs near the matmul peak; "auto" takes it when pairs > templates^2 / 40 (IJB-C: 15.6M pairs
    of 23,124 templates), where it measured faster. The two differ only in float32 rounding (~1e-7).
    """
    if chunk < 1:
        raise ValueError(f"chunk: must be >= 1, got {chunk}")
    if method == "auto":
        method = "gram" if len(rows1) * 40 > len(feats) ** 2 else "gather"
    with tqdm(total=len(rows1), desc="1:1 pair scores", unit="pair", unit_scale=True, dynamic_ncols=True,
              disable=not progress) as bar:
        if method == "gram":
            return _scores_by_gram(feats, rows1, rows2, bar)
        if method == "gather":
            return _scores_by_gather(feats, rows1, rows2, chunk, bar)
    raise ValueError(f"method: '{method}' is not one of: auto, gather, gram")


def _far_key(far: float) -> str:
    return f"{far:.0e}"


def evaluate_1to1(scores: np.ndarray, same: np.ndarray,
                  fars: Sequence[float] = IJB_FARS) -> tuple[dict, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(JSON-ready summary, (fpr, tpr, thresholds) of sklearn's roc_curve) of pair `scores` and labels `same`."""
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("1:1 verification needs both same and different template pairs")
    fpr, tpr, thr = roc_curve(same, scores)
    closest, at_most = {}, {}
    for far in fars:
        closest[_far_key(far)] = float(tpr[int(np.argmin(np.abs(fpr - far)))])
        ok = fpr <= far
        at_most[_far_key(far)] = float(tpr[ok].max()) if ok.any() else 0.0
    n_diff = int((~same).sum())
    summary = {"n_pairs": int(same.size), "n_same": int(same.sum()), "n_different": n_diff,
               "tar_at_far": closest, "tar_at_far_le": at_most, "auc": float(auc(fpr, tpr)),
               "far_floor": 1.0 / n_diff,  # targets below it are met only with no false accept at all
               "tar_at_far_rule": "insightface eval_ijbc: TPR of the sklearn roc_curve point whose FPR is closest "
                                  "to the target; tar_at_far_le: best TPR with FPR <= target"}
    return summary, (fpr, tpr, thr)
