"""The command line of MegaFace_Evaluation.py: MegaFace Challenge 1 of a checkpoint (or of precomputed features),
without the devkit's binaries.

    python MegaFace_Evaluation.py --checkpoint=runs/x/best.pt \\
        --probe_list=devkit/templatelists/facescrub_features_list.json --probe_root=/data/facescrub_aligned \\
        --distractor_lists=devkit/templatelists --distractor_root=/data/megaface_aligned \\
        [--facescrub_noises=facescrub_noises.txt --megaface_noises=megaface_noises.txt] [--write_matio=feats/]
    python MegaFace_Evaluation.py --checkpoint=runs/x/best.pt --data=synthetic   # the generated MegaFace-style set

Features: image + horizontal flip (summed by default), L2-normalised, cosine scores; cached as .npy under
<output_dir>/<name>_features (feature_cache.py) so a rerun (other sizes, cleaning on/off) skips extraction.
Features made by another tool can be scored instead: --probe_features_dir/--distractor_features_dir with the
devkit's matio files. Metrics (megaface_metrics.py): rank-1 and CMC, TAR at FAR down to 1e-6 and the ROC, for every
distractor list size. Writes <name>.json (the report, which says whether cleaning was on), <name>_cmc.png,
<name>_rank1.png and <name>_roc.png. A bad flag or input is one line on stderr ("error: ...") and exit status 2.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from Config.cli import apply_overrides
from Config.config import Config
from Datasets.images import ImageList
from Datasets.megaface import (facescrub_noise_mask, find_distractor_lists, megaface_noise_mask,
                               read_distractor_list, read_noise_list, read_probe_list)
from Datasets.synthetic import ensure_synthetic

from ..device import autocast_dtype, resolve_device
from .cli import (CLIError, EvalParser, add_model_flags, add_overwrite_flag, check_counts, check_overwrite, load_model,
                  parse_input_size, parse_list, run_cli, synthetic_settings)
from .feature_cache import FeatureCache, cache_key
from .features import extract_embeddings
from .matio import read_feature_files, write_feature_files
from .megaface_metrics import evaluate_megaface, identity_scores, l2_normalize, replace_with_identity_centres
from .plots import plot_cmc, plot_rank1_curve, plot_roc
from .search_precision import PRECISIONS

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "MegaFace_Evaluation.py") -> EvalParser:
    p = EvalParser(prog, "MegaFace Challenge 1 identification and verification.")
    g = p.add_argument_group("data")
    g.add_argument("--data", default=None, choices=["synthetic"],
                   help="synthetic: the generated MegaFace-style set of the checkpoint's run (its synthetic settings; "
                        "the defaults without a checkpoint), as in the other evaluation scripts")
    g.add_argument("--synthetic", action="store_true", help="old spelling of --data=synthetic (deprecated)")
    g.add_argument("--probe_list", default="",
                   help="devkit facescrub_features_list.json ({'path': [...], 'id': [...]})")
    g.add_argument("--probe_root", default="", help="image root of the probe list's paths")
    g.add_argument("--distractor_lists", default="",
                   help="folder holding megaface_features_list.json_<N>_1 files, or a comma list of such files")
    g.add_argument("--distractor_root", default="", help="image root of the distractor lists' paths")
    g.add_argument("--sizes", default="", help="distractor counts to evaluate, e.g. 1000,1000000 (default: all lists)")
    g.add_argument("--facescrub_noises", default="", help="insightface facescrub_noises.txt: clean the probes")
    g.add_argument("--megaface_noises", default="", help="insightface megaface_noises.txt: clean the distractors")
    g = p.add_argument_group("features")
    add_model_flags(g, checkpoint_required=False, device_help="auto, cpu, cuda or cuda:N (extraction and search)",
                    amp_help="autocast precision of extraction")
    g.add_argument("--flip", default="sum", choices=["sum", "concat", "none"],
                   help="combine each image's embedding with its flip's: sum (insightface), concat, or none")
    g.add_argument("--feature_cache", default="",
                   help="folder of the .npy feature cache (default: <output_dir>/<name>_features; 'none' = off)")
    g.add_argument("--probe_features_dir", default="", help="read probe features from devkit matio files here")
    g.add_argument("--distractor_features_dir", default="", help="read distractor features from matio files here")
    g.add_argument("--features_suffix", default="", help="matio file suffix, e.g. _r100.bin (reading and writing)")
    g.add_argument("--write_matio", default="", help="also write every feature as a devkit matio file under here")
    g = p.add_argument_group("metrics")
    g.add_argument("--max_rank", type=int, default=10, help="CMC up to this rank")
    g.add_argument("--fars", default="1e-6,1e-5,1e-4,1e-3,1e-2,1e-1", help="FARs at which TAR is reported")
    g.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="matmul precision of the search filter (results are exact float64 scores either way)")
    g.add_argument("--chunk_size", type=int, default=16384, help="distractors scored per matmul")
    g.add_argument("--tail_far", type=float, default=1e-5, help="exact ROC up to this FAR (histogram beyond)")
    g.add_argument("--no_histogram", action="store_true", help="skip the all-scores histogram (coarse ROC)")
    g = p.add_argument_group("output")
    g.add_argument("--name", default="", help="name of the report and plot files (default: megaface; "
                                             "megaface_synthetic for --data=synthetic)")
    g.add_argument("--output_dir", default="./eval_results", help="folder for the JSON report and PNG plots")
    add_overwrite_flag(g)
    g.add_argument("--no_plots", action="store_true", help="write no PNG plots")
    g.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


# ---------------------------------------------------------------------------------------------- inputs
def _inputs(args) -> dict:
    """Probe list, distractor lists per size and image roots, from the flags or the synthetic set."""
    if args.data == "synthetic":
        if args.probe_list or args.distractor_lists:
            raise CLIError("give either --data=synthetic or --probe_list/--distractor_lists, not both")
        settings = synthetic_settings(args.checkpoint, args.trust_checkpoint)  # the checkpoint's own synthetic set
        if args.input_size:
            settings["input_size"] = parse_input_size(args.input_size)
        syn = ensure_synthetic(apply_overrides(Config(), settings, source=f"the config of {args.checkpoint}"))
        probe_list, probe_root, distractor_root = syn.probe_list, syn.probe_root, syn.distractor_root
        lists = {int(n): Path(p) for n, p in syn.distractor_lists.items()}
    else:
        if not args.probe_list or not args.distractor_lists:
            raise CLIError("no data: give --probe_list=... --distractor_lists=... (and image roots), or "
                           "--data=synthetic")
        probe_list, probe_root, distractor_root = args.probe_list, args.probe_root, args.distractor_root
        src = Path(args.distractor_lists)
        if src.is_dir():
            lists = find_distractor_lists(src)
            if not lists:
                raise CLIError(f"--distractor_lists: no megaface_features_list.json_<N>_1 file in {src}")
        else:
            lists = {len(read_distractor_list(item)): Path(item)
                     for item in parse_list(args.distractor_lists, str, "--distractor_lists")}
    if args.sizes:
        wanted = parse_list(args.sizes, int, "--sizes")
        missing = [n for n in wanted if n not in lists]
        if missing:
            raise CLIError(f"--sizes: no distractor list of size {missing[0]} (available: "
                           f"{', '.join(map(str, sorted(lists)))})")
        lists = {n: lists[n] for n in sorted(wanted)}
    probes = read_probe_list(probe_list)
    distractors = {n: read_distractor_list(p) for n, p in sorted(lists.items())}
    return {"probe_list": str(probe_list), "probe_root": str(probe_root), "probes": probes,
            "distractor_lists": {n: str(p) for n, p in lists.items()}, "distractor_root": str(distractor_root),
            "distractors": distractors}


def _union(distractors: dict[int, list[str]]) -> tuple[list[str], dict[int, np.ndarray]]:
    """All distractor paths once (the largest list first, in its order) and each size's indices into them."""
    order: dict[str, int] = {}
    for n in sorted(distractors, reverse=True):
        for p in distractors[n]:
            order.setdefault(p, len(order))
    index = {n: np.fromiter((order[p] for p in paths), dtype=np.int64, count=len(paths))
             for n, paths in distractors.items()}
    return list(order), index


# ---------------------------------------------------------------------------------------------- features
class _Features:
    """Normalised features of an image list: from matio files, the cache, or the model (loaded once)."""

    def __init__(self, args):
        self.args = args
        self.loaded = None
        self.cache = None
        if args.feature_cache.lower() != "none":
            self.cache = FeatureCache(args.feature_cache or Path(args.output_dir) / f"{args.name}_features")

    def _model(self):
        if self.loaded is None:
            if not self.args.checkpoint:
                raise CLIError("features must be extracted: give --checkpoint (or --*_features_dir matio features)")
            self.loaded = load_model(self.args)
            print(f"{self.loaded.describe()}, flip={self.args.flip}", flush=True)
        return self.loaded

    def get(self, role: str, root: str, paths: list[str], matio_dir: str) -> tuple[np.ndarray, str]:
        if matio_dir:
            feats = read_feature_files(matio_dir, paths, self.args.features_suffix,
                                       progress=not self.args.no_progress)
            return l2_normalize(feats), f"matio files in {matio_dir}"
        a = self.args
        key = None
        if self.cache is not None:
            key = cache_key(a.checkpoint, role, str(Path(root).resolve()), a.flip, "exact" if a.exact else a.amp, a.input_size,
                            a.color_order, paths)
            cached = self.cache.load(role, key, len(paths))
            if cached is not None:
                return cached, f"cache {self.cache.folder / (role + '.npy')}"
        loaded = self._model()
        dataset = ImageList(paths, loaded.input_hw, loaded.color_order, root=root)
        emb, emb_flip = extract_embeddings(loaded.model, dataset, a.batch_size, loaded.device, loaded.amp_dtype,
                                           a.num_workers, desc=f"{role} features", progress=not a.no_progress,
                                           fast=loaded.fast)
        if a.flip == "sum":
            emb = emb + emb_flip
        elif a.flip == "concat":
            emb = np.concatenate([emb, emb_flip], axis=1)
        feats = l2_normalize(emb)
        if self.cache is not None:
            self.cache.save(role, key, feats, root=root)
        return feats, "extracted"


# ---------------------------------------------------------------------------------------------- run
def _check_metric_flags(args) -> list[float]:
    check_counts(args, ("batch_size", "max_rank", "chunk_size"))
    fars = parse_list(args.fars, float, "--fars")
    if not fars or any(not 0 < f <= 1 for f in fars):
        raise CLIError(f"--fars: expected values in (0, 1], got '{args.fars}'")
    if not 0 < args.tail_far <= 1:
        raise CLIError(f"--tail_far: expected a value in (0, 1], got {args.tail_far}")
    return fars


def _clean(args, probes, probe_feats, union, index) -> tuple[np.ndarray, dict, dict]:
    """The noise lists applied: noisy probes replaced by their identity centre, noisy distractors out of reach.
    Returns (probe features, the report's "cleaned" entry, distractors removed per size)."""
    cleaning = {"facescrub": bool(args.facescrub_noises), "megaface": bool(args.megaface_noises)}
    if args.facescrub_noises:
        noise = read_noise_list(args.facescrub_noises)
        noisy = facescrub_noise_mask(probes.paths, noise)
        probe_feats, replaced = replace_with_identity_centres(probe_feats, probes.labels, noisy)
        cleaning.update(facescrub_list=args.facescrub_noises, facescrub_listed=len(noise),
                        facescrub_replaced=replaced)
        print(f"cleaning: {replaced} of {len(probes)} probes are in {args.facescrub_noises} "
              f"({len(noise)} names) and were replaced by their identity centre")
    dropped = {}
    if args.megaface_noises:
        noise = read_noise_list(args.megaface_noises)
        noisy = megaface_noise_mask(union, noise)
        for n in index:
            keep = ~noisy[index[n]]
            dropped[n] = int((~keep).sum())
            index[n] = index[n][keep]
        cleaning.update(megaface_list=args.megaface_noises, megaface_listed=len(noise),
                        megaface_removed={str(n): d for n, d in dropped.items()})
        print(f"cleaning: noisy distractors removed from reach: "
              f"{', '.join(f'{d} of {n:,}' for n, d in dropped.items())}")
    return probe_feats, cleaning, dropped


def _run(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.synthetic:
        print("note: --synthetic is the old spelling of --data=synthetic", file=sys.stderr)
        args.data = "synthetic"
    # the report's name from the data, so that the synthetic and the real run do not overwrite each other
    args.name = args.name or ("megaface_synthetic" if args.data == "synthetic" else "megaface")
    fars = _check_metric_flags(args)
    inputs = _inputs(args)
    check_overwrite(_report_path(args), {"command_checkpoint": args.checkpoint, "command_data": _data_id(inputs)},
                    args.overwrite)

    device = resolve_device(args.device)
    autocast_dtype(args.amp, device, key="--amp")  # a precision the device cannot run fails before extraction
    probes, distractors = inputs["probes"], inputs["distractors"]
    union, index = _union(distractors)
    print(f"probes: {len(probes)} images of {len(probes.identities)} identities ({inputs['probe_list']}); "
          f"distractor lists: {', '.join(f'{n:,}' for n in distractors)} ({len(union):,} distinct images)", flush=True)

    features = _Features(args)
    start = time.perf_counter()
    p_feats, p_src = features.get("probes", inputs["probe_root"], probes.paths, args.probe_features_dir)
    d_feats, d_src = features.get("distractors", inputs["distractor_root"], union, args.distractor_features_dir)
    extract_seconds = time.perf_counter() - start
    if p_feats.shape[1] != d_feats.shape[1]:
        raise CLIError(f"probe features are {p_feats.shape[1]}-d but distractor features {d_feats.shape[1]}-d")
    print(f"features: probes {p_feats.shape} ({p_src}), distractors {d_feats.shape} ({d_src})", flush=True)
    if args.write_matio:
        suffix = args.features_suffix or f"_{args.name}.bin"
        out = Path(args.write_matio)
        write_feature_files(out / "facescrub", probes.paths, p_feats, suffix, progress=not args.no_progress)
        write_feature_files(out / "megaface", union, d_feats, suffix, progress=not args.no_progress)
        print(f"wrote devkit feature files under {out}/facescrub and {out}/megaface (suffix '{suffix}')")

    probe_feats, cleaning, dropped = _clean(args, probes, np.asarray(p_feats, dtype=np.float32), union, index)
    results = {}
    genuine = identity_scores(probe_feats, probes.labels)
    print(f"\n{'distractors':>12} {'rank-1':>8} {'rank-' + str(args.max_rank):>8} {'TAR@FAR=' + f'{fars[0]:g}':>14}"
          f" {'seconds':>8}")
    for n in sorted(distractors):
        res = evaluate_megaface(probe_feats, probes.labels, d_feats, index=index[n], max_rank=args.max_rank,
                                fars=fars, precision=args.precision, device=device, chunk_size=args.chunk_size,
                                tail_far=args.tail_far, histogram=not args.no_histogram,
                                num_unreachable=dropped.get(n, 0), progress=not args.no_progress, genuine=genuine)
        results[n] = res
        ident, tar = res["identification"], res["verification"]["tar_at_far"][0]
        tar_text = "n/a" if tar["tar"] is None else f"{100 * tar['tar']:.3f}%" + ("" if tar["exact"] else "~")
        print(f"{n:>12,} {100 * ident['rank1']:>7.3f}% {100 * ident['cmc'][-1]:>7.3f}% {tar_text:>14} "
              f"{res['search_seconds'] + res['metric_seconds']:>8.1f}", flush=True)

    report = {
        "benchmark": "MegaFace Challenge 1", "cleaned": cleaning,
        "protocol": {"scores": "cosine of L2-normalised features", "flip": args.flip,
                     "ties": "a distractor scoring equal to the gallery image ranks above it; verification "
                             "accepts score > threshold", "max_rank": args.max_rank},
        "inputs": {k: inputs[k] for k in ("probe_list", "probe_root", "distractor_lists", "distractor_root")},
        "num_probes": len(probes), "num_identities": len(probes.identities),
        "features": {"probes": p_src, "distractors": d_src, "dim": int(p_feats.shape[1]),
                     "checkpoint": args.checkpoint, "extract_seconds": round(extract_seconds, 3)},
        "search": {"precision": next(iter(results.values()))["precision"] if results else args.precision,
                   "device": str(device), "chunk_size": args.chunk_size, "tail_far": args.tail_far},
        "results": {str(n): r for n, r in results.items()},
        "command": " ".join([prog, *argv]), "command_checkpoint": args.checkpoint, "command_data": _data_id(inputs),
    }
    written = _write_report(args, report, results)
    print(f"cleaning: {'on' if cleaning['facescrub'] or cleaning['megaface'] else 'off'}; "
          f"wrote {', '.join(map(str, written))}")
    return 0


def _report_path(args) -> Path:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.name).strip("_") or "megaface"
    return Path(args.output_dir) / f"{stem}.json"


def _data_id(inputs: dict) -> str:
    """What was evaluated, for the overwrite check: the probe list and the distractor images (a rerun with other
    --sizes or cleaning evaluates the same data)."""
    return f"{inputs['probe_list']} + {inputs['distractor_root']}"


def _write_report(args, report: dict, results: dict) -> list[Path]:
    json_path = _report_path(args)
    out_dir, stem = json_path.parent, json_path.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
    written = [json_path]
    if not args.no_plots and results:
        written += [plot_cmc(results, out_dir / f"{stem}_cmc.png"),
                    plot_rank1_curve(results, out_dir / f"{stem}_rank1.png"),
                    plot_roc(results, out_dir / f"{stem}_roc.png")]
    return written


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "MegaFace_Evaluation.py"
    return run_cli(lambda: _run(argv, prog))
