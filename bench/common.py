"""Helpers shared by the bench/ scripts: the machine's own matmul peak, wall-clock timing, table printing, and a
package as it was at an earlier git revision (the baseline a ratio is measured against, in the same run)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = ["machine_line", "device_sync", "matmul_peak_gflops", "time_call", "print_table", "command_line",
           "package_at_revision"]

REPO = Path(__file__).resolve().parents[1]


def machine_line() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), python {platform.python_version()}")


def device_sync(device: str | torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on CPU). torch.cuda.synchronize() without an argument waits on
    the *current* GPU only: timing cuda:1 that way would time nothing."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], warmup: int = 1, repeat: int = 3, min_time: float = 0.0) -> float:
    """Median seconds per call after `warmup` calls (repeat at least `repeat` times and `min_time` seconds)."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def matmul_peak_gflops(dtype: torch.dtype, sizes: Sequence[int] = (2048, 4096), device: str = "cpu") -> float:
    """Best achieved GFLOP/s of square matmuls: the practical ceiling the model steps are compared against."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)

        def run():
            a @ b
            device_sync(device)
        for _ in range(2):
            run()
        fastest = min(time_call(run, warmup=0, repeat=1) for _ in range(4))
        best = max(best, 2 * n ** 3 / fastest / 1e9)
    return best


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for k, row in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        if k == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def package_at_revision(rev: str, package: str, into: Path) -> str:
    """Write the .py files of `package` (a top-level folder of this repository) as of git revision `rev` under
    `into` as `<package>_before`, and return that name: with `into` on sys.path the old code imports beside the new
    one (its relative imports keep working), so a bench can time both in one run."""
    name = f"{package}_before"
    files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", rev, package],
                           capture_output=True, text=True, check=True).stdout.split()
    for path in files:
        if not path.endswith(".py"):
            continue
        dest = Path(into) / path.replace(f"{package}/", f"{name}/", 1)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"], capture_output=True,
                                        check=True).stdout)
    return name
