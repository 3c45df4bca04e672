"""The command line shared by LFW_Evaluation.py, AgeDB-30_Evaluation.py and CFP-FP_Evaluation.py.

    python LFW_Evaluation.py --checkpoint=runs/x/best.pt --data=/data/lfw.bin
    python LFW_Evaluation.py --checkpoint=runs/x/best.pt --pairs=lfw/pairs.txt --images=lfw/aligned_112x96 \\
        --protocol=insightface --device=cuda --amp=bf16 --output_dir=results

The checkpoint's metadata gives the input size and colour order (--input_size / --color_order override them).
Prints the per-fold table and mean +- std, then writes <name>_<protocol>.json, _roc.csv and _roc.png.
A bad flag or input is one line on stderr ("error: ...") and exit status 2.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from .cli_args import CLIError, OneLineParser, add_extraction_flags, check_counts, exit_status, parse_input_size

__all__ = ["CLIError", "build_parser", "main"]


def build_parser(prog: str, dataset: str) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, allow_abbrev=False,
                description=f"10-fold {dataset} verification of a checkpoint (image + flip features).")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (or run directory: its last.pt)")
    p.add_argument("--data", default="", help="insightface .bin file, or 'synthetic'")
    p.add_argument("--pairs", default="", help="pairs file (LFW pairs.txt, two-path list, CFP Protocol folder)")
    p.add_argument("--images", default="", help="image root the pairs file refers to")
    p.add_argument("--protocol", default="seed", choices=["seed", "insightface"],
                   help="seed: Face_Pytorch (concat, mean-subtracted cosine); insightface: sum, L2, VAL@FAR")
    add_extraction_flags(p)
    p.add_argument("--name", default=dataset, help="name used in the report and output file names")
    p.add_argument("--output_dir", default="./eval_results", help="folder for the JSON, ROC CSV and ROC PNG")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _data_spec(args) -> str:
    if args.data and (args.pairs or args.images):
        raise CLIError("give either --data=file.bin or --pairs=... --images=..., not both")
    if args.data:
        if args.data != "synthetic" and not Path(args.data).exists():
            raise CLIError(f"--data: no such file: {args.data}")
        return args.data
    if not args.pairs:
        raise CLIError("no data: give --data=path.bin (or --data=synthetic) or --pairs=pairs_file --images=root")
    if not Path(args.pairs).exists():
        raise CLIError(f"--pairs: no such file: {args.pairs}")
    if args.images and not Path(args.images).is_dir():
        raise CLIError(f"--images: not a directory: {args.images}")
    return f"{args.pairs}::{args.images}" if args.images else args.pairs


def _run(argv: list[str], prog: str, dataset: str) -> int:
    args = build_parser(prog, dataset).parse_args(argv)
    check_counts(args)
    spec = _data_spec(args)
    if not Path(args.checkpoint).exists():
        raise CLIError(f"--checkpoint: no such file: {args.checkpoint}")

    import torch  # heavy imports after the command line is known to be usable: bad flags fail at once

    from Config.cli import apply_overrides, validate
    from Config.config import Config
    from Datasets import load_verification_set

    from .checkpoint import load_backbone
    from .evaluation import format_report, save_report, verify_report
    from .features import resolve_amp_dtype, resolve_device

    device = resolve_device(args.device)
    amp = resolve_amp_dtype(args.amp)
    if amp is torch.float16 and device.type != "cuda":
        raise CLIError("--amp=fp16 needs a CUDA device; use --amp=bf16 on CPU")

    model, meta = load_backbone(args.checkpoint, device)
    hw = parse_input_size(args.input_size) if args.input_size else [int(v) for v in meta["input_size"]]
    color = args.color_order or meta.get("color_order", "RGB")
    cfg = validate(apply_overrides(Config(), {"input_size": hw, "color_order": color,
                                              "eval_batch_size": args.batch_size, "num_workers": args.num_workers,
                                              "eval_protocol": args.protocol}, source="command line"))
    vset = load_verification_set(spec, cfg)
    vset.name = args.name or vset.name
    print(f"{vset.name}: {len(vset.issame)} pairs from {spec}; model {meta['backbone']} "
          f"({meta['embedding_size']}-d, input {hw[0]}x{hw[1]} {color}) on {device}, amp={args.amp}", flush=True)
    start = time.perf_counter()
    report = verify_report(model, vset, args.protocol, args.batch_size, device, amp, args.num_workers,
                           progress=not args.no_progress)
    seconds = time.perf_counter() - start
    print(format_report(report.summary))
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{vset.name}_{args.protocol}").strip("_").lower()
    extra = {"checkpoint": str(args.checkpoint), "data": spec, "backbone": meta["backbone"],
             "embedding_size": meta["embedding_size"], "input_size": hw, "color_order": color,
             "device": str(device), "amp": args.amp, "batch_size": args.batch_size, "seconds": round(seconds, 3),
             "command": " ".join([prog, *argv])}
    paths = save_report(report, args.output_dir, stem, extra)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None, dataset: str = "LFW", prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "evaluate"
    return exit_status(lambda: _run(argv, prog, dataset))
