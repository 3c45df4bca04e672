"""What the MegaFace search (megaface_search.py) does with one chunk's low-precision scores besides selecting from
them: count them into the histogram of bf16 bit patterns (the coarse ROC), open the candidate blocks, and rescore
the chosen pairs exactly in float64.

Every large temporary here is a buffer reused across chunks or small enough to come from the heap's freed memory:
on CPU, a fresh 100+ MB tensor per chunk cost more in page faults (the kernel zeroing each new page) than the
work done on it.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

__all__ = ["PatternHistogram", "open_blocks", "exact_scores"]

_RESCORE_BATCH = 512  # pairs rescored in float64 at once (2 MB temporaries; 4096 measured 2.3x slower: fresh pages)
_OPEN_PIECE = 16384  # candidate blocks opened at once (their values in float64: 8 MB)


class PatternHistogram:
    """Counts of scores per bf16 bit pattern (65,536 bins). On CPU the single-threaded bincount runs in a worker
    thread while the search goes on with the chunk (block max, rescoring), where one core would otherwise idle.

    The bit patterns go into one int32 buffer reused for every chunk, filled by the caller's thread (a parallel copy)
    so that the score buffer is free again at once: a fresh 4-bytes-per-score tensor per chunk spent more time in
    page faults (the kernel zeroing each new page) than the bincount itself."""

    def __init__(self, device: torch.device):
        self.counts = torch.zeros(65536, dtype=torch.int64, device=device)
        self._pool = ThreadPoolExecutor(max_workers=1) if device.type == "cpu" else None
        self._pending: Future | None = None
        self._bits = torch.empty(0, dtype=torch.int32, device=device)

    def add(self, scores: torch.Tensor) -> None:
        self.wait()  # the previous chunk's bincount reads the buffer about to be refilled
        if scores.dtype != torch.bfloat16:
            scores = scores.to(torch.bfloat16)
        if self._bits.numel() < scores.numel():
            self._bits = torch.empty(scores.numel(), dtype=torch.int32, device=scores.device)
        bits = self._bits[:scores.numel()]
        bits.copy_(scores.reshape(-1).view(torch.uint16))  # zero-extended: the pattern, 0 .. 65535
        if self._pool is None:
            self.counts += torch.bincount(bits, minlength=65536)
        else:
            self._pending = self._pool.submit(torch.bincount, bits, minlength=65536)

    def wait(self) -> None:
        if self._pending is not None:
            self.counts += self._pending.result()
            self._pending = None

    def close(self) -> np.ndarray:
        self.wait()
        if self._pool is not None:
            self._pool.shutdown()
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


def exact_scores(p64: torch.Tensor, g32: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
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
