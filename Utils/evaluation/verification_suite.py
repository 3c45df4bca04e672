"""Every standard verification set in one run: Verification_Evaluation.py.

    python Verification_Evaluation.py --checkpoint=runs/x/best.pt \\
        --data=lfw.bin,cfp_fp.bin,cfp_ff.bin,agedb_30.bin,calfw.bin,cplfw.bin,vgg2_fp.bin

Each entry of --data is anything `Datasets.load_verification_set` reads (the same list Train.py's --val_sets
takes): an insightface .bin, an LFW pairs.txt, a two-path list, a CFP Protocol folder, CALFW / CPLFW
`pairs_*.txt`, each optionally followed by "::image_root". Each set is embedded and scored exactly as its own
script (LFW_Evaluation.py ...) would (the same `verify_report`); the run prints one table, a row per set, and writes
one JSON (`verification_<protocol>.json`) and one PNG with every set's ROC.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .cli import CLIError, EvalParser, add_model_flags, check_counts, load_model, run_cli
from .verification import canonical_protocol
from .verify import VerificationReport, far_key, verify_report

__all__ = ["TABLE_FARS", "parse_data_list", "set_names", "table_row", "format_table", "run_suite", "main"]

TABLE_FARS = (1e-3, 1e-4)  # the columns of the table; the JSON keeps every FAR target


def parse_data_list(text: str) -> list[str]:
    """'a.bin, b.bin,pairs.txt::root' -> the specs, in order; an empty list or a repeated entry is a CLIError."""
    specs = [s.strip() for s in text.split(",") if s.strip()]
    if not specs:
        raise CLIError("--data: give one or more sets, comma-separated (e.g. --data=lfw.bin,cfp_fp.bin)")
    seen = set()
    for s in specs:
        if s in seen:
            raise CLIError(f"--data: '{s}' is listed twice")
        seen.add(s)
    for s in specs:  # every path checked before any model is loaded or any set decoded
        path = s.split("::", 1)[0]
        if s != "synthetic" and not Path(path).exists():
            raise CLIError(f"--data: no such file or directory: {path}")
        if "::" in s and not Path(s.split("::", 1)[1]).is_dir():
            raise CLIError(f"--data: image root is not a directory: {s.split('::', 1)[1]}")
    return specs


def set_names(names: Sequence[str]) -> list[str]:
    """The sets' names, made unique (a second "lfw" becomes "lfw_2") so the table and the JSON keys are unambiguous."""
    out, count = [], {}
    for n in names:
        count[n] = count.get(n, 0) + 1
        out.append(n if count[n] == 1 else f"{n}_{count[n]}")
    return out


def table_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one table row, taken from a `verify` summary."""
    return {"name": summary["name"], "pairs": summary["n_pairs"], "accuracy": summary["accuracy"],
            "std": summary["std"], **{f"tar@far={far_key(f)}": summary["tar_at_far"][far_key(f)] for f in TABLE_FARS},
            "threshold": summary["threshold"]}


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """One row per set: accuracy +- std (%), TAR at FAR 1e-3 and 1e-4 (%), the mean fold threshold."""
    heads = ["set", "pairs", "accuracy (%)", *(f"TAR@FAR={f:.0e} (%)" for f in TABLE_FARS), "threshold"]
    rows = []
    for s in summaries:
        r = table_row(s)
        rows.append([r["name"], str(r["pairs"]), f"{100 * r['accuracy']:.2f} +- {100 * r['std']:.2f}",
                     *(f"{100 * r[f'tar@far={far_key(f)}']:.2f}" for f in TABLE_FARS), f"{r['threshold']:.4f}"])
    widths = [max(len(x) for x in col) for col in zip(heads, *rows)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths)))]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    return "\n".join(lines)


def run_suite(model, vsets: Sequence, protocol: str = "face_pytorch", progress: bool = True, fast: bool = False,
              **extract) -> list[VerificationReport]:
    """`verify_report` on every set in turn (`extract`: batch_size, device, amp_dtype, num_workers). With `fast`,
    the model is prepared (and compiled, for large sets) once for all the sets."""
    if fast:
        from ..device import autocast_dtype, resolve_device
        from .fast_inference import FastModel

        dev = resolve_device(extract.get("device", "cpu"))
        model = FastModel.prepare(model, dev, autocast_dtype(extract.get("amp_dtype"), dev),
                                  sum(len(v.images) for v in vsets))
    return [verify_report(model, vset, protocol, progress=progress, fast=fast, **extract) for vset in vsets]


def build_parser(prog: str) -> EvalParser:
    p = EvalParser(prog, "10-fold verification of a checkpoint on several sets (image + flip features), one table.")
    p.add_argument("--data", required=True, help="comma-separated sets: .bin files, pairs files (LFW pairs.txt, "
                                                 "CALFW/CPLFW pairs_*.txt, two-path lists), CFP Protocol folders, "
                                                 "each optionally 'pairs_file::image_root'")
    p.add_argument("--protocol", default="face_pytorch", choices=["face_pytorch", "insightface", "seed"],
                   help="face_pytorch: concat, mean-subtracted cosine; insightface: sum, L2, VAL@FAR")
    add_model_flags(p)
    p.add_argument("--output_dir", default="./eval_results", help="folder for the JSON and the ROC PNG")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def _run(argv: list[str], prog: str) -> int:
    from Config.cli import apply_overrides, validate  # deferred: a bad flag is reported before torch work starts
    from Config.config import Config
    from Datasets import load_verification_set

    from .plots import save_rocs_png

    args = build_parser(prog).parse_args(argv)
    check_counts(args)
    specs = parse_data_list(args.data)
    loaded = load_model(args)
    protocol = canonical_protocol(args.protocol)
    cfg = validate(apply_overrides(Config(), {"input_size": loaded.input_hw, "color_order": loaded.color_order,
                                              "eval_batch_size": args.batch_size, "num_workers": args.num_workers,
                                              "eval_protocol": protocol}, source="command line"))
    vsets = [load_verification_set(s, cfg) for s in specs]  # every set read (and checked) before any embedding
    for vset, name in zip(vsets, set_names([v.name for v in vsets])):
        vset.name = name
    print(f"{len(vsets)} sets: " + ", ".join(f"{v.name} ({len(v.issame)} pairs)" for v in vsets) +
          f"; {loaded.describe()}", flush=True)
    start = time.perf_counter()
    reports = run_suite(loaded.model, vsets, protocol, progress=not args.no_progress, batch_size=args.batch_size,
                        device=loaded.device, amp_dtype=loaded.amp_dtype, num_workers=args.num_workers,
                        fast=loaded.fast)
    seconds = time.perf_counter() - start
    print(format_table([r.summary for r in reports]))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"verification_{protocol}").lower()
    doc = {"protocol": protocol, "table": [table_row(r.summary) for r in reports],
           "sets": {r.summary["name"]: {**r.summary, "data": spec} for r, spec in zip(reports, specs)},
           "checkpoint": str(args.checkpoint), "backbone": loaded.meta["backbone"],
           "embedding_size": loaded.meta["embedding_size"], "input_size": loaded.input_hw,
           "color_order": loaded.color_order, "device": str(loaded.device), "amp": loaded.amp, "fast": loaded.fast,
           "batch_size": args.batch_size, "seconds": round(seconds, 3), "command": " ".join([prog, *argv])}
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    png = save_rocs_png(out / f"{stem}_roc.png", [(r.fpr, r.tpr, f"{r.summary['name']} "
                                                   f"({100 * r.summary['accuracy']:.2f}%)") for r in reports],
                        title=f"verification ROC ({protocol})")
    print(f"wrote {json_path}, {png}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the suite; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "Verification_Evaluation.py"
    return run_cli(lambda: _run(argv, prog))
