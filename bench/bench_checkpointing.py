"""Activation checkpointing: peak memory and step time against the plain run, per backbone, in one run.

Each (backbone, variant) cell runs in its own subprocess, so its peak resident memory (ru_maxrss) is its own: the
model, its gradients and the optimizer state are allocated first (one warm-up step), the resident size is read,
and the peak above it during the timed forward + backward + SGD steps is the step's working memory - mostly the
activations kept for the backward pass, which checkpointing drops. Time is the median step.

    python bench/bench_checkpointing.py                                   # ResNet50_IR and vit_t, batch 16
    python bench/bench_checkpointing.py --backbones=ResNet18_IR --batch_size=8 --steps=2
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, print_table, time_call  # noqa: E402

__all__ = ["measure_cell", "main"]


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_cell(backbone: str, checkpointing: bool, batch: int, steps: int) -> dict:
    """Step seconds and working memory of one backbone with or without activation checkpointing (fp32, CPU)."""
    from Backbones.registry import build_backbone
    from Config import Config

    torch.manual_seed(0)
    cfg = Config(backbone=backbone, activation_checkpointing=checkpointing)
    model = build_backbone(cfg).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, *cfg.input_hw)

    def step():
        opt.zero_grad(set_to_none=False)  # gradients stay allocated: the baseline holds them
        model(x).square().mean().backward()
        opt.step()

    for p in model.parameters():  # gradients and momentum buffers allocated before the baseline, without a step
        p.grad = torch.zeros_like(p)
    opt.step()
    base = _rss_bytes()
    seconds = time_call(step, warmup=1, repeat=steps)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"seconds": seconds, "step_mib": max(0, peak - base) / 2 ** 20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default="ResNet50_IR,vit_t")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cell", help=argparse.SUPPRESS)  # internal: "backbone,0|1" measured in this process
    args = parser.parse_args(argv)
    if args.cell:
        name, flag = args.cell.rsplit(",", 1)
        print(json.dumps(measure_cell(name, flag == "1", args.batch_size, args.steps)))
        return 0
    print(machine_line())
    print(command_line())
    rows = []
    for name in [b for b in args.backbones.split(",") if b]:
        cells = {}
        for flag in (0, 1):
            out = subprocess.run([sys.executable, __file__, f"--cell={name},{flag}", f"--batch_size={args.batch_size}",
                                  f"--steps={args.steps}"], capture_output=True, text=True)
            if out.returncode:
                print(f"error: {name}: {out.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                return 1
            cells[flag] = json.loads(out.stdout.strip().splitlines()[-1])
        plain = cells[0]
        for flag, label in ((0, "plain"), (1, "checkpointed")):
            c = cells[flag]
            rows.append([name, label, f"{c['step_mib']:.0f}", f"{c['step_mib'] / max(plain['step_mib'], 1e-9):.2f}x",
                         f"{args.batch_size / c['seconds']:.1f}", f"{plain['seconds'] / c['seconds']:.2f}x"])
    print_table(["backbone", "variant", "step memory MiB", "vs plain", "img/s", "speed vs plain"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
