"""The command line of Identification_Evaluation.py: rank-1 / CMC of a checkpoint on a folder of identities.

    python Identification_Evaluation.py --checkpoint=mfn.pt --root=orl/att_faces --protocol=loo
    python Identification_Evaluation.py --checkpoint=mfn.pt --root=faces --protocol=split --gallery_per_identity=5 \\
        --resize=crop --device=cuda --amp=bf16

The checkpoint's metadata gives the input size and colour order (--input_size / --color_order override them).
Prints rank-1 and the CMC, then writes identification_<protocol>.json with the rank-1 failures (probe, nearest
image, score). A bad flag or input is one line on stderr ("error: ...") and exit status 2.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from Datasets.images import ImageList, scan_identity_folders
from Datasets.transforms import FIT_MODES

from .cli import EvalParser, add_model_flags, add_overwrite_flag, check_counts, check_overwrite, load_model, run_cli
from .features import extract_embeddings
from .identification import FEATURE_MODES, evaluate_identification, identification_features

__all__ = ["build_parser", "main"]


def build_parser(prog: str) -> EvalParser:
    p = EvalParser(prog, "Closed-set identification (leave-one-out or gallery/probe) on root/<identity>/<image>.")
    p.add_argument("--root", required=True, help="folder of identity sub-folders holding images (any size/mode)")
    p.add_argument("--protocol", default="loo", choices=["loo", "split"],
                   help="loo: each image against all others; split: first K images per identity are the gallery")
    p.add_argument("--gallery_per_identity", type=int, default=5, help="K of the split protocol")
    p.add_argument("--features", default="concat", choices=FEATURE_MODES,
                   help="image + flip embeddings: concat (the original project), sum, or single (no flip)")
    p.add_argument("--resize", default="stretch", choices=FIT_MODES,
                   help="images of another aspect ratio than the input: stretch, centre-crop or pad, then resize")
    p.add_argument("--max_rank", type=int, default=5, help="CMC printed up to this rank")
    add_model_flags(p)
    p.add_argument("--output_dir", default="./eval_results", help="folder for the JSON report ('' = none)")
    add_overwrite_flag(p)
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def run(argv: list[str], prog: str = "Identification_Evaluation.py") -> dict:
    """Parse, evaluate, print and write the report; returns the summary dict. Raises ValueError/OSError."""
    args = build_parser(prog).parse_args(argv)
    check_counts(args, ("batch_size", "max_rank", "gallery_per_identity"))

    folder = scan_identity_folders(args.root, natural_order=True, recursive=False)
    report_path = Path(args.output_dir) / f"identification_{args.protocol}.json" if args.output_dir else None
    if report_path:
        check_overwrite(report_path, {"checkpoint": args.checkpoint, "root": folder.root}, args.overwrite)
    loaded = load_model(args)
    hw, color = tuple(loaded.input_hw), loaded.color_order
    files = folder.files()
    print(f"{folder.root}: {len(folder)} images of {len(folder.names)} identities; {loaded.describe()}, "
          f"resize={args.resize}", flush=True)
    start = time.perf_counter()
    images = ImageList(files, hw, color, fit=args.resize)
    emb, emb_flip = extract_embeddings(loaded.model, images, args.batch_size, loaded.device, loaded.amp_dtype,
                                       args.num_workers, desc="embeddings", progress=not args.no_progress,
                                       fast=loaded.fast)
    feats = identification_features(emb, emb_flip, args.features)
    result = evaluate_identification(feats, folder.labels, args.protocol, args.gallery_per_identity, args.max_rank)
    seconds = time.perf_counter() - start

    probe_idx, ranks, nearest = result.pop("probe_index"), result.pop("ranks"), result.pop("nearest")
    failures = [{"probe": files[p], "identity": folder.names[folder.labels[p]], "rank": int(r),
                 "nearest": files[n], "nearest_identity": folder.names[folder.labels[n]],
                 "score": float(feats[p] @ feats[n])}
                for p, r, n in zip(probe_idx, ranks, nearest) if r != 1]
    what = ("leave-one-out" if args.protocol == "loo"
            else f"gallery = first {args.gallery_per_identity} images per identity")
    print(f"{what}: {result['probes']} probes, {result['gallery']} gallery images, "
          f"{result['identities']} identities, features={args.features}")
    print("  ".join(f"rank-{k}: {100 * v:.2f}%" for k, v in enumerate(result["cmc"], 1)))
    if result["unrankable"]:
        print(f"note: {result['unrankable']} probes have no other image of their identity and are not counted")
    summary = {**result, "root": folder.root, "checkpoint": str(args.checkpoint), "backbone": loaded.meta["backbone"],
               "input_size": list(hw), "color_order": color, "resize": args.resize, "features": args.features,
               "device": str(loaded.device), "amp": loaded.amp, "fast": loaded.fast, "seconds": round(seconds, 3),
               "command": " ".join([prog, *argv]), "failures": [f for f in failures if f["rank"] != 0]}
    if args.output_dir:
        path = report_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        print(f"wrote {path}")
    return summary


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "Identification_Evaluation.py"
    return run_cli(lambda: run(argv, prog))
