"""What the MegaFace search (megaface_search.py) does with one chunk's low-precision scores besides selecting from
them: count them into the histogram of bf16 bit patterns (the coarse ROC), open the candidate blocks, and rescore
the chosen pairs exactly in float64.

Every large temporary here is a buffer reused across chunks or small enough to come from the heap's freed memory:
on CPU, a fresh 100+ MB tensor per chunk cost more in page faults (the kernel zeroing each new page) than the
work done on it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["Buffers", "PatternHistogram", "open_blocks", "exact_scores"]

_RESCORE_BATCH = 512  # pairs rescored in float64 at once (2 MB buffers, cache-sized: 256 and 1024 measured slower)
_HIST_PIECE = 1 << 20  # patterns counted at once (a 4 MB int32 buffer; 4x smaller or larger measured no faster)
_OPEN_PIECE = 16384  # candidate blocks opened at once (their values in float64: 8 MB)


class Buffers:
    """Named tensors reused for every chunk and call, grown when a request needs more: on CPU a fresh 100+ MB tensor
    per chunk cost more in page faults (the kernel zeroing every new page) than the work done on it, and fresh 2 MB
    rescoring temporaries per batch made the rescoring 2-5x slower for the same values."""

    def __init__(self, device: torch.device):
        self.device = device
        self._store: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        numel = math.prod(shape)
        buf = self._store.get(name)
        if buf is None or buf.numel() < numel or buf.dtype != dtype:
            buf = self._store[name] = torch.empty(numel, dtype=dtype, device=self.device)
        return buf[:numel].view(shape)


class PatternHistogram:
    """Counts of scores per bf16 bit pattern (65,536 bins).

    The patterns are copied a piece at a time into one small int32 buffer (the zero-extended pattern) and counted
    there: 4 MB in cache instead of 4 bytes a score. The count runs in the caller's thread, between the chunk's
    parallel ops. Measured at 1e6 distractors: a bincount in a worker thread (overlapping them, or splitting the
    chunk with the caller) made the search 0.5-1 s slower, since the worker's own OpenMP team fought the caller's
    for the two cores (the rescoring beside it ran 2.5x slower); workers made single-threaded were no faster than
    this, the count being bound by memory more than by a core."""

    def __init__(self, device: torch.device):
        self.counts = torch.zeros(65536, dtype=torch.int64, device=device)
        self._piece = _HIST_PIECE if device.type == "cpu" else None  # GPUs count a chunk in one pass
        self._buffers = Buffers(device)

    def add(self, scores: torch.Tensor) -> None:
        if not scores.numel():  # no probes: nothing to count
            return
        if scores.dtype != torch.bfloat16:
            scores = scores.to(torch.bfloat16)
        patterns = scores.reshape(-1).view(torch.uint16)
        piece = min(self._piece or patterns.numel(), patterns.numel())
        for s in range(0, patterns.numel(), piece):
            part = patterns[s:s + piece]
            bits = self._buffers.get("patterns", (part.numel(),), torch.int32)
            bits.copy_(part)  # zero-extended: the pattern, 0 .. 65535
            self.counts += torch.bincount(bits, minlength=65536)

    def close(self) -> np.ndarray:
        return self.counts.cpu().numpy()


def open_blocks(blocks: torch.Tensor, r_i: torch.Tensor, b_i: torch.Tensor, thr: torch.Tensor,
                limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(rows, cols) of the entries of blocks (r_i, b_i) whose low value is > thr[row], rows ascending when r_i is.

    Opened a piece at a time (bounded memory whatever the number of blocks); None as soon as more than `limit`
    entries qualify (the caller then selects by widening instead of rescoring them all)."""
    bsz = blocks.shape[2]
    rows, cols, found = [], [], 0
    for s in range(0, r_i.numel(), _OPEN_PIECE):
        r, b = r_i[s:s + _OPEN_PIECE], b_i[s:s + _OPEN_PIECE]
        kr, ke = (blocks[r, b].to(torch.float64) > thr[r].unsqueeze(1)).nonzero(as_tuple=True)
        found += kr.numel()
        if limit is not None and found > limit:
            return None
        rows.append(r[kr])
        cols.append(b[kr] * bsz + ke)
    if not rows:
        return r_i[:0], b_i[:0]
    return torch.cat(rows), torch.cat(cols)


def exact_scores(p64: torch.Tensor, g32: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 buffers: Buffers | None = None) -> torch.Tensor:
    """float64 dot products of the pairs (probe rows[i], distractor cols[i]).

    The products of float32 values are exact in float64, and every pair is summed by the same row reduction, so
    bitwise-equal vectors give bitwise-equal scores: genuine scores (`identity_scores`) use the same reduction, which
    keeps exact ties exact (a collapsed model's features must tie, not win by a rounding accident).
    """
    out = torch.empty(rows.numel(), dtype=torch.float64, device=p64.device)
    if not rows.numel():
        return out
    buffers = buffers or Buffers(p64.device)
    a = buffers.get("rescore probes", (_RESCORE_BATCH, p64.shape[1]), torch.float64)
    b = buffers.get("rescore distractors", (_RESCORE_BATCH, g32.shape[1]), g32.dtype)
    prod = buffers.get("rescore products", (_RESCORE_BATCH, p64.shape[1]), torch.float64)
    for s in range(0, rows.numel(), _RESCORE_BATCH):
        e = min(s + _RESCORE_BATCH, rows.numel())
        m = e - s
        torch.index_select(p64, 0, rows[s:e], out=a[:m])
        torch.index_select(g32, 0, cols[s:e], out=b[:m])
        torch.mul(a[:m], b[:m], out=prod[:m])  # float32 promoted to float64 exactly, as .to(float64) did
        torch.sum(prod[:m], dim=1, out=out[s:e])
    return out
