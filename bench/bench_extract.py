"""Embedding extraction throughput (inference, image + its flip) per backbone and precision.

Times `Utils.evaluation.features.extract_embeddings` (the code every evaluation script and the training-time verification use)
over in-memory random 112x112 images, so image decoding is not measured (bench_loader.py measures it).
Images/s counts source images: each is embedded twice (it and its flip). Ratios are against fp32 in the same run.

    python bench/bench_extract.py
    python bench/bench_extract.py --backbones=MobileFaceNet --images=512 --variants=fp32,bf16+cl
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, print_table  # noqa: E402

VARIANTS = ["fp32", "cl", "bf16", "bf16+cl"]


def measure(backbone: str, variant: str, images: torch.Tensor, batch: int, device: str) -> float:
    from Backbones import get_backbone
    from Utils.evaluation.features import extract_embeddings

    model = get_backbone(backbone).to(device).eval()
    if "cl" in variant.split("+"):
        model = model.to(memory_format=torch.channels_last)
    amp = "bf16" if "bf16" in variant else None
    dataset = torch.utils.data.TensorDataset(images)
    extract_embeddings(model, torch.utils.data.Subset(dataset, range(batch)), batch, device, amp, progress=False)
    t0 = time.perf_counter()
    extract_embeddings(model, dataset, batch, device, amp, progress=False)
    return len(images) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="MobileFaceNet,ResNet50_IR,SEResNet50_IR")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--images", type=int, default=256, help="images per measurement (each also flipped)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    if any(v not in VARIANTS for v in variants):
        p.error(f"variants must be from {', '.join(VARIANTS)}")
    print(f"# {command_line()}")
    print(f"# {machine_line()}; {args.images} images of 112x112 (+ flips), batch {args.batch_size}")
    images = torch.randn(args.images, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    rows = []
    for name in args.backbones.split(","):
        base = None
        for variant in variants:
            ips = measure(name, variant, images, args.batch_size, args.device)
            base = ips if variant == "fp32" else base
            rows.append([name, variant, f"{ips:.1f}", f"{ips / base:.2f}x" if base else "-"])
            print(f"  {name} {variant}: {ips:.1f} img/s", file=sys.stderr, flush=True)
    print_table(["backbone", "variant", "images/s (+flip)", "vs fp32"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
