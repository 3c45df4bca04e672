"""MegaFace Challenge 1 metrics from features, exact, in bounded memory: identification (CMC, rank-1) and
verification (TAR at FAR down to 1e-6, ROC), as the devkit defines them, without its binaries.

Protocol (devkit): probes are FaceScrub images with identity labels, distractors are MegaFace images.
- Identification: for each identity, each of its images g in turn joins the distractor gallery and the identity's
  other images p are probes. The rank of g for p is 1 + #{distractors d with score(p, d) >= score(p, g)}: a tie
  counts AGAINST the probe (pessimistic), so a collapsed model whose features are all equal scores 0, not 100%.
  CMC(r) = fraction of (p, g) pairs with rank <= r; rank-1 = CMC(1).
- Verification: genuine pairs = unordered probe pairs of one identity; impostor pairs = every (probe, distractor).
  A pair is accepted when score > threshold. TAR at FAR f uses the loosest threshold that accepts at most
  floor(f * #impostors) impostors: the (floor(f * #impostors) + 1)-th highest impostor score.

How it stays small and fast: at 3,530 probes x 1e6 distractors the score matrix has 3.5e9 entries, but the metrics
need only (a) each probe's K highest distractor scores (rank <= K iff score(p, g) > K-th best, by the rule above) and
(b) the few thousand highest impostor scores over all pairs (FAR 1e-6 of 3.5e9 is the 3,530th). Distractors are
scored in chunks; per chunk a block-max reduction (max of every B consecutive scores, one cheap pass) picks the few
blocks that can hold a new top entry, and only those are opened. The chunk matmul runs in low precision (bf16 on
CPUs with AVX512-BF16/AMX and on GPUs) purely as a filter: every candidate is rescored in float64 and a rigorous
rounding-error bound decides which candidates must be rescored and certifies that no unopened entry could
enter the kept lists (if the certificate fails, the selection widens and that chunk is redone). The results are
therefore those of exact scores, whatever the matmul precision; the tests compare them with a brute-force matrix.
Coarse FARs (above the kept tail) come from a histogram of all impostor scores at bf16 resolution (65,536 bins).
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

__all__ = ["DistractorSearch", "search_distractors", "identification", "verification", "evaluate_megaface",
           "identity_scores", "l2_normalize", "replace_with_identity_centres", "resolve_precision", "DEFAULT_FARS", "PRECISIONS"]

DEFAULT_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_BLOCK = 64  # scores per block of the block-max reduction (a tenth of the work of a top-k pass on a chunk)
_RESCORE_BATCH = 4096  # pairs rescored in float64 at once (gathered rows: 2 x 4096 x D doubles)
_LOW_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_UNIT_ROUNDOFF = {"bf16": 2.0 ** -9, "fp16": 2.0 ** -11, "fp32": 2.0 ** -24}


@dataclass
class DistractorSearch:
    """What the metrics need from the probe x distractor scores (all scores exact float64 dot products).

    topk_scores[p] are probe p's K highest distractor scores, descending (-inf where fewer than K distractors);
    tail_* are the L highest impostor scores over all (probe, distractor) pairs, descending, with their pairs;
    hist_counts[b] counts impostor scores whose bf16 rounding has bit pattern b (coarse ROC), None if skipped.
    """
    topk_scores: np.ndarray
    topk_index: np.ndarray
    tail_scores: np.ndarray
    tail_probe: np.ndarray
    tail_distractor: np.ndarray
    hist_counts: np.ndarray | None
    num_probes: int
    num_distractors: int
    num_unreachable: int = 0  # distractors removed from reach (cleaning): impostor pairs no threshold accepts
    precision: str = "fp32"
    seconds: float = 0.0
    rescored: int = 0  # pairs rescored in float64
    widened: int = 0  # selections widened because the certificate failed

    @property
    def num_impostors(self) -> int:
        return self.num_probes * (self.num_distractors + self.num_unreachable)

    @property
    def tail_complete(self) -> bool:
        """True when the tail holds every reachable impostor score."""
        return len(self.tail_scores) >= self.num_probes * self.num_distractors


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, eps)).astype(np.float32, copy=False)


def replace_with_identity_centres(features: np.ndarray, labels: np.ndarray, noisy: np.ndarray) -> tuple[np.ndarray, int]:
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


_PRECISION_CACHE: dict[str, str] = {}


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """"auto" -> the fastest matmul precision on `device`: bf16 on GPUs that have it (else fp16), and on CPUs
    whichever of bf16/fp32 is faster in a quick trial (bf16 is several times faster with AVX512-BF16 or AMX, and
    slower where it is emulated)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if "cpu" not in _PRECISION_CACHE:
        a32, b32 = torch.randn(512, 512), torch.randn(2048, 512)
        times = {}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            a, b = a32.to(dtype), b32.to(dtype)
            a @ b.T  # warm-up: kernel selection
            t0 = time.perf_counter()
            for _ in range(3):
                a @ b.T
            times[name] = time.perf_counter() - t0
        _PRECISION_CACHE["cpu"] = "bf16" if times["bf16"] < 0.8 * times["fp32"] else "fp32"
    return _PRECISION_CACHE["cpu"]


def _rounding_model(precision: str, device: torch.device) -> tuple[float | None, float]:
    """(u_in, u_out) of the low-precision matmul: the unit roundoff applied to its inputs inside the kernel when
    that is invisible to us (None when we round the inputs ourselves and measure the residual), and the roundoff of
    its output. fp32 is exact on input unless torch's matmul precision is relaxed (TF32 on GPUs, bf16 in oneDNN)."""
    if precision != "fp32":
        return None, _UNIT_ROUNDOFF[precision]
    relaxed = torch.get_float32_matmul_precision() != "highest"
    if device.type == "cuda" and (relaxed or torch.backends.cuda.matmul.allow_tf32):
        return 2.0 ** -11, 2.0 ** -24
    if relaxed:
        return 2.0 ** -9, 2.0 ** -24
    return 0.0, 2.0 ** -24


class _Histogram:
    """Counts of scores per bf16 bit pattern (65,536 bins), accumulated in a worker thread on CPU so that the
    single-threaded bincount overlaps the next chunk's matmul (one chunk in flight at most: bounded memory)."""

    def __init__(self, device: torch.device):
        self.counts = torch.zeros(65536, dtype=torch.int64, device=device)
        self._pool = ThreadPoolExecutor(max_workers=1) if device.type == "cpu" else None
        self._pending: Future | None = None

    @staticmethod
    def _count(scores: torch.Tensor) -> torch.Tensor:
        bits = scores.to(torch.bfloat16).view(torch.int16).reshape(-1).to(torch.int32).bitwise_and_(0xFFFF)
        return torch.bincount(bits, minlength=65536)

    def add(self, scores: torch.Tensor) -> None:
        if self._pool is None:
            self.counts += self._count(scores)
            return
        self.wait()
        self._pending = self._pool.submit(self._count, scores)

    def wait(self) -> None:
        if self._pending is not None:
            self.counts += self._pending.result()
            self._pending = None

    def close(self) -> np.ndarray:
        self.wait()
        if self._pool is not None:
            self._pool.shutdown()
        return self.counts.cpu().numpy()


def _exact_scores(p64: torch.Tensor, g32: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float64 dot products of the pairs (probe rows[i], distractor cols[i]).

    The products of float32 values are exact in float64, and every pair is summed by the same row reduction, so
    bitwise-equal vectors give bitwise-equal scores: genuine scores (`identity_scores`) use the same reduction, which
    keeps exact ties exact (a collapsed model's features must tie, not win by a rounding accident).
    """
    out = torch.empty(rows.numel(), dtype=torch.float64, device=p64.device)
    for s in range(0, rows.numel(), _RESCORE_BATCH):
        a = p64.index_select(0, rows[s:s + _RESCORE_BATCH])
        b = g32.index_select(0, cols[s:s + _RESCORE_BATCH]).to(torch.float64)
        out[s:s + _RESCORE_BATCH] = (a * b).sum(dim=1)
    return out


def identity_scores(probes: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(members, scores[i, j] between members i and j)] per identity of two or more images: the genuine scores,
    computed once and shared by `identification` and `verification` (and across distractor sizes).

    Scores are float64 sums of exact float64 products reduced along a contiguous row of length D, the reduction
    `_exact_scores` uses for probe-distractor pairs, so bitwise-equal vectors give bitwise-equal scores.
    """
    x = torch.as_tensor(np.ascontiguousarray(probes, dtype=np.float32))
    out = []
    for members in _identity_groups(labels):
        if members.size >= 2:
            a = x[torch.as_tensor(members)].to(torch.float64)
            out.append((members, (a[:, None, :] * a[None, :, :]).sum(dim=2).numpy()))
    return out


class _Searcher:
    """State of one pass over the distractors: per-probe top-K and the global impostor tail."""

    def __init__(self, probes: torch.Tensor, k: int, tail_size: int, precision: str, device: torch.device):
        self.device = device
        self.precision = precision
        self.low = probes.to(_LOW_DTYPES[precision])
        self.p64 = probes.to(torch.float64)
        self.pnorm = self.p64.norm(dim=1)
        self.u_in, self.u_out = _rounding_model(precision, device)
        low32 = self.low.to(torch.float32)
        self.p_res = (probes - low32).norm(dim=1).to(torch.float64) if self.u_in is None \
            else self.u_in * self.pnorm  # ||x - x_low||, the input rounding of each probe
        self.p_low_norm = low32.norm(dim=1).to(torch.float64)
        self.gamma = probes.shape[1] * 2.0 ** -24 / (1 - probes.shape[1] * 2.0 ** -24)  # fp32 accumulation
        n = probes.shape[0]
        self.k = k
        self.top_v = torch.full((n, k), -math.inf, dtype=torch.float64, device=device)
        self.top_i = torch.full((n, k), -1, dtype=torch.int64, device=device)
        self.tail_size = tail_size
        self.tail_v = torch.empty(0, dtype=torch.float64, device=device)
        self.tail_p = torch.empty(0, dtype=torch.int64, device=device)
        self.tail_d = torch.empty(0, dtype=torch.int64, device=device)
        self.rescored = 0
        self.widened = 0

    # ------------------------------------------------------------------ one chunk
    def add_chunk(self, g32: torch.Tensor, offset: int, hist: _Histogram | None) -> None:
        n = self.low.shape[0]
        c = g32.shape[0]
        g_low = g32.to(self.low.dtype)
        scores = self.low @ g_low.T  # (n, c), the low-precision filter
        if hist is not None:
            hist.add(scores)
        pad = (-c) % _BLOCK
        if pad:
            scores = torch.cat([scores, scores.new_full((n, pad), -math.inf)], dim=1)
        blocks = scores.view(n, -1, _BLOCK)
        bmax = blocks.amax(dim=2)  # (n, nb)
        # |low-precision accumulator - exact score| <= d_in[p] for every distractor of this chunk (Cauchy-Schwarz
        # on x.g - xl.gl = (x - xl).gl + x.(g - gl), plus fp32 accumulation); the output rounding is added per value
        gl32 = g_low.to(torch.float32)
        g_low_norm = float(gl32.norm(dim=1).max()) if c else 0.0
        g_res = float((g32 - gl32).norm(dim=1).max()) if c and self.u_in is None else \
            (self.u_in or 0.0) * (float(g32.norm(dim=1).max()) if c else 0.0)
        d_in = (self.p_res * g_low_norm + self.pnorm * g_res + self.gamma * self.p_low_norm * g_low_norm) * 1.01 \
            + 2.0 ** -40
        if self.k:
            self._update_topk(blocks, bmax, d_in, g32, offset)
        if self.tail_size:
            self._update_tail(blocks, bmax, d_in, g32, offset)

    def _lower(self, tau: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """Low-value threshold: a score whose exact value is > tau has a low value > this."""
        return tau - d_in - self.u_out * 1.01 * (tau.abs() + d_in)

    def _upper(self, low: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """Bound on the exact value of a score whose low value is <= `low`."""
        return low + d_in + self.u_out * 1.01 * low.abs() / (1 - self.u_out)

    def _update_topk(self, blocks, bmax, d_in, g32, offset) -> None:
        n, nb, bsz = blocks.shape
        thr = self._lower(self.top_v[:, -1], d_in)  # (n,): a score whose low value is <= this cannot enter
        cand = bmax.to(torch.float64) > thr.unsqueeze(1)
        # a row without k scores yet (the first chunk) would open everything: select its best few instead
        if bool(torch.isfinite(thr).all()) and int(cand.sum()) <= 4 * n * self.k:
            # the usual case after the first chunk: open just the blocks that may hold a new entry (all of them)
            r_i, b_i = cand.nonzero(as_tuple=True)
            vals = blocks[r_i, b_i].to(torch.float64)
            kr, ke = (vals > thr[r_i].unsqueeze(1)).nonzero(as_tuple=True)
            rows, cols = r_i[kr], b_i[kr] * bsz + ke  # rows ascending
            if rows.numel():
                exact = _exact_scores(self.p64, g32, rows, cols)
                self.rescored += int(rows.numel())
                self._merge_rows(rows, cols + offset, exact)
            return
        self._update_topk_widening(blocks, bmax, d_in, g32, offset)

    def _merge_rows(self, rows: torch.Tensor, ids: torch.Tensor, vals: torch.Tensor) -> None:
        """Merge ragged candidates (rows ascending) into the per-row top-k."""
        uniq, counts = torch.unique_consecutive(rows, return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.repeat_interleave(torch.arange(uniq.numel(), device=self.device), counts)
        pos = torch.arange(rows.numel(), device=self.device) - starts[slot]
        width = int(counts.max())
        cand_v = torch.full((uniq.numel(), width), -math.inf, dtype=torch.float64, device=self.device)
        cand_i = torch.full((uniq.numel(), width), -1, dtype=torch.int64, device=self.device)
        cand_v[slot, pos] = vals
        cand_i[slot, pos] = ids
        all_v = torch.cat([self.top_v[uniq], cand_v], dim=1)
        all_i = torch.cat([self.top_i[uniq], cand_i], dim=1)
        new_v, order = all_v.topk(self.k, dim=1)
        self.top_v[uniq] = new_v
        self.top_i[uniq] = all_i.gather(1, order)

    def _update_topk_widening(self, blocks, bmax, d_in, g32, offset) -> None:
        """First chunks: each row's m best low scores (m = k + 8) are rescored; rows whose certificate fails (an
        unopened score could still enter) are redone with m x 4."""
        n, nb, bsz = blocks.shape
        k = self.k
        todo = torch.arange(n, device=self.device)
        m = k + 8
        while todo.numel():
            full = todo.numel() == n
            blk = blocks if full else blocks[todo]
            bm = bmax if full else bmax[todo]
            t = todo.numel()
            kb = min(m, nb)
            _, bi = bm.topk(kb, dim=1)  # the top-m scores of a row lie in its m blocks of highest max
            elems = blk.gather(1, bi.unsqueeze(-1).expand(t, kb, bsz)).reshape(t, kb * bsz)
            mm = min(m, kb * bsz)
            cv, ci = elems.topk(mm, dim=1)
            cols = bi.gather(1, torch.div(ci, bsz, rounding_mode="floor")) * bsz + ci % bsz
            complete = kb == nb and mm == kb * bsz
            cv = cv.to(torch.float64)
            old_v, old_i = self.top_v[todo], self.top_i[todo]
            d = d_in[todo]
            take = cv > self._lower(old_v[:, -1], d).unsqueeze(1)  # others cannot beat the current k-th score
            tr, tc = take.nonzero(as_tuple=True)
            cand_v = torch.full_like(cv, -math.inf)
            cand_v[tr, tc] = _exact_scores(self.p64, g32, todo[tr], cols[tr, tc])
            self.rescored += int(tr.numel())
            all_v = torch.cat([old_v, cand_v], dim=1)
            all_i = torch.cat([old_i, cols + offset], dim=1)
            new_v, order = all_v.topk(k, dim=1)
            new_i = all_i.gather(1, order)
            if complete:
                ok = torch.ones(t, dtype=torch.bool, device=self.device)
            else:  # an unopened score is <= the m-th low score: bound its exact value
                ok = self._upper(cv[:, -1], d) <= new_v[:, -1]
            self.top_v[todo[ok]] = new_v[ok]
            self.top_i[todo[ok]] = new_i[ok]
            todo = todo[~ok]
            if todo.numel():
                self.widened += 1
                m *= 4

    def _merge_tail(self, v, p, d):
        v = torch.cat([self.tail_v, v])
        p = torch.cat([self.tail_p, p])
        d = torch.cat([self.tail_d, d])
        keep = min(self.tail_size, v.numel())
        v, order = v.topk(keep)
        return v, p[order], d[order]

    def _update_tail(self, blocks, bmax, d_in, g32, offset) -> None:
        n, nb, bsz = blocks.shape
        L = self.tail_size
        tau = self.tail_v[-1] if self.tail_v.numel() >= L else torch.tensor(-math.inf, dtype=torch.float64,
                                                                             device=self.device)
        thr = self._lower(tau, d_in)  # (n,) per probe: a score whose low value is <= this cannot enter the tail
        cap = 8 * L + (1 << 16)
        cand = bmax.to(torch.float64) > thr.unsqueeze(1)
        n_cand = int(cand.sum())
        if n_cand * bsz <= cap:  # the usual case after the first chunks: open every block that may hold a new entry
            r_i, b_i = cand.nonzero(as_tuple=True)
            vals = blocks[r_i, b_i].to(torch.float64)  # (n_cand, B)
            kr, ke = (vals > thr[r_i].unsqueeze(1)).nonzero(as_tuple=True)
            rows, cols = r_i[kr], b_i[kr] * bsz + ke
            exact = _exact_scores(self.p64, g32, rows, cols)
            self.rescored += int(rows.numel())
            self.tail_v, self.tail_p, self.tail_d = self._merge_tail(exact, rows, cols + offset)
            return
        flat_bm = bmax.reshape(-1)
        flat_blocks = blocks.reshape(-1, bsz)
        dmax = d_in.max()
        m = 4 * L
        while True:
            kb = min(m, flat_bm.numel())
            _, bi = flat_bm.topk(kb)
            vals = flat_blocks[bi].reshape(-1)
            mm = min(m, vals.numel())
            cv, ci = vals.topk(mm)
            blk = bi[torch.div(ci, bsz, rounding_mode="floor")]
            rows = torch.div(blk, nb, rounding_mode="floor")
            cols = (blk % nb) * bsz + ci % bsz
            cv = cv.to(torch.float64)
            take = cv > thr[rows]
            rows, cols = rows[take], cols[take]
            exact = _exact_scores(self.p64, g32, rows, cols)
            self.rescored += int(rows.numel())
            v, p, d = self._merge_tail(exact, rows, cols + offset)
            complete = kb == flat_bm.numel() and mm == vals.numel()
            tau_new = float(v[-1]) if v.numel() >= L else -math.inf
            if complete or float(self._upper(cv[-1], dmax)) <= tau_new:
                self.tail_v, self.tail_p, self.tail_d = v, p, d
                return
            self.widened += 1
            m *= 4


def search_distractors(probes: np.ndarray, distractors: np.ndarray, *, index: np.ndarray | None = None,
                       k: int = 10, tail_far: float = 1e-5, tail_size: int | None = None, precision: str = "auto",
                       device: str | torch.device = "cpu", chunk_size: int = 16384, histogram: bool = True,
                       num_unreachable: int = 0, progress: bool = True, desc: str = "distractors") -> DistractorSearch:
    """One chunked pass over the distractors collecting what identification and verification need.

    Args:
        probes: (N, D) features (L2-normalised by the caller for cosine scores).
        distractors: (M_all, D) features (an np.memmap is fine: only one chunk is read at a time).
        index: optional int array selecting (and ordering) the distractors to use; default all.
        k: per-probe top-k kept (the CMC's largest rank).
        tail_far / tail_size: the global impostor tail holds the floor(tail_far * #impostors) + 1 highest scores
            (exact TAR down to FAR = 1/#impostors, exact ROC up to tail_far), unless tail_size is given.
        precision: matmul precision of the filter ("auto", "bf16", "fp16", "fp32"); results are exact regardless.
        chunk_size: distractors scored per matmul (memory ~ N x chunk_size x 6 bytes for bf16).
        num_unreachable: distractors removed by cleaning; their pairs count as impostors that are never accepted.
    """
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    probes = np.asarray(probes)
    if probes.ndim != 2 or distractors.ndim != 2 or probes.shape[1] != distractors.shape[1]:
        raise ValueError(f"probe features {probes.shape} and distractor features {distractors.shape} must be (N, D) "
                         f"and (M, D) with the same D")
    m_total = distractors.shape[0] if index is None else len(index)
    n = probes.shape[0]
    num_impostors = n * (m_total + num_unreachable)
    if tail_size is None:
        tail_size = _allowed(tail_far, num_impostors) + 1
    tail_size = max(0, min(tail_size, n * m_total))
    t0 = time.perf_counter()
    restore = None
    if device.type == "cuda" and precision != "fp32":
        # split-K partial sums rounded to bf16/fp16 would void the error bound
        restore = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction, \
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    try:
        with torch.no_grad():
            p = torch.as_tensor(np.ascontiguousarray(probes, dtype=np.float32)).to(device)
            searcher = _Searcher(p, k, tail_size, precision, device)
            hist = _Histogram(device) if histogram else None
            starts = range(0, m_total, chunk_size)
            if progress:
                from tqdm import tqdm
                starts = tqdm(starts, desc=f"{desc} ({m_total:,} x {n:,}, {precision})", unit="chunk",
                              mininterval=1.0)
            for c0 in starts:
                c1 = min(c0 + chunk_size, m_total)
                rows = distractors[c0:c1] if index is None else distractors[np.asarray(index[c0:c1])]
                g = torch.as_tensor(np.ascontiguousarray(rows, dtype=np.float32)).to(device, non_blocking=True)
                searcher.add_chunk(g, c0, hist)
            hist_counts = hist.close() if hist is not None else None
    finally:
        if restore is not None:
            (torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
             torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction) = restore
    return DistractorSearch(
        topk_scores=searcher.top_v.cpu().numpy(), topk_index=searcher.top_i.cpu().numpy(),
        tail_scores=searcher.tail_v.cpu().numpy(), tail_probe=searcher.tail_p.cpu().numpy(),
        tail_distractor=searcher.tail_d.cpu().numpy(), hist_counts=hist_counts, num_probes=n,
        num_distractors=m_total, num_unreachable=num_unreachable, precision=precision,
        seconds=time.perf_counter() - t0, rescored=searcher.rescored, widened=searcher.widened)


def _allowed(far: float, num_impostors: int) -> int:
    """floor(far * num_impostors), forgiving the float error of a FAR written as 1/N or 1e-6 (relative 1e-9)."""
    return int(math.floor(float(far) * num_impostors * (1 + 1e-9)))


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
        allowed = _allowed(far, n_imp)  # impostors the threshold may accept
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
