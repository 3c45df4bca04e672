"""MegaFace's expensive part: one chunked pass over the distractors keeping, exactly and in bounded memory, what the
metrics need - each probe's K highest distractor scores and the global tail of the highest impostor scores.

At 3,530 probes x 1e6 distractors the score matrix has 3.5e9 entries, but identification needs only (a) each
probe's K highest distractor scores (rank <= K iff score(p, g) > K-th best) and verification (b) the few thousand
highest impostor scores over all pairs (FAR 1e-6 of 3.5e9 is the 3,530th). Distractors are scored in chunks; per
chunk a block-max reduction (max of every B consecutive scores, one cheap pass) picks the few blocks that can hold a
new top entry, and only those are opened. The chunk matmul runs in low precision (bf16 on CPUs with AVX512-BF16/AMX
and on GPUs) purely as a filter: every candidate is rescored in float64 and a rigorous rounding-error bound decides
which candidates must be rescored and certifies that no unopened entry could enter the kept lists (if the
certificate fails, the selection widens and that chunk is redone). The results are therefore those of exact scores,
whatever the matmul precision; the tests compare them with a brute-force matrix. Coarse FARs (above the kept tail)
come from a histogram of all impostor scores at bf16 resolution (65,536 bins). The metrics are megaface_metrics.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from .megaface_chunk import Buffers, PatternHistogram, exact_scores, open_blocks
from .search_precision import LOW_DTYPES, resolve_precision, rounding_model

__all__ = ["DistractorSearch", "search_distractors", "allowed_impostors", "exact_scores"]

_BLOCK = 64  # scores per block of the block-max reduction (a tenth of the work of a top-k pass on a chunk)


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


class _Searcher:
    """State of one pass over the distractors: per-probe top-K and the global impostor tail."""

    def __init__(self, probes: torch.Tensor, k: int, tail_size: int, precision: str, device: torch.device):
        self.device = device
        self.precision = precision
        self.low = probes.to(LOW_DTYPES[precision])
        self.p64 = probes.to(torch.float64)
        self.pnorm = self.p64.norm(dim=1)
        self.u_in, self.u_out = rounding_model(precision, device)
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
        self._buffers = Buffers(device)  # the chunk's scores, its low-precision copy, work space, rescoring

    def _exact(self, g32: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return exact_scores(self.p64, g32, rows, cols, self._buffers)

    def _input_error(self, g32: torch.Tensor, g_low: torch.Tensor) -> torch.Tensor:
        """d_in[p] >= |low-precision accumulator - exact score| for probe p and every distractor of this chunk
        (Cauchy-Schwarz on x.g - xl.gl = (x - xl).gl + x.(g - gl), plus fp32 accumulation); the output rounding is
        added per value. The residual g - gl goes into one reused float32 buffer (no fresh pages per chunk)."""
        c, dim = g32.shape
        if not c:
            return torch.full_like(self.pnorm, 2.0 ** -40)
        work = self._buffers.get("work", (c, dim), torch.float32)
        work.copy_(g_low)  # norms of bf16 rows made a float32 copy of their own (fresh pages) each time
        g_low_norm = float(torch.linalg.vector_norm(work, dim=1).max())
        if self.u_in is None:
            work.sub_(g32)  # g_low - g32: the residual, exact in float32
            g_res = float(torch.linalg.vector_norm(work, dim=1).max())
        else:
            g_res = self.u_in * float(torch.linalg.vector_norm(g32, dim=1).max())
        return (self.p_res * g_low_norm + self.pnorm * g_res + self.gamma * self.p_low_norm * g_low_norm) * 1.01 \
            + 2.0 ** -40

    # ------------------------------------------------------------------ one chunk
    def add_chunk(self, g32: torch.Tensor, offset: int, hist: PatternHistogram | None) -> None:
        n = self.low.shape[0]
        c = g32.shape[0]
        nb = -(-c // _BLOCK)
        g_low = g32 if g32.dtype == self.low.dtype else \
            self._buffers.get("low distractors", g32.shape, self.low.dtype).copy_(g32)
        # distractor-major scores (c, n): a block's 64 scores of one probe are 64 rows of one column, so the block
        # max is an element-wise max of whole rows (measured 2x faster than a max within rows) and the padding of a
        # last partial block is rows of -inf after the chunk's own, with no copy
        scores = self._buffers.get("scores", (nb * _BLOCK, n), self.low.dtype)
        torch.matmul(g_low, self.low.T, out=scores[:c])  # the low-precision filter
        if hist is not None:
            hist.add(scores[:c])
        scores[c:].fill_(-math.inf)
        by_block = scores.view(nb, _BLOCK, n)
        blocks = by_block.permute(2, 0, 1)  # (n, nb, B): probe p's scores in block b are blocks[p, b]
        bmax = by_block.amax(dim=1).T.contiguous()  # (n, nb)
        d_in = self._input_error(g32, g_low)
        bmax64 = bmax.to(torch.float64)
        if self.k:
            self._update_topk(blocks, bmax, bmax64, d_in, g32, offset)
        if self.tail_size:
            self._update_tail(blocks, bmax, bmax64, d_in, g32, offset)

    def _lower(self, tau: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """Low-value threshold: a score whose exact value is > tau has a low value > this."""
        return tau - d_in - self.u_out * 1.01 * (tau.abs() + d_in)

    def _upper(self, low: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """Bound on the exact value of a score whose low value is <= `low`."""
        return low + d_in + self.u_out * 1.01 * low.abs() / (1 - self.u_out)

    def _update_topk(self, blocks, bmax, bmax64, d_in, g32, offset) -> None:
        n, nb, bsz = blocks.shape
        tau = self.top_v[:, -1]
        if nb >= self.k and not bool(torch.isfinite(tau).all()):
            # a row without k scores yet (the first chunk): its k highest block maxima are the low values of k
            # distinct distractors, so its final k-th best is at least the k-th of them less its rounding bound
            kth = bmax.topk(self.k, dim=1, sorted=False).values.amin(dim=1).to(torch.float64)
            tau = torch.maximum(tau, self._floor_of(kth, d_in))
        thr = self._lower(tau, d_in)  # (n,): a score whose low value is <= this cannot enter
        cand = bmax64 > thr.unsqueeze(1)
        # a row still without a finite threshold (fewer than k blocks) would open everything: select its best few
        if bool(torch.isfinite(thr).all()) and int(cand.sum()) <= 4 * n * self.k:
            # the usual case after the first chunk: open just the blocks that may hold a new entry (all of them)
            rows, cols = open_blocks(blocks, *cand.nonzero(as_tuple=True), thr)  # rows ascending
            if rows.numel():
                exact = self._exact(g32, rows, cols)
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
            cand_v[tr, tc] = self._exact(g32, todo[tr], cols[tr, tc])
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

    def _floor_of(self, low: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """A value at or below the exact score of every pair whose low value is >= `low` (the mirror of _upper). A
        score equal to it still has a low value above _lower of it: the bounds' 1.01 and 2^-40 slack is strict."""
        return -self._upper(-low, d_in)

    def _provisional_tau(self, bmax: torch.Tensor, d_in: torch.Tensor) -> torch.Tensor:
        """While the tail is not full yet (the first chunk): a value that no score of the final tail is below.

        The chunk's L highest block maxima are the low values of L distinct pairs, so at least L exact scores reach
        the floor of the L-th (_floor_of) and the final L-th best cannot be below it. Without it the first chunk's
        tail was a top-k over 4L blocks of 64 scores (263 ms of the chunk's 460-670 ms at 1e6). -inf when the
        chunk has fewer than L blocks."""
        L = self.tail_size
        if bmax.numel() < L:
            return torch.tensor(-math.inf, dtype=torch.float64, device=self.device)
        return self._floor_of(bmax.reshape(-1).topk(L, sorted=False).values.min().to(torch.float64), d_in.max())

    def _update_tail(self, blocks, bmax, bmax64, d_in, g32, offset) -> None:
        n, nb, bsz = blocks.shape
        L = self.tail_size
        tau = self.tail_v[-1] if self.tail_v.numel() >= L else self._provisional_tau(bmax, d_in)
        thr = self._lower(tau, d_in)  # (n,) per probe: a score whose low value is <= this cannot enter the tail
        cand = bmax64 > thr.unsqueeze(1)
        n_cand = int(cand.sum())
        # the usual case once the tail is full: open every block that may hold a new entry. Counted in blocks, not
        # entries: while the tail's threshold still rises (the first chunks) each candidate block holds about one
        # qualifying entry, and opening them costs far less than the widening's top-k over every block of the chunk
        opened = open_blocks(blocks, *cand.nonzero(as_tuple=True), thr, limit=8 * L + (1 << 16)) \
            if n_cand <= 8 * L + 1024 else None
        if opened is not None:
            rows, cols = opened
            exact = self._exact(g32, rows, cols)
            self.rescored += int(rows.numel())
            self.tail_v, self.tail_p, self.tail_d = self._merge_tail(exact, rows, cols + offset)
            return
        flat_bm = bmax.reshape(-1)
        dmax = d_in.max()
        m = 4 * L
        while True:
            kb = min(m, flat_bm.numel())
            _, bi = flat_bm.topk(kb)
            vals = blocks[torch.div(bi, nb, rounding_mode="floor"), bi % nb].reshape(-1)
            mm = min(m, vals.numel())
            cv, ci = vals.topk(mm)
            blk = bi[torch.div(ci, bsz, rounding_mode="floor")]
            rows = torch.div(blk, nb, rounding_mode="floor")
            cols = (blk % nb) * bsz + ci % bsz
            cv = cv.to(torch.float64)
            take = cv > thr[rows]
            rows, cols = rows[take], cols[take]
            exact = self._exact(g32, rows, cols)
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
        chunk_size: distractors scored per matmul (memory: N x chunk_size x 2 bytes of bf16 scores, plus the
            chunk's features in bf16 and a float32 work copy, chunk_size x D x 6 bytes).
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
        tail_size = allowed_impostors(tail_far, num_impostors) + 1
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
            hist = PatternHistogram(device) if histogram else None
            starts = range(0, m_total, chunk_size)
            if progress:
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


def allowed_impostors(far: float, num_impostors: int) -> int:
    """floor(far * num_impostors), forgiving the float error of a FAR written as 1/N or 1e-6 (relative 1e-9)."""
    return int(math.floor(float(far) * num_impostors * (1 + 1e-9)))
