"""Embedding extraction throughput (inference, image + its flip) per backbone and precision.

Times `Utils.evaluation.features.extract_embeddings` (the code every evaluation script and the training-time verification use)
over in-memory random 112x112 images, so image decoding is not measured (bench_loader.py measures it).
Images/s counts source images: each is embedded twice (it and its flip). Ratios are against the first variant (fp32)
in the same run.
"fast" is the evaluation scripts' default path (Utils/evaluation/fast_inference.py: BN folded, channels_last,
native bf16); "fast+compile" adds torch.compile (inductor, frozen weights), its warm-up timed apart and left out of
its images/s. "fp32" is the old default, what --exact runs. Variants are timed in interleaved rounds (median).
A variant may name its own batch size, `variant@batch`: the old default ran fp32 at batch 128 (the scripts' former
--batch_size default), the new one runs the fast path at the device's default (Utils/evaluation/fast_inference.py).

    python bench/bench_extract.py --backbones=MobileFaceNet,ResNet50_IR --variants=fp32,fast   # one batch size for both
    python bench/bench_extract.py --backbones=MobileFaceNet --images=512 --variants=fp32,bf16+cl
    python bench/bench_extract.py --variants=fp32@128,fp32@16,fast@16 --images=128   # old default vs new, own batches
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, print_table  # noqa: E402

VARIANTS = ["fp32", "cl", "bf16", "bf16+cl", "fast", "fast+compile"]


def prepare(backbone: str, variant: str, images: torch.Tensor, batch: int, device: str):
    """(model, amp dtype, seconds of the warm-up pass: kernel selection, and the compile of "fast+compile")."""
    from Backbones import get_backbone
    from Utils.device import autocast_dtype, resolve_device
    from Utils.evaluation.fast_inference import FastModel
    from Utils.evaluation.features import extract_embeddings

    torch.manual_seed(0)
    model = get_backbone(backbone).to(device).eval()
    dev = resolve_device(device)
    if variant in ("fast", "fast+compile"):
        model = FastModel.prepare(model, dev, autocast_dtype("auto", dev), compile=variant == "fast+compile")
        amp = model.amp_dtype
    else:
        if "cl" in variant.split("+"):
            model = model.to(memory_format=torch.channels_last)
        amp = torch.bfloat16 if "bf16" in variant else None
    t0 = time.perf_counter()  # warm-up: kernel selection, and the compile of "fast+compile"
    extract_embeddings(model, torch.utils.data.TensorDataset(images[:batch]), batch, device, amp, progress=False)
    return model, amp, time.perf_counter() - t0


def measure(prepared, images: torch.Tensor, batch: int, device: str) -> float:
    """Images/s (+flip) of one pass over `images`."""
    from Utils.evaluation.features import extract_embeddings

    model, amp, _ = prepared
    t0 = time.perf_counter()
    extract_embeddings(model, torch.utils.data.TensorDataset(images), batch, device, amp, progress=False)
    return len(images) / (time.perf_counter() - t0)


def _parse_variant(spec: str, batch: int) -> tuple[str, int]:
    """"fast@16" -> ("fast", 16); "fast" -> ("fast", --batch_size); a batch that is not a number -> 0 (rejected)."""
    name, _, own = spec.partition("@")
    if not own:
        return name, batch
    return name, int(own) if own.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="MobileFaceNet,ResNet50_IR,SEResNet50_IR")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    p.add_argument("--images", type=int, default=128, help="images per measurement (each also flipped)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds per variant (median reported)")
    args = p.parse_args(argv)
    specs = [_parse_variant(v, args.batch_size) for v in args.variants.split(",")]
    if any(v not in VARIANTS or b < 1 for v, b in specs):
        p.error(f"variants must be from {', '.join(VARIANTS)}, each optionally @batch (a positive integer)")
    print(f"# {command_line()}")
    print(f"# {machine_line()}; {args.images} images of 112x112 (+ flips), batch {args.batch_size} unless named")
    images = torch.randn(args.images, 3, 112, 112, generator=torch.Generator().manual_seed(0))
    rows = []
    for name in args.backbones.split(","):
        prepared = {(v, b): prepare(name, v, images, b, args.device) for v, b in specs}
        # rounds interleave the variants, so a change of load on a shared machine hits them all alike; medians
        speeds = {spec: [] for spec in specs}
        for r in range(args.rounds):
            for spec in specs:
                speeds[spec].append(measure(prepared[spec], images, spec[1], args.device))
                print(f"  {name} {spec[0]}@{spec[1]} round {r + 1}: {speeds[spec][-1]:.1f} img/s", file=sys.stderr,
                      flush=True)
        med = {spec: statistics.median(x) for spec, x in speeds.items()}
        base = med[specs[0]] if specs[0][0] == "fp32" else None
        for spec in specs:
            warm = prepared[spec][2] if spec[0] == "fast+compile" else 0.0
            rows.append([name, spec[0], str(spec[1]), f"{med[spec]:.1f}",
                         f"{med[spec] / base:.2f}x" if base else "-", f"{warm:.0f}" if warm else "-"])
    print_table(["backbone", "variant", "batch", "images/s (+flip), median", "vs the first (fp32)", "compile s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
