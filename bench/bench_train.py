"""Training-step throughput per backbone and fast path, against fp32 eager measured in the same run.

Each cell times the real `Utils.training.loop.train_step` (forward, margin head over `--classes` centres, backward, SGD
step) on pre-generated batches, so the data loader is not measured (bench_loader.py measures it). Variants:

    fp32         eager float32, NCHW (the baseline column)
    bf16         torch.autocast bfloat16 (margin math stays float32 in the head)
    cl           channels_last (NHWC) memory format
    bf16+cl      both
    compile      torch.compile of the backbone (warm-up time reported apart); also bf16+cl+compile
    fp16         CUDA only: float16 autocast with GradScaler (also fp16+cl, fp16+cl+compile)

GFLOP/s counts the step's forward + backward FLOPs (torch.utils.flop_counter) and compares them with this
machine's own matmul peak in float32 and bfloat16, measured at the start of the run.

    python bench/bench_train.py                                   # MobileFaceNet, ResNet50_IR, SEResNet50_IR
    python bench/bench_train.py --backbones=MobileFaceNet --variants=fp32,bf16+cl --steps=3
    python bench/bench_train.py --variants=fp32,bf16,cl,bf16+cl,compile,bf16+cl+compile --compile_backbones=MobileFaceNet
    python bench/bench_train.py --device=cuda --batch_size=128 --steps=20 --warmup=5 \
        --variants=fp32,fp16,fp16+cl,bf16+cl,bf16+cl+compile             # a GPU: a few minutes
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from Config import Config, apply_overrides, validate  # noqa: E402
from bench.common import command_line, device_sync, machine_line, matmul_peak_gflops, print_table  # noqa: E402

__all__ = ["RandomFaces", "measure", "time_steps", "main"]

VARIANTS = ["fp32", "bf16", "cl", "bf16+cl", "compile", "bf16+cl+compile",
            "fp16", "fp16+cl", "fp16+cl+compile"]  # fp16 (with GradScaler) on CUDA only


class RandomFaces(torch.utils.data.Dataset):
    """Stands in for a training set when building the components: only its length and class count matter."""

    def __init__(self, n: int, classes: int, hw: tuple[int, int]):
        self.n, self.num_classes, self.hw = n, classes, hw

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.zeros(3, *self.hw), i % self.num_classes, 0


def step_flops(backbone: str, batch: int, classes: int, input_hw) -> float:
    """Forward + backward FLOPs of one training step (backbone and head), counted once in float32."""
    from torch.utils.flop_counter import FlopCounterMode

    from Backbones import get_backbone
    from Heads import get_head

    model = get_backbone(backbone, input_size=input_hw).train()
    head = get_head("ArcFace", model.embedding_size, classes).train()
    x, y = torch.randn(batch, 3, *input_hw), torch.randint(0, classes, (batch,))
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(head(model(x), y).logits, y).backward()
    return float(counter.get_total_flops())


def measure(backbone: str, variant: str, batch: int, classes: int, steps: int, warmup: int,
            input_hw, device: str = "cpu") -> tuple[float, float]:
    """(images/s after `warmup` untimed steps, seconds of the first step: compile warm-up)."""
    from Utils.training import build_components
    from Utils.training.loop import train_step

    parts = set(variant.split("+"))
    cfg = validate(apply_overrides(Config(), dict(
        backbone=backbone, batch_size=batch, num_workers=0, device=device, use_amp=bool(parts & {"bf16", "fp16"}),
        amp_dtype="float16" if "fp16" in parts else "bfloat16", channels_last="cl" in parts, compile="compile" in parts, val_sets=[],
        write_nothing=True, input_size=list(input_hw), warmup_epochs=0.0), source="bench"))
    comp = build_components(cfg, dataset=RandomFaces(batch * (steps + warmup), classes, input_hw))
    g = torch.Generator().manual_seed(0)
    # the timed batches live on the device already: a host copy per step would be timed with the model
    batches = [(torch.randn(batch, 3, *input_hw, generator=g).to(comp.ctx.device),
                torch.randint(0, classes, (batch,), generator=g).to(comp.ctx.device)) for _ in range(2)]
    return time_steps(lambda b: train_step(comp, [b]), batches, comp.ctx.device, steps, warmup, batch)


def time_steps(step, batches: list, device: torch.device, steps: int, warmup: int,
               batch: int) -> tuple[float, float]:
    """(images/s over `steps` timed calls of step(batch) after `warmup` untimed ones, seconds of the first call),
    each interval closed by a wait on `device` itself."""
    t0 = time.perf_counter()
    step(batches[0])
    device_sync(device)
    first = time.perf_counter() - t0
    for i in range(warmup - 1):
        step(batches[i % len(batches)])
    device_sync(device)
    t0 = time.perf_counter()
    for i in range(steps):
        step(batches[i % len(batches)])
    device_sync(device)
    return steps * batch / (time.perf_counter() - t0), first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="MobileFaceNet,ResNet50_IR,SEResNet50_IR")
    p.add_argument("--variants", default="fp32,bf16,cl,bf16+cl,bf16+cl+compile",
                   help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--compile_backbones", default="MobileFaceNet,ResNet50_IR",
                   help="backbones for which compile variants run (compiling takes minutes on 2 cores)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--classes", type=int, default=10575, help="class centres in the head (CASIA: 10,575)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--input_size", default="112,112")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    hw = tuple(int(v) for v in args.input_size.split(","))
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]}; choose from {', '.join(VARIANTS)}")
    print(f"# {command_line()}")
    print(f"# {machine_line()}")
    if any("fp16" in v for v in variants) and not args.device.startswith("cuda"):
        p.error("fp16 variants need --device=cuda (float16 autocast with GradScaler)")
    peak = {"fp32": matmul_peak_gflops(torch.float32, device=args.device),
            "bf16": matmul_peak_gflops(torch.bfloat16, device=args.device)}
    if args.device.startswith("cuda"):
        peak["fp16"] = matmul_peak_gflops(torch.float16, device=args.device)
    ceilings = ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items())
    print(f"# device {args.device}; matmul peak: {ceilings}; batch {args.batch_size}, {args.classes} classes, "
          f"input {hw[0]}x{hw[1]}, {args.steps} timed steps")
    rows = []
    for name in args.backbones.split(","):
        flops = step_flops(name, args.batch_size, args.classes, hw)
        base = None
        for variant in variants:
            if "compile" in variant and name not in args.compile_backbones.split(","):
                continue
            ips, first = measure(name, variant, args.batch_size, args.classes, args.steps, args.warmup, hw,
                                 args.device)
            base = ips if variant == "fp32" else base
            gflops = flops / args.batch_size * ips / 1e9
            ceiling = peak[next((d for d in ("bf16", "fp16") if d in variant), "fp32")]
            rows.append([name, variant, f"{ips:.1f}", f"{ips / base:.2f}x" if base else "-", f"{gflops:.0f}",
                         f"{100 * gflops / ceiling:.0f}%", f"{first:.0f}" if "compile" in variant else ""])
            print(f"  {name} {variant}: {ips:.1f} img/s", file=sys.stderr, flush=True)
    print_table(["backbone", "variant", "img/s", "vs fp32", "GFLOP/s", "of matmul peak", "compile s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
