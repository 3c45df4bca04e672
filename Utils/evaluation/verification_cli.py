"""The command line shared by LFW_Evaluation.py, AgeDB-30_Evaluation.py and CFP-FP_Evaluation.py.

    python LFW_Evaluation.py --checkpoint=runs/x/best.pt --data=/data/lfw.bin
    python LFW_Evaluation.py --checkpoint=runs/x/best.pt --pairs=lfw/pairs.txt --images=lfw/aligned_112x96 \\
        --protocol=insightface --device=cuda --amp=bf16 --output_dir=results

The checkpoint's metadata gives the input size and colour order (--input_size / --color_order override them).
Prints the per-fold table and mean +- std, then writes <name>_<protocol>.json, _roc.csv and _roc.png.
A bad flag or input is one line on stderr ("error: ...") and exit status 2.
"""
from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from Config.cli import apply_overrides, validate
from Config.config import Config
from Datasets import load_verification_set

from .cli import (CLIError, EvalParser, add_model_flags, add_overwrite_flag, check_counts, check_overwrite,
                  load_model, run_cli, synthetic_settings)
from .reports import format_report, save_report
from .verification import canonical_protocol
from .verify import verify_report

__all__ = ["build_parser", "main"]


def build_parser(prog: str, dataset: str) -> EvalParser:
    p = EvalParser(prog, f"10-fold {dataset} verification of a checkpoint (image + flip features).")
    p.add_argument("--data", default="", help="insightface .bin file, or 'synthetic' (the synthetic set the "
                                              "checkpoint's run was trained and validated on)")
    p.add_argument("--pairs", default="", help="pairs file (LFW pairs.txt, two-path list, CFP Protocol folder)")
    p.add_argument("--images", default="", help="image root the pairs file refers to")
    p.add_argument("--protocol", default="face_pytorch", choices=["face_pytorch", "insightface", "seed"],
                   help="face_pytorch: concat, mean-subtracted cosine ('seed' is its old name); insightface: sum, "
                        "L2, VAL@FAR")
    add_model_flags(p)
    p.add_argument("--name", default="", help=f"name used in the report and output file names (default: {dataset}; "
                                              f"'synthetic' for --data=synthetic)")
    p.add_argument("--output_dir", default="./eval_results", help="folder for the JSON, ROC CSV and ROC PNG")
    add_overwrite_flag(p)
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
    loaded = load_model(args)

    protocol = canonical_protocol(args.protocol)
    hw, color = loaded.input_hw, loaded.color_order
    # --data=synthetic: the checkpoint's own synthetic set (its run's settings), not the default one
    base = synthetic_settings(args.checkpoint, args.trust_checkpoint) if spec == "synthetic" else {}
    cfg = validate(apply_overrides(Config(), {**base, "input_size": hw, "color_order": color,
                                              "eval_batch_size": args.batch_size, "num_workers": args.num_workers,
                                              "eval_protocol": protocol}, source="command line"))
    name = args.name or ("synthetic" if spec == "synthetic" else dataset)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}_{protocol}").strip("_").lower()
    check_overwrite(Path(args.output_dir) / f"{stem}.json", {"checkpoint": args.checkpoint, "data": spec},
                    args.overwrite)
    vset = load_verification_set(spec, cfg)
    vset.name = name
    print(f"{vset.name}: {len(vset.issame)} pairs from {spec}; {loaded.describe()}", flush=True)
    start = time.perf_counter()
    report = verify_report(loaded.model, vset, protocol, args.batch_size, loaded.device, loaded.amp_dtype,
                           args.num_workers, progress=not args.no_progress, fast=loaded.fast)
    seconds = time.perf_counter() - start
    print(format_report(report.summary))
    extra = {"checkpoint": str(args.checkpoint), "data": spec, "backbone": loaded.meta["backbone"],
             "embedding_size": loaded.meta["embedding_size"], "input_size": hw, "color_order": color,
             "device": str(loaded.device), "amp": loaded.amp, "fast": loaded.fast, "batch_size": args.batch_size,
             "seconds": round(seconds, 3), "command": " ".join([prog, *argv])}
    paths = save_report(report, args.output_dir, stem, extra)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None, dataset: str = "LFW", prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "evaluate"
    return run_cli(lambda: _run(argv, prog, dataset))
