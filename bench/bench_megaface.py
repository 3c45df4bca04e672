"""MegaFace metric time and peak memory vs distractor count, from random features (3,530 probes of 80 identities,
512-d, as FaceScrub at MegaFace scale).

    python bench/bench_megaface.py                                  # 1e3 .. 1e6 distractors
    python bench/bench_megaface.py --sizes=1000,10000 --fp32_max=10000 --naive_max=10000   # quick

Columns per size: the default search (bf16 filter + exact float64 rescoring); the same search in the code of git
revision --baseline (imported beside today's, timed in the same run, rounds interleaved: the ratio is the target's
measure) and whether every result is identical (CMC, TAR at 1e-6 .. 1e-1, the ROC, histogram part included); the
same search with an fp32 filter (up to --fp32_max), and a naive baseline (up to --naive_max) that holds the full
fp32 probe x distractor matrix and runs torch.topk on it. Each row reports seconds (identification + verification,
histogram included), peak resident memory above the features (RSS polled every 10 ms), rank-1 and TAR@FAR=1e-6, and
whether the bf16-filter results equal the fp32-filter ones (the exact ones: the histogram is of each filter's own
rounding). "raw bf16 rank-1" is what rank-1 would be if bf16 scores were used as they are (no
rescoring): the rounding error this design avoids.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import command_line, machine_line, package_at_revision, print_table  # noqa: E402
from Utils.evaluation.megaface_metrics import DEFAULT_FARS, evaluate_megaface  # noqa: E402


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Highest resident set size seen while the block runs (a polling thread; /proc on Linux)."""

    def __enter__(self):
        self.base = self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())

    @property
    def extra_gb(self) -> float:
        return (self.peak - self.base) / 2 ** 30


def make_probes(n: int, ids: int, dim: int, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % ids
    centres = torch.nn.functional.normalize(torch.randn(ids, dim, generator=g), dim=1)
    x = centres[labels] + spread * torch.randn(n, dim, generator=g) / dim ** 0.5
    return torch.nn.functional.normalize(x, dim=1).numpy(), labels.numpy()


def make_distractors(m: int, dim: int, seed: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed + 1)
    out = np.empty((m, dim), np.float32)
    for s in range(0, m, 1 << 16):  # in pieces: no float64 or double-size temporaries
        e = min(m, s + (1 << 16))
        out[s:e] = torch.nn.functional.normalize(torch.randn(e - s, dim, generator=g), dim=1).numpy()
    return out


def naive(p: np.ndarray, labels: np.ndarray, g: np.ndarray, k: int, tail: int) -> dict:
    """The baseline: the whole fp32 score matrix in memory, torch.topk per row and over all entries."""
    pt, gt = torch.from_numpy(p), torch.from_numpy(g)
    scores = pt @ gt.T
    top = scores.topk(k, dim=1).values
    thr = scores.reshape(-1).topk(tail).values[-1]
    genuine = pt @ pt.T
    same = torch.from_numpy(labels[:, None] == labels[None, :]) & ~torch.eye(len(p), dtype=torch.bool)
    rank1 = float((genuine > top[:, :1])[same].float().mean())
    tar = float((genuine[torch.triu(same, 1)] > thr).float().mean())
    # rank-1 from bf16 scores taken as they are (ties count against the probe, as in Utils/megaface)
    pb, gb = pt.bfloat16(), gt.bfloat16()
    top_b = (pb @ gb.T).amax(dim=1, keepdim=True)
    raw_bf16 = float(((pb @ pb.T) > top_b)[same].float().mean())
    return {"rank1": rank1, "tar": tar, "raw_bf16_rank1": raw_bf16}


def run(p, labels, g, precision, args, evaluate=evaluate_megaface) -> tuple[dict, float, float]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        res = evaluate(p, labels, g, max_rank=args.max_rank, fars=DEFAULT_FARS, precision=precision,
                       chunk_size=args.chunk_size, tail_far=args.tail_far, histogram=not args.no_histogram,
                       progress=False)
        seconds = time.perf_counter() - t0
    return res, seconds, mem.extra_gb


def same_results(a: dict, b: dict) -> bool:
    return a["identification"] == b["identification"] and a["verification"] == b["verification"]


def baseline_evaluate(rev: str, into: str):
    """evaluate_megaface as of git revision `rev`."""
    sys.path.insert(0, into)
    name = package_at_revision(rev, "Utils", Path(into))
    return importlib.import_module(f"{name}.evaluation.megaface_metrics").evaluate_megaface


def timed_pair(p, labels, g, args, before) -> tuple[dict, float, float, float | None, bool | None]:
    """The default search and (if `before`) the baseline's, interleaved over --rounds; the fastest round of each."""
    new_s, old_s, old_res = [], [], None
    for _ in range(args.rounds):
        if before is not None:
            old_res, sec, _ = run(p, labels, g, "bf16", args, before)
            old_s.append(sec)
        res, sec, mem = run(p, labels, g, "bf16", args)
        new_s.append(sec)
    print(f"# {g.shape[0]:,} distractors, seconds per round: today " + ", ".join(f"{t:.2f}" for t in new_s)
          + ("; before " + ", ".join(f"{t:.2f}" for t in old_s) if old_s else ""), flush=True)
    same = same_results(res, old_res) if old_res is not None else None
    return res, min(new_s), mem, (min(old_s) if old_s else None), same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="distractor counts")
    ap.add_argument("--probes", type=int, default=3530)
    ap.add_argument("--identities", type=int, default=80)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--spread", type=float, default=1.7, help="probe noise around its identity centre")
    ap.add_argument("--max_rank", type=int, default=10)
    ap.add_argument("--chunk_size", type=int, default=16384)
    ap.add_argument("--tail_far", type=float, default=1e-5)
    ap.add_argument("--no_histogram", action="store_true")
    ap.add_argument("--fp32_max", type=int, default=100000, help="largest size also run with the fp32 filter")
    ap.add_argument("--naive_max", type=int, default=10000, help="largest size also run with the full matrix")
    ap.add_argument("--baseline", default="bd6d285", help="git revision whose search is timed beside today's "
                    "(bd6d285: the code before the reused score buffers; '' to skip)")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds of today's and the baseline's search")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    print(f"# {machine_line()}")
    print(f"# {command_line()}")
    p, labels = make_probes(args.probes, args.identities, args.dim, args.spread, args.seed)
    g_all = make_distractors(max(sizes), args.dim, args.seed)
    old_code = tempfile.TemporaryDirectory(prefix="bench_megaface_")  # removed at exit
    before = baseline_evaluate(args.baseline, old_code.name) if args.baseline else None
    rows = []
    for m in sizes:
        g = g_all[:m]
        res, sec, mem, old_sec, old_same = timed_pair(p, labels, g, args, before)
        tar = res["verification"]["tar_at_far"][0]["tar"]
        row = [f"{m:,}", f"{sec:.2f}", f"{mem:.2f}", f"{100 * res['identification']['rank1']:.3f}",
               f"{100 * tar:.3f}"]
        row += [f"{old_sec:.2f}", f"{old_sec / sec:.2f}x", "yes" if old_same else "NO"] if before else ["-"] * 3
        if m <= args.fp32_max:
            res32, sec32, mem32 = run(p, labels, g, "fp32", args)
            # the exact results; the histogram's coarse part is of the filter's own rounding, so it may differ
            same = (res32["identification"]["cmc"] == res["identification"]["cmc"]
                    and [r for r in res32["verification"]["tar_at_far"] if r["exact"]]
                    == [r for r in res["verification"]["tar_at_far"] if r["exact"]])
            row += [f"{sec32:.2f}", f"{sec32 / sec:.2f}x", "yes" if same else "NO"]
        else:
            row += ["-", "-", "-"]
        if m <= args.naive_max:
            with PeakRSS() as nmem:
                t0 = time.perf_counter()
                nv = naive(p, labels, g, args.max_rank, int(1e-6 * len(p) * m) + 1)
                nsec = time.perf_counter() - t0
            row += [f"{nsec:.2f}", f"{nmem.extra_gb:.2f}", f"{nsec / sec:.2f}x", f"{100 * nv['raw_bf16_rank1']:.3f}"]
        else:
            row += ["-", "-", "-", "-"]
        rows.append(row)
        print(f"# {m:,} distractors: bf16 search {res['search_seconds']:.2f}s + metrics {res['metric_seconds']:.2f}s, "
              f"{res['rescored_pairs']:,} pairs rescored, {res['widened']} widenings", flush=True)
    print_table(["distractors", "bf16 s", "bf16 peak GB", "rank-1 %", "TAR@1e-6 %", "before s", "before/today",
                 "same as before", "fp32 s", "fp32/bf16",
                 "same as fp32", "naive s", "naive peak GB", "naive/bf16", "raw bf16 rank-1 %"], rows)


if __name__ == "__main__":
    main()
