"""Training throughput (images/s) per backbone: fp32 eager against bf16 autocast, the real training step.

Each cell times `Utils.trainer.train_step` (forward, margin head with `--classes` centres, backward, SGD step) on
pre-generated batches, so the data loader is not measured. Ratios are against fp32 measured in the same run.

    python bench/bench_train.py                                   # MobileFaceNet, ResNet50_IR, SEResNet50_IR
    python bench/bench_train.py --backbones=MobileFaceNet --steps=3 --batch_size=32
    python bench/bench_train.py --precisions=fp32,bf16 --channels_last   # add channels_last to every cell
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Config import Config, apply_overrides, validate  # noqa: E402

__all__ = ["RandomFaces", "measure", "main"]


class RandomFaces(torch.utils.data.Dataset):
    """Placeholder-free stand-in for a training set: only its length and class count matter to the builder."""

    def __init__(self, n: int, classes: int, hw: tuple[int, int]):
        self.n, self.num_classes, self.hw = n, classes, hw

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.zeros(3, *self.hw), i % self.num_classes, 0


def measure(backbone: str, precision: str, batch: int, classes: int, steps: int, warmup: int, input_hw,
            channels_last: bool) -> float:
    """Images/s of the training step after `warmup` untimed steps."""
    import Train
    from Utils.train_state import TrainState
    from Utils.trainer import train_step

    cfg = validate(apply_overrides(Config(), dict(
        backbone=backbone, batch_size=batch, num_workers=0, device="cpu", use_amp=precision == "bf16",
        amp_dtype="bfloat16", channels_last=channels_last, val_sets=[], para_adj_mode=True,
        input_size=list(input_hw), warmup_epochs=0.0), source="bench"))
    comp = Train.build_components(cfg, dataset=RandomFaces(batch * (steps + warmup), classes, input_hw))
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(batch, 3, *input_hw, generator=g),
                torch.randint(0, classes, (batch,), generator=g), torch.zeros(batch, dtype=torch.long))
               for _ in range(2)]
    state = TrainState()
    for i in range(warmup):
        train_step(comp, state, [batches[i % 2]])
    t0 = time.perf_counter()
    for i in range(steps):
        train_step(comp, state, [batches[i % 2]])
    return steps * batch / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="MobileFaceNet,ResNet50_IR,SEResNet50_IR")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--classes", type=int, default=10575, help="class centres in the head (CASIA: 10,575)")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--input_size", default="112,112")
    p.add_argument("--channels_last", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hw = tuple(int(v) for v in args.input_size.split(","))
    precisions = args.precisions.split(",")
    command = "python bench/bench_train.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    print(f"# {command}")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.classes} classes, input {hw[0]}x{hw[1]}, {args.steps} timed steps after {args.warmup}"
          + (", channels_last" if args.channels_last else ""))
    header = f"| {'backbone':<16} | " + " | ".join(f"{p_ + ' img/s':>12}" for p_ in precisions)
    header += " | " + " | ".join(f"{p_ + '/fp32':>10}" for p_ in precisions if p_ != "fp32") + " |"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    for name in args.backbones.split(","):
        ips = {pr: measure(name, pr, args.batch_size, args.classes, args.steps, args.warmup, hw,
                           args.channels_last) for pr in precisions}
        cells = " | ".join(f"{ips[pr]:>12.1f}" for pr in precisions)
        ratios = " | ".join(f"{ips[pr] / ips['fp32']:>9.2f}x" for pr in precisions if pr != "fp32"
                            and "fp32" in ips)
        print(f"| {name:<16} | {cells} | {ratios} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
