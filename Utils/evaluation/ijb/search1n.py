"""IJB 1:N search of probe templates against gallery templates (cosine of L2-normalised template features).

Two definitions are in use and published numbers mix them, so both are here under their own names:

- `open_set_search` (the benchmark's own, NIST's): one gallery searched at a time; a probe whose subject is not in
  that gallery is a non-mated search. FPIR(t) = share of non-mated searches whose best score is >= t; TPIR(t) =
  share of mated searches whose mate is at rank 1 with score >= t. TPIR at FPIR f uses the lowest threshold with
  FPIR <= f: above the (floor(f n) + 1)-th best non-mated score. Rank-k (CMC) is over the mated searches.
- `closed_set_search` (insightface's ijb_1n.py): the galleries joined, every probe mated; rank-1/5/10 and a "TPIR
  at FAR f" read as the share of probes whose mate score is above the ceil(f x probes)-th largest non-mate score of
  the whole probe x gallery matrix.

A probe's rank is 1 + the number of non-mate gallery templates scoring strictly above its best mate score. Both
run over chunks of probes, so the score matrix in memory is `chunk` x gallery.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["FPIRS", "RANKS", "mate_ranks", "open_set_search", "closed_set_search"]

FPIRS = (1e-2, 1e-1)
RANKS = (1, 5, 10)


def _key(x: float) -> str:
    return f"{x:.0e}"


def mate_ranks(probe_feats: np.ndarray, probe_subjects: np.ndarray, gallery_feats: np.ndarray,
               gallery_subjects: np.ndarray, chunk: int = 4096, keep_top_nonmate: int = 0):
    """Per probe: best mate score (-inf if unmated), rank of the best mate (0 if unmated), best score overall; and
    the `keep_top_nonmate` largest non-mate scores of the whole matrix (descending)."""
    n = len(probe_feats)
    mate = np.full(n, -np.inf)
    rank = np.zeros(n, dtype=np.int64)
    best = np.empty(n)
    top = np.empty(0)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        sim = probe_feats[s:e].astype(np.float64) @ gallery_feats.T.astype(np.float64)
        is_mate = probe_subjects[s:e, None] == gallery_subjects[None, :]
        best[s:e] = sim.max(1)
        m = np.where(is_mate, sim, -np.inf).max(1)
        mate[s:e] = m
        non = np.where(is_mate, -np.inf, sim)
        rank[s:e] = np.where(is_mate.any(1), 1 + (non > m[:, None]).sum(1), 0)
        if keep_top_nonmate:
            vals = non[~is_mate]
            k = min(keep_top_nonmate, vals.size)
            vals = np.partition(vals, vals.size - k)[vals.size - k:] if k else vals[:0]
            top = np.concatenate([top, vals])
            if top.size > keep_top_nonmate:
                top = np.partition(top, top.size - keep_top_nonmate)[top.size - keep_top_nonmate:]
    return mate, rank, best, np.sort(top)[::-1]


def _cmc(rank: np.ndarray, mated: np.ndarray, max_rank: int) -> list[float]:
    r = rank[mated]
    return [float(np.mean(r <= k)) if r.size else float("nan") for k in range(1, max_rank + 1)]


def open_set_search(probe_feats, probe_subjects, gallery_feats, gallery_subjects,
                    fpirs: Sequence[float] = FPIRS, ranks: Sequence[int] = RANKS, chunk: int = 4096) -> dict:
    """The benchmark's open-set metrics of one gallery (see the module docstring)."""
    mate, rank, best, _ = mate_ranks(probe_feats, probe_subjects, gallery_feats, gallery_subjects, chunk)
    mated = rank > 0
    non_best = np.sort(best[~mated])[::-1]
    tpir, thresholds = {}, {}
    for f in fpirs:
        k = int(math.floor(f * non_best.size + 1e-9))  # non-mated searches allowed above the threshold
        if not mated.any() or not non_best.size:
            tpir[_key(f)], thresholds[_key(f)] = None, None
            continue
        thr = non_best[k] if k < non_best.size else -np.inf
        tpir[_key(f)] = float(np.mean((rank[mated] == 1) & (mate[mated] > thr)))
        thresholds[_key(f)] = float(thr)
    cmc = _cmc(rank, mated, max(ranks))
    return {"n_probes": int(len(rank)), "n_mated": int(mated.sum()), "n_non_mated": int((~mated).sum()),
            "n_gallery": int(len(gallery_subjects)), "tpir_at_fpir": tpir, "threshold_at_fpir": thresholds,
            **{f"rank_{k}": cmc[k - 1] for k in ranks}, "cmc": cmc}


def closed_set_search(probe_feats, probe_subjects, gallery_feats, gallery_subjects,
                      fars: Sequence[float] = FPIRS, ranks: Sequence[int] = RANKS, chunk: int = 4096) -> dict:
    """insightface ijb_1n.py's closed-set metrics over the joined gallery (see the module docstring)."""
    mated = np.isin(probe_subjects, gallery_subjects)
    if not mated.any():
        raise ValueError("closed-set search: no probe has its subject in the gallery")
    pf, ps = probe_feats[mated], probe_subjects[mated]  # insightface assumes every probe is mated
    need = max(math.ceil(f * len(ps)) for f in fars)
    mate, rank, _, top = mate_ranks(pf, ps, gallery_feats, gallery_subjects, chunk, keep_top_nonmate=need)
    tpir, thresholds = {}, {}
    for f in fars:
        k = math.ceil(f * len(ps))
        thr = top[k - 1] if 0 < k <= top.size else -np.inf
        tpir[_key(f)] = float(np.mean(mate > thr))
        thresholds[_key(f)] = float(thr)
    cmc = _cmc(rank, np.ones(len(ps), dtype=bool), max(ranks))
    return {"n_probes": int(len(ps)), "n_left_out": int((~mated).sum()), "n_gallery": int(len(gallery_subjects)),
            "tpir_at_far": tpir, "threshold_at_far": thresholds, **{f"rank_{k}": cmc[k - 1] for k in ranks},
            "cmc": cmc}
