"""MegaFace Challenge 1 metrics from features, exact: identification (CMC, rank-1) and verification (TAR at FAR down
to 1e-6, ROC), as the devkit defines them, without its binaries.

Protocol (devkit): probes are FaceScrub images with identity labels, distractors are MegaFace images.
- Identification: for each identity, each of its images g in turn joins the distractor gallery and the identity's
  other images p are probes. The rank of g for p is 1 + #{distractors d with score(p, d) >= score(p, g)}: a tie
  counts AGAINST the probe (pessimistic), so a collapsed model whose features are all equal scores 0, not 100%.
  CMC(r) = fraction of (p, g) pairs with rank <= r; rank-1 = CMC(1).
- Verification: genuine pairs = unordered probe pairs of one identity; impostor pairs = every (probe, distractor).
  A pair is accepted when score > threshold. TAR at FAR f uses the loosest threshold that accepts at most
  floor(f * #impostors) impostors: the (floor(f * #impostors) + 1)-th highest impostor score.
The probe x distractor scores come from one pass of megaface_search.search_distractors.
"""
from __future__ import annotations

import math
import time
from typing import Sequence

import numpy as np
import torch

from .megaface_search import DistractorSearch, allowed_impostors, search_distractors

__all__ = ["DEFAULT_FARS", "l2_normalize", "replace_with_identity_centres", "identity_scores", "identification",
           "verification", "evaluate_megaface"]

DEFAULT_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32, copy=False)


def replace_with_identity_centres(features: np.ndarray, labels: np.ndarray,
                                  noisy: np.ndarray) -> tuple[np.ndarray, int]:
    """FaceScrub cleaning (insightface's remove_noises): each noisy probe's feature becomes its identity's centre.

    The centre is the mean of the identity's clean features, L2-normalised so that it scores on the same cosine
    scale as the other probes. An identity with no clean image keeps its features. Returns (features, replaced).
    """
    out = np.array(features, dtype=np.float32, copy=True)
    labels = np.asarray(labels)
    noisy = np.asarray(noisy, dtype=bool)
    replaced = 0
    for c in np.unique(labels[noisy]):
        members = labels == c
        clean = members & ~noisy
        if not clean.any():
            continue
        centre = out[clean].astype(np.float64).mean(axis=0)
        centre /= max(np.linalg.norm(centre), 1e-12)
        bad = members & noisy
        out[bad] = centre.astype(np.float32)
        replaced += int(bad.sum())
    return out, replaced


def identity_scores(probes: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(members, scores[i, j] between members i and j)] per identity of two or more images: the genuine scores,
    computed once and shared by `identification` and `verification` (and across distractor sizes).

    Scores are float64 sums of exact float64 products reduced along a contiguous row of length D, the reduction
    `megaface_search.exact_scores` uses for probe-distractor pairs, so bitwise-equal vectors give bitwise-equal scores.
    """
    x = torch.as_tensor(np.ascontiguousarray(probes, dtype=np.float32))
    out = []
    for members in _identity_groups(labels):
        if members.size >= 2:
            a = x[torch.as_tensor(members)].to(torch.float64)
            out.append((members, (a[:, None, :] * a[None, :, :]).sum(dim=2).numpy()))
    return out


def _identity_groups(labels: np.ndarray) -> list[np.ndarray]:
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    return np.split(order, bounds)


def identification(probes: np.ndarray, labels: np.ndarray, search: DistractorSearch,
                   max_rank: int | None = None, genuine: list | None = None) -> dict:
    """CMC over ranks 1..K (K = the search's k) with the devkit protocol and pessimistic ties (module docstring)."""
    k = search.topk_scores.shape[1] if max_rank is None else min(max_rank, search.topk_scores.shape[1])
    counts = np.zeros(k + 1, dtype=np.int64)  # counts[j] = pairs whose gallery image is beaten by j distractors
    pairs = 0
    for members, scores in (identity_scores(probes, labels) if genuine is None else genuine):  # scores[p, g]
        top = search.topk_scores[members, :k]  # (n_c, k) descending
        # distractors (among the top k) scoring >= the gallery image, for every (probe, gallery) pair
        beaten = (top[:, None, :] >= scores[:, :, None]).sum(axis=2)
        off_diag = ~np.eye(members.size, dtype=bool)
        counts += np.bincount(beaten[off_diag], minlength=k + 1)
        pairs += int(off_diag.sum())
    cmc = np.cumsum(counts[:k]) / max(pairs, 1)
    return {"cmc": cmc.tolist(), "rank1": float(cmc[0]) if k else 0.0, "num_pairs": pairs, "max_rank": k,
            "num_distractors": search.num_distractors}


def _genuine_scores(probes: np.ndarray, labels: np.ndarray, genuine: list | None) -> np.ndarray:
    groups = identity_scores(probes, labels) if genuine is None else genuine
    out = [scores[np.triu_indices(members.size, 1)] for members, scores in groups]
    return np.sort(np.concatenate(out))[::-1] if out else np.zeros(0)


def _hist_bins(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values descending, counts) of the non-empty bf16 bins."""
    patterns = np.flatnonzero(counts)
    values = (patterns.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    order = np.argsort(-values, kind="stable")
    values, c = values[order], counts[patterns][order]
    # +0.0 and -0.0 are separate patterns of one value
    uniq, start = np.unique(-values, return_index=True)
    return -uniq, np.add.reduceat(c, start)


def _count_above(sorted_desc: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """#{s > t} for each t, given scores sorted descending."""
    return np.searchsorted(-sorted_desc, -np.asarray(thresholds, dtype=np.float64), side="left")


def verification(probes: np.ndarray, labels: np.ndarray, search: DistractorSearch,
                 fars: Sequence[float] = DEFAULT_FARS, roc_points: int = 200, genuine: list | None = None) -> dict:
    """TAR at each FAR (exact where the kept tail reaches, else from the histogram, marked "exact": False) and
    the ROC (exact part from the tail, coarse part from the histogram)."""
    genuine = _genuine_scores(probes, labels, genuine)
    n_gen = max(genuine.size, 1)
    n_imp = search.num_impostors
    tail = search.tail_scores
    bins = _hist_bins(search.hist_counts) if search.hist_counts is not None else None
    rows = []
    for far in fars:
        allowed = allowed_impostors(far, n_imp)  # impostors the threshold may accept
        if allowed < tail.size or search.tail_complete:
            thr = float(tail[allowed]) if allowed < tail.size else -math.inf
            accepted = int(_count_above(tail, [thr])[0])
            exact = True
        elif bins is not None:
            above = np.concatenate([[0], np.cumsum(bins[1])])[:-1]  # impostors in bins strictly above each bin
            ok = np.flatnonzero(above <= allowed)
            j = ok[-1]
            thr, accepted, exact = float(bins[0][j]), int(above[j]), False
        else:
            rows.append({"far": far, "tar": None, "threshold": None, "exact": False})
            continue
        tar = float(_count_above(genuine, [thr])[0]) / n_gen
        rows.append({"far": far, "tar": tar, "threshold": thr, "far_actual": accepted / max(n_imp, 1),
                     "exact": exact})
    # ROC: thresholds at log-spaced ranks of the exact tail, then at the histogram's bins beyond it
    roc_far, roc_tar, roc_thr = [], [], []
    if tail.size:
        ranks = np.unique(np.geomspace(1, tail.size, num=roc_points).astype(np.int64)) - 1
        thr = tail[ranks]
        acc = _count_above(tail, thr)
        roc_far += (acc / max(n_imp, 1)).tolist()
        roc_tar += (_count_above(genuine, thr) / n_gen).tolist()
        roc_thr += thr.tolist()
    if bins is not None and not search.tail_complete:
        values, c = bins
        above = np.concatenate([[0], np.cumsum(c)])[:-1]
        beyond = above > tail.size
        pick = np.flatnonzero(beyond)
        if pick.size:
            pick = pick[np.unique(np.geomspace(1, pick.size, num=roc_points).astype(np.int64)) - 1]
            roc_far += (above[pick] / max(n_imp, 1)).tolist()
            roc_tar += (_count_above(genuine, values[pick]) / n_gen).tolist()
            roc_thr += values[pick].tolist()
    return {"tar_at_far": rows, "roc": {"far": roc_far, "tar": roc_tar, "threshold": roc_thr},
            "num_genuine": int(genuine.size), "num_impostors": int(n_imp), "tail_size": int(tail.size),
            "num_distractors": search.num_distractors}


def evaluate_megaface(probes: np.ndarray, labels: np.ndarray, distractors: np.ndarray, *,
                      index: np.ndarray | None = None, max_rank: int = 10, fars: Sequence[float] = DEFAULT_FARS,
                      precision: str = "auto", device: str | torch.device = "cpu", chunk_size: int = 16384,
                      tail_far: float = 1e-5, histogram: bool = True, num_unreachable: int = 0,
                      progress: bool = True, genuine: list | None = None) -> dict:
    """Identification and verification for one distractor set in one pass; a JSON-ready dict.

    `genuine` (from `identity_scores`) may be passed to share the probe-probe scores across distractor sets."""
    search = search_distractors(probes, distractors, index=index, k=max_rank, tail_far=tail_far,
                                precision=precision, device=device, chunk_size=chunk_size, histogram=histogram,
                                num_unreachable=num_unreachable, progress=progress)
    t0 = time.perf_counter()
    genuine = identity_scores(probes, labels) if genuine is None else genuine
    ident = identification(probes, labels, search, genuine=genuine)
    verif = verification(probes, labels, search, fars=fars, genuine=genuine)
    return {"num_distractors": search.num_distractors, "num_unreachable": num_unreachable,
            "identification": ident, "verification": verif, "precision": search.precision,
            "search_seconds": search.seconds, "metric_seconds": time.perf_counter() - t0,
            "rescored_pairs": search.rescored, "widened": search.widened}
