"""MegaFace Challenge 1 evaluation of a checkpoint (or of precomputed features), without the devkit's binaries.

    python MegaFace_Evaluation.py --checkpoint=runs/x/best.pt \\
        --probe_list=devkit/templatelists/facescrub_features_list.json --probe_root=/data/facescrub_aligned \\
        --distractor_lists=devkit/templatelists --distractor_root=/data/megaface_aligned \\
        [--facescrub_noises=facescrub_noises.txt --megaface_noises=megaface_noises.txt] [--write_matio=feats/]
    python MegaFace_Evaluation.py --checkpoint=runs/x/best.pt --synthetic        # the generated MegaFace-style set

Features: image + horizontal flip (summed by default), L2-normalised, cosine scores; cached as .npy under
<output_dir>/<name>_features so a rerun (other sizes, cleaning on/off) skips extraction. Features made by another
tool can be scored instead: --probe_features_dir/--distractor_features_dir with the devkit's matio files.
Metrics (Utils/megaface.py): rank-1 and CMC, TAR at FAR down to 1e-6 and the ROC, for every distractor list size.
Writes <name>.json (the report, which says whether cleaning was on), <name>_cmc.png, <name>_rank1.png and
<name>_roc.png. A bad flag or input is one line on stderr ("error: ...") and exit status 2.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from Utils.cli_args import CLIError, OneLineParser, add_extraction_flags, check_counts, exit_status, parse_input_size

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "MegaFace_Evaluation.py") -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog, allow_abbrev=False, description="MegaFace Challenge 1 identification and verification.")
    g = p.add_argument_group("data")
    g.add_argument("--synthetic", action="store_true", help="use the generated MegaFace-style set (Datasets.synthetic)")
    g.add_argument("--probe_list", default="", help="devkit facescrub_features_list.json ({'path': [...], 'id': [...]})")
    g.add_argument("--probe_root", default="", help="image root of the probe list's paths")
    g.add_argument("--distractor_lists", default="",
                   help="folder holding megaface_features_list.json_<N>_1 files, or a comma list of such files")
    g.add_argument("--distractor_root", default="", help="image root of the distractor lists' paths")
    g.add_argument("--sizes", default="", help="distractor counts to evaluate, e.g. 1000,1000000 (default: all lists)")
    g.add_argument("--facescrub_noises", default="", help="insightface facescrub_noises.txt: clean the probes")
    g.add_argument("--megaface_noises", default="", help="insightface megaface_noises.txt: clean the distractors")
    g = p.add_argument_group("features")
    g.add_argument("--checkpoint", default="", help="checkpoint file (or run directory: its last.pt)")
    g.add_argument("--flip", default="sum", choices=["sum", "concat", "none"],
                   help="combine each image's embedding with its flip's: sum (insightface), concat, or none")
    add_extraction_flags(g, device_help="auto, cpu, cuda or cuda:N (extraction and search)",
                         amp_help="autocast precision of extraction")
    g.add_argument("--feature_cache", default="",
                   help="folder of the .npy feature cache (default <output_dir>/<name>_features; 'none' = off)")
    g.add_argument("--probe_features_dir", default="", help="read probe features from devkit matio files here")
    g.add_argument("--distractor_features_dir", default="", help="read distractor features from matio files here")
    g.add_argument("--features_suffix", default="", help="matio file suffix, e.g. _r100.bin (reading and writing)")
    g.add_argument("--write_matio", default="", help="also write every feature as a devkit matio file under here")
    g = p.add_argument_group("metrics")
    g.add_argument("--max_rank", type=int, default=10, help="CMC up to this rank")
    g.add_argument("--fars", default="1e-6,1e-5,1e-4,1e-3,1e-2,1e-1", help="FARs at which TAR is reported")
    g.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="matmul precision of the search filter (results are exact float64 scores either way)")
    g.add_argument("--chunk_size", type=int, default=16384, help="distractors scored per matmul")
    g.add_argument("--tail_far", type=float, default=1e-5, help="exact ROC up to this FAR (histogram beyond)")
    g.add_argument("--no_histogram", action="store_true", help="skip the all-scores histogram (coarse ROC)")
    g = p.add_argument_group("output")
    g.add_argument("--name", default="megaface", help="name of the report and plot files")
    g.add_argument("--output_dir", default="./eval_results", help="folder for the JSON report and PNG plots")
    g.add_argument("--no_plots", action="store_true", help="write no PNG plots")
    g.add_argument("--no_progress", action="store_true", help="no progress bars")
    return p


# ---------------------------------------------------------------------------------------------- inputs
def _parse_list(text: str, kind, flag: str) -> list:
    try:
        return [kind(float(t)) if kind is int else kind(t) for t in re.split(r"[,\s]+", text.strip()) if t]
    except ValueError:
        raise CLIError(f"{flag}: cannot parse '{text}'") from None


def _inputs(args) -> dict:
    """Probe list, distractor lists per size and image roots, from the flags or the synthetic set."""
    from Datasets.megaface import find_distractor_lists, read_distractor_list, read_probe_list

    if args.synthetic:
        if args.probe_list or args.distractor_lists:
            raise CLIError("give either --synthetic or --probe_list/--distractor_lists, not both")
        from Config.config import Config
        from Datasets import ensure_synthetic
        hw = parse_input_size(args.input_size) if args.input_size else None
        cfg = Config() if hw is None else Config(input_size=hw)
        syn = ensure_synthetic(cfg)
        probe_list, probe_root = syn.probe_list, syn.probe_root
        lists = {int(n): Path(p) for n, p in syn.distractor_lists.items()}
        distractor_root = syn.distractor_root
    else:
        if not args.probe_list or not args.distractor_lists:
            raise CLIError("no data: give --probe_list=... --distractor_lists=... (and image roots), or --synthetic")
        probe_list, probe_root, distractor_root = args.probe_list, args.probe_root, args.distractor_root
        src = Path(args.distractor_lists)
        if src.is_dir():
            lists = find_distractor_lists(src)
            if not lists:
                raise CLIError(f"--distractor_lists: no megaface_features_list.json_<N>_1 file in {src}")
        else:
            lists = {}
            for item in _parse_list(args.distractor_lists, str, "--distractor_lists"):
                paths = read_distractor_list(item)
                lists[len(paths)] = Path(item)
    if args.sizes:
        wanted = _parse_list(args.sizes, int, "--sizes")
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


def _union(distractors: dict[int, list[str]]) -> tuple[list[str], dict[int, "np.ndarray"]]:
    """All distractor paths once (the largest list first, in its order) and each size's indices into them."""
    import numpy as np
    order: dict[str, int] = {}
    for n in sorted(distractors, reverse=True):
        for p in distractors[n]:
            order.setdefault(p, len(order))
    index = {n: np.fromiter((order[p] for p in paths), dtype=np.int64, count=len(paths))
             for n, paths in distractors.items()}
    return list(order), index


# ---------------------------------------------------------------------------------------------- features
class _Extractor:
    """Loads the model once and turns an image list into normalised features (cached as .npy)."""

    def __init__(self, args, device):
        self.args, self.device = args, device
        self.model = self.meta = None
        self.cache = None
        if args.feature_cache.lower() != "none":
            self.cache = Path(args.feature_cache or Path(args.output_dir) / f"{args.name}_features")

    def _load_model(self):
        if self.model is None:
            from Utils.checkpoint import load_backbone
            if not self.args.checkpoint:
                raise CLIError("features must be extracted: give --checkpoint (or --*_features_dir matio features)")
            if not Path(self.args.checkpoint).exists():
                raise CLIError(f"--checkpoint: no such file: {self.args.checkpoint}")
            self.model, self.meta = load_backbone(self.args.checkpoint, self.device)
            hw = parse_input_size(self.args.input_size) if self.args.input_size else \
                [int(v) for v in self.meta["input_size"]]
            self.hw, self.color = hw, self.args.color_order or self.meta.get("color_order", "RGB")
            print(f"model {self.meta['backbone']} ({self.meta['embedding_size']}-d, input {hw[0]}x{hw[1]} "
                  f"{self.color}) on {self.device}, amp={self.args.amp}, flip={self.args.flip}", flush=True)

    def _key(self, role: str, root: str, paths: list[str]) -> str:
        ckpt = Path(self.args.checkpoint)
        stat = ckpt.stat() if ckpt.is_file() else None
        text = json.dumps([role, str(ckpt.resolve()), stat.st_mtime_ns if stat else 0, stat.st_size if stat else 0,
                           str(Path(root).resolve()), self.args.flip, self.args.amp, self.args.input_size,
                           self.args.color_order, paths])
        return hashlib.sha1(text.encode()).hexdigest()

    def features(self, role: str, root: str, paths: list[str], matio_dir: str):
        import numpy as np
        from Utils.megaface import l2_normalize
        if matio_dir:
            from Utils.matio import read_feature_files
            feats = read_feature_files(matio_dir, paths, self.args.features_suffix,
                                       progress=not self.args.no_progress)
            return l2_normalize(feats), f"matio files in {matio_dir}"
        key = self._key(role, root, paths)
        if self.cache is not None:
            npy, meta = self.cache / f"{role}.npy", self.cache / f"{role}.json"
            if npy.is_file() and meta.is_file() and json.loads(meta.read_text()).get("key") == key:
                feats = np.load(npy, mmap_mode="r")  # only one search chunk at a time is read into memory
                if feats.shape[0] == len(paths):
                    return feats, f"cache {npy}"
        self._load_model()
        from Datasets.megaface import MegaFaceImages
        from Utils.features import extract_embeddings
        dataset = MegaFaceImages(root, paths, self.hw, self.color)
        emb, emb_flip = extract_embeddings(self.model, dataset, self.args.batch_size, self.device, self.args.amp,
                                           self.args.num_workers, desc=f"{role} features",
                                           progress=not self.args.no_progress)
        if self.args.flip == "sum":
            emb = emb + emb_flip
        elif self.args.flip == "concat":
            emb = np.concatenate([emb, emb_flip], axis=1)
        feats = l2_normalize(emb)
        if self.cache is not None:
            self.cache.mkdir(parents=True, exist_ok=True)
            tmp = self.cache / f".{role}.tmp.npy"
            np.save(tmp, feats)
            tmp.replace(self.cache / f"{role}.npy")
            (self.cache / f"{role}.json").write_text(json.dumps({"key": key, "count": len(paths), "root": root}))
        return feats, "extracted"


# ---------------------------------------------------------------------------------------------- run
def _run(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    check_counts(args, ("batch_size", "max_rank", "chunk_size"))
    fars = _parse_list(args.fars, float, "--fars")
    if not fars or any(not 0 < f <= 1 for f in fars):
        raise CLIError(f"--fars: expected values in (0, 1], got '{args.fars}'")
    if not 0 < args.tail_far <= 1:
        raise CLIError(f"--tail_far: expected a value in (0, 1], got {args.tail_far}")
    inputs = _inputs(args)

    import numpy as np

    from Datasets.megaface import facescrub_noise_mask, megaface_noise_mask, read_noise_list
    from Utils.features import resolve_device
    from Utils.megaface import evaluate_megaface, identity_scores, replace_with_identity_centres

    device = resolve_device(args.device)
    if args.amp == "fp16" and device.type != "cuda":
        raise CLIError("--amp=fp16 needs a CUDA device; use --amp=bf16 on CPU")
    probes, distractors = inputs["probes"], inputs["distractors"]
    union, index = _union(distractors)
    print(f"probes: {len(probes)} images of {len(probes.identities)} identities ({inputs['probe_list']}); "
          f"distractor lists: {', '.join(f'{n:,}' for n in distractors)} ({len(union):,} distinct images)", flush=True)

    extractor = _Extractor(args, device)
    start = time.perf_counter()
    p_feats, p_src = extractor.features("probes", inputs["probe_root"], probes.paths, args.probe_features_dir)
    d_feats, d_src = extractor.features("distractors", inputs["distractor_root"], union,
                                        args.distractor_features_dir)
    extract_seconds = time.perf_counter() - start
    if p_feats.shape[1] != d_feats.shape[1]:
        raise CLIError(f"probe features are {p_feats.shape[1]}-d but distractor features {d_feats.shape[1]}-d")
    print(f"features: probes {p_feats.shape} ({p_src}), distractors {d_feats.shape} ({d_src})", flush=True)

    if args.write_matio:
        from Utils.matio import write_feature_files
        suffix = args.features_suffix or f"_{args.name}.bin"
        out = Path(args.write_matio)
        write_feature_files(out / "facescrub", probes.paths, p_feats, suffix, progress=not args.no_progress)
        write_feature_files(out / "megaface", union, d_feats, suffix, progress=not args.no_progress)
        print(f"wrote devkit feature files under {out}/facescrub and {out}/megaface (suffix '{suffix}')")

    cleaning = {"facescrub": bool(args.facescrub_noises), "megaface": bool(args.megaface_noises)}
    probe_feats = np.asarray(p_feats, dtype=np.float32)
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

    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.name).strip("_") or "megaface"
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
        "command": " ".join([prog, *argv]),
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(report, indent=1))
    written = [json_path]
    if not args.no_plots and results:
        from Utils.megaface_plots import plot_cmc, plot_rank1_curve, plot_roc
        written += [plot_cmc(results, out_dir / f"{stem}_cmc.png"), plot_rank1_curve(results, out_dir / f"{stem}_rank1.png"),
                    plot_roc(results, out_dir / f"{stem}_roc.png")]
    print(f"cleaning: {'on' if any(v for k, v in cleaning.items() if k in ('facescrub', 'megaface')) else 'off'}; "
          f"wrote {', '.join(map(str, written))}")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the evaluation; returns the exit status (0, or 2 after printing one 'error: ...' line)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or Path(sys.argv[0]).name or "MegaFace_Evaluation.py"
    return exit_status(lambda: _run(argv, prog))


if __name__ == "__main__":
    sys.exit(main())
