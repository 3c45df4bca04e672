"""`python -m Utils.tools.model_import`: another project's weights -> a checkpoint of this project.

    python -m Utils.tools.model_import --source=xiaoccer_mobilefacenet --weights=068.ckpt \
        --backbone=MobileFaceNet --input_size=112,96 --color_order=RGB --out=mfn.pt
"""
from __future__ import annotations

import argparse
import sys

import torch

from ...checkpoint import save_checkpoint
from .layouts import get_source, list_sources
from .mapping import OUR_MEAN, OUR_STD, build_import_checkpoint, import_backbone

__all__ = ["main"]


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHT,WIDTH (e.g. 112,96), got {text!r}") from None
    return h, w


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in --help, and the epilog's list of source formats kept as written."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m Utils.tools.model_import",
        description="Import another project's face-recognition weights as a checkpoint of this project.",
        epilog="source formats:\n" + "\n".join(f"  {n}: {get_source(n).description}" for n in list_sources()),
        formatter_class=_HelpFormatter)
    p.add_argument("--source", required=True, help="key layout of the weights (see below)")
    p.add_argument("--weights", required=True, help="the foreign checkpoint file")
    p.add_argument("--backbone", required=True, help="our backbone of the same architecture (MobileFaceNet, ...)")
    p.add_argument("--input_size", type=_size, default=(112, 112), help="HEIGHT,WIDTH the model was trained on")
    p.add_argument("--color_order", choices=("RGB", "BGR"), required=True, help="channel order it was trained on")
    p.add_argument("--mean", type=_floats, default=[OUR_MEAN], help="its input mean on 0..255 (one or 3 values)")
    p.add_argument("--std", type=_floats, default=[OUR_STD],
                   help="its input divisor on 0..255 (insightface arcface_torch, InsightFace_Pytorch: 127.5)")
    p.add_argument("--embedding_size", type=int, default=0, help="0 = from the checkpoint")
    p.add_argument("--to_rgb", type=_bool, default=False, help="reverse a BGR model's first conv to take RGB")
    p.add_argument("--trust_pickle", type=_bool, default=False,
                   help="load files that pickle objects besides tensors (runs their code: trusted files only)")
    p.add_argument("--out", required=True, help="the project checkpoint to write")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        model, meta, report = import_backbone(args.source, args.weights, args.backbone, args.input_size,
                                              args.color_order, args.mean, args.std, args.embedding_size,
                                              args.to_rgb, args.trust_pickle)
        with torch.no_grad():  # a finite output on a random face-sized input: the BN statistics came through
            out = model(torch.randn(2, 3, *args.input_size))
        if not torch.isfinite(out).all():
            raise ValueError(f"{args.weights}: the imported network outputs non-finite values")
        save_checkpoint(build_import_checkpoint(model, meta), args.out)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2  # bad input, as every command line of the project
    for line in report.lines():
        print(line)
    print(f"wrote {args.out}: {meta['backbone']}, {meta['embedding_size']}-d, input {meta['input_size'][0]}x"
          f"{meta['input_size'][1]}, {meta['color_order']}, {meta['normalization']}")
    return 0

