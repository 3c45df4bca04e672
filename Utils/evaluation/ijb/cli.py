"""The command line of IJB_Evaluation.py: IJB-C / IJB-B 1:1 verification and 1:N search of a checkpoint.

    python IJB_Evaluation.py --checkpoint=runs/x/best.pt --data=/data/IJBC --target=IJBC --protocol=1:1,1:N
    python IJB_Evaluation.py --checkpoint=runs/x/best.pt --data=/data/IJBC --pooling=norm_media --no_flip

Each loose crop is aligned from its 5 landmarks, embedded with its flip (features cached under
<output_dir>/<target>_features, so reruns with other pooling flags skip extraction), pooled into templates
(templates.py), then scored: 1:1 TAR at FAR 1e-6 .. 1e-1 and ROC AUC; 1:N open-set TPIR at FPIR 1e-2 / 1e-1 and
rank-1/5/10 per gallery and their mean (--closed_set adds insightface's closed-set variant). Writes
<stem>_1to1.json, _1to1_roc.csv, _1to1_roc.png, <stem>_1toN.json, _1toN_cmc.png. A bad flag or input is one line on
stderr ("error: ...") and exit status 2, with nothing written.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from Datasets.ijb import IJB_TARGETS, load_ijb, load_ijb_1n

from ..cli import CLIError, EvalParser, add_model_flags, check_checkpoint, check_counts, load_model, run_cli
from .features import ijb_embeddings
from .reports import format_1to1, format_1toN, save_1to1, save_1toN
from .search1n import closed_set_search, open_set_search
from .templates import POOLINGS, get_pooling, image_features, pool_templates
from .verify11 import evaluate_1to1, pair_scores, template_rows

__all__ = ["build_parser", "main"]

PROTOCOLS = ("1:1", "1:N")


def build_parser(prog: str = "IJB_Evaluation.py") -> EvalParser:
    p = EvalParser(prog, "IJB-C / IJB-B 1:1 verification and 1:N search of a checkpoint.")
    p.add_argument("--data", default="", help="IJB root holding meta/ and loose_crop/ (e.g. /data/IJBC)")
    p.add_argument("--target", default="IJBC", choices=list(IJB_TARGETS), help="which set's meta files to read")
    p.add_argument("--protocol", default="1:1", help="comma list of 1:1 (template pairs) and 1:N (search)")
    p.add_argument("--flip", dest="flip", action="store_true", default=True,
                   help="add each image's flip embedding to its own (default)")
    p.add_argument("--no_flip", dest="flip", action="store_false", help="the image's embedding alone")
    p.add_argument("--score_weighting", action="store_true", help="multiply image features by the detector score")
    p.add_argument("--pooling", default="media", choices=POOLINGS.names(),
                   help="; ".join(f"{p.name}: {p.description}" for _, p in POOLINGS.items()))
    p.add_argument("--closed_set", action="store_true",
                   help="1:N: also insightface's closed-set variant (galleries joined, every probe mated)")
    add_model_flags(p)
    p.add_argument("--chunk_size", type=int, default=50_000, help="1:1 template pairs scored per chunk")
    p.add_argument("--feature_cache", default="",
                   help="folder of the feature cache (default <output_dir>/<target>_features; 'none' = off)")
    p.add_argument("--name", default="", help="name in the report and file names (default: the target)")
    p.add_argument("--output_dir", default="./eval_results", help="folder for the JSON, CSV and PNG files")
    p.add_argument("--no_plots", action="store_true", help="write no PNG plots")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


def _protocols(text: str) -> list[str]:
    wanted = [t.strip().upper() for t in text.split(",") if t.strip()]
    bad = [t for t in wanted if t not in PROTOCOLS]
    if bad or not wanted:
        raise CLIError(f"--protocol: expected a comma list of {', '.join(PROTOCOLS)}, got '{text}'")
    return wanted


def _one_to_one(meta, tids, tfeats, args, settings) -> None:
    rows1, rows2 = template_rows(tids, meta.pair_t1), template_rows(tids, meta.pair_t2)
    scores = pair_scores(tfeats, rows1, rows2, chunk=args.chunk_size, progress=not args.no_progress)
    summary, roc = evaluate_1to1(scores, meta.pair_same)
    summary = {"name": settings["name"], **summary, **settings}
    print(format_1to1(summary))
    paths = save_1to1(summary, roc, args.output_dir, settings["stem"], plots=not args.no_plots)
    print("wrote " + ", ".join(map(str, paths)))


def _one_to_n(search, tids, tfeats, args, settings) -> None:
    probe = tfeats[template_rows(tids, search.probe_templates)]
    res: dict = {"name": settings["name"], "definition": "open set (NIST): each gallery searched apart",
                 "open_set": {}}
    for g, (gt, gs) in search.galleries.items():
        res["open_set"][g] = open_set_search(probe, search.probe_subjects, tfeats[template_rows(tids, gt)], gs)
    runs = list(res["open_set"].values())
    res["open_set_mean"] = {
        "tpir_at_fpir": {f: (None if any(r["tpir_at_fpir"][f] is None for r in runs)
                             else float(np.mean([r["tpir_at_fpir"][f] for r in runs])))
                         for f in runs[0]["tpir_at_fpir"]},
        **{k: float(np.mean([r[k] for r in runs])) for k in ("rank_1", "rank_5", "rank_10")}}
    if args.closed_set:
        gt = np.concatenate([t for t, _ in search.galleries.values()])
        gs = np.concatenate([s for _, s in search.galleries.values()])
        res["closed_set_insightface"] = closed_set_search(probe, search.probe_subjects,
                                                          tfeats[template_rows(tids, gt)], gs)
    res.update(settings)
    print(format_1toN(res))
    paths = save_1toN(res, args.output_dir, settings["stem"], plots=not args.no_plots)
    print("wrote " + ", ".join(map(str, paths)))


def _run(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    check_counts(args, ("batch_size", "chunk_size"))
    protocols = _protocols(args.protocol)
    if not args.data:
        raise CLIError("--data: not given (the IJB root holding meta/ and loose_crop/)")
    if not Path(args.data).is_dir():
        raise CLIError(f"--data: not a directory: {args.data}")
    check_checkpoint(args)
    # every list is read and cross-checked before the model loads or anything is written
    meta = load_ijb(args.data, args.target, pairs="1:1" in protocols)
    search = load_ijb_1n(args.data, args.target, meta.templates) if "1:N" in protocols else None
    loaded = load_model(args)
    pooling = get_pooling(args.pooling)
    print(f"{args.target}: {len(meta.names):,} images, {len(np.unique(meta.templates)):,} templates from "
          f"{args.data}; {loaded.describe()}", flush=True)

    start = time.perf_counter()
    cache = None if args.feature_cache.lower() == "none" else (
        args.feature_cache or Path(args.output_dir) / f"{args.target.lower()}_features")
    emb, emb_flip, source = ijb_embeddings(loaded, meta, args.checkpoint, cache, args.batch_size, args.num_workers,
                                           progress=not args.no_progress)
    print(f"image features from {source}", flush=True)
    feats = image_features(emb, emb_flip if args.flip else None, pooling,
                           meta.scores if args.score_weighting else None)
    tids, tfeats = pool_templates(feats, meta.templates, meta.medias, pooling)
    name = args.name or args.target
    stem = "_".join([name, pooling.name, "flip" if args.flip else "noflip"]
                    + (["score"] if args.score_weighting else [])).lower()
    settings = {"pooling": pooling.name, "pooling_rule": pooling.description, "flip": args.flip,
                "score_weighting": args.score_weighting, "stem": stem, "checkpoint": str(args.checkpoint),
                "data": str(args.data), "target": args.target, "backbone": loaded.meta["backbone"],
                "input_size": list(loaded.input_hw), "color_order": loaded.color_order, "amp": args.amp,
                "features_from": source, "command": " ".join([prog, *argv]), "name": name}
    if "1:1" in protocols:
        _one_to_one(meta, tids, tfeats, args, settings)
    if "1:N" in protocols:
        _one_to_n(search, tids, tfeats, args, settings)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "IJB_Evaluation.py"
    return run_cli(lambda: _run(argv, prog))
