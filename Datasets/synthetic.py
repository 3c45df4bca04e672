"""The embedded synthetic face set, written to disk in the real formats so the default run needs no download.

`ensure_synthetic(cfg)` generates once (with progress) under cfg.data_root, in a folder named by the generator
parameters, and reuses it afterwards:

    synthetic_<ids>x<imgs>_d<difficulty>_s<seed>_<HxW>_<hash>/
        meta.json                        parameters, counts, colour order (RGB), generation time
        train/id_00000/0000.jpg ...      training identities (image folder)
        train_list.txt                   "id_00000/0000.jpg 0" lines (the folder + list format)
        val/v_00000/v_00000_0001.jpg     held-out identities, LFW naming
        val_pairs.txt                    LFW pairs.txt layout: "10<TAB>n", then per fold n matched + n mismatched
        megaface/facescrub/...           probe identities (FaceScrub role)
        megaface/megaface/...            distractors, one image per identity
        megaface/templatelists/facescrub_features_list.json            {"path": [...], "id": [...]}
        megaface/templatelists/megaface_features_list.json_<n>_1       {"path": [...]}, n = 10, 100, 1000, ...

Verification folds use disjoint identities (as LFW's do), and none of them is a training identity.
The set is built in a temporary folder and renamed into place, so an interrupted run leaves no half set and
concurrent ranks never read a partial one.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .folder import write_list_file
from .pairs import write_lfw_pairs
from .synthetic_faces import GENERATOR_VERSION, make_identity, render_face_jpeg

__all__ = ["SyntheticPaths", "SyntheticSpec", "ensure_synthetic", "synthetic_spec"]

# Roles keep the populations disjoint: the same index in two roles is two unrelated people.
ROLE_TRAIN, ROLE_VAL, ROLE_PROBE, ROLE_DISTRACTOR = 0, 1, 2, 3
VAL_IMAGES_PER_IDENTITY = 6
MEGAFACE_PROBE_IMAGES = 10  # per probe identity (FaceScrub has ~44)


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything the generated files depend on (the cache key)."""
    identities: int
    images_per_identity: int
    val_pairs: int
    difficulty: float
    seed: int
    height: int
    width: int
    probe_identities: int = 40
    distractors: int = 1000
    probe_images: int = MEGAFACE_PROBE_IMAGES
    version: int = GENERATOR_VERSION

    def key(self) -> str:
        digest = hashlib.sha1(json.dumps(self.__dict__, sort_keys=True).encode()).hexdigest()[:8]
        return (f"synthetic_{self.identities}x{self.images_per_identity}_d{self.difficulty:g}_s{self.seed}_"
                f"{self.height}x{self.width}_{digest}")


@dataclass
class SyntheticPaths:
    """Where the generated set lives (all absolute)."""
    root: str
    train_root: str
    train_list: str
    num_classes: int
    num_train_images: int
    val_root: str
    val_pairs: str
    megaface_root: str
    probe_root: str
    probe_list: str
    distractor_root: str
    distractor_lists: dict[int, str] = field(default_factory=dict)
    meta: str = ""


def synthetic_spec(cfg) -> SyntheticSpec:
    h, w = cfg.input_hw
    for key, low in (("synthetic_identities", 2), ("synthetic_images_per_identity", 1), ("synthetic_val_pairs", 20),
                     ("synthetic_probe_identities", 0), ("synthetic_distractors", 0)):
        if int(getattr(cfg, key)) < low:
            raise ValueError(f"{key}: must be at least {low}, got {getattr(cfg, key)}")
    return SyntheticSpec(int(cfg.synthetic_identities), int(cfg.synthetic_images_per_identity),
                         int(cfg.synthetic_val_pairs), round(float(cfg.synthetic_difficulty), 4),
                         int(cfg.synthetic_seed), h, w, int(cfg.synthetic_probe_identities),
                         int(cfg.synthetic_distractors))


def _paths(root: Path, spec: SyntheticSpec) -> SyntheticPaths:
    mf = root / "megaface"
    sizes = [n for n in (10, 100, 1000, 10_000, 100_000, 1_000_000) if n < spec.distractors] + [spec.distractors]
    return SyntheticPaths(
        root=str(root), train_root=str(root / "train"), train_list=str(root / "train_list.txt"),
        num_classes=spec.identities, num_train_images=spec.identities * spec.images_per_identity,
        val_root=str(root / "val"), val_pairs=str(root / "val_pairs.txt"), megaface_root=str(mf),
        probe_root=str(mf / "facescrub"), probe_list=str(mf / "templatelists" / "facescrub_features_list.json"),
        distractor_root=str(mf / "megaface"),
        distractor_lists={n: str(mf / "templatelists" / f"megaface_features_list.json_{n}_1") for n in sizes},
        meta=str(root / "meta.json"))


# ---------------------------------------------------------------------------------------------- the plan
def _val_plan(spec: SyntheticSpec) -> tuple[int, list, list]:
    """Held-out identities split into 10 folds; per fold n matched and n mismatched pairs, no pair repeated."""
    n = max(1, spec.val_pairs // 20)
    m = VAL_IMAGES_PER_IDENTITY
    per_fold = max(2, -(-n // (m * (m - 1) // 2)) * 2)  # enough identities for n distinct matched pairs, x2 spare
    rng = np.random.default_rng([spec.seed, 0xFA11])
    matched, mismatched = [], []
    for f in range(10):
        ids = [f"v_{f * per_fold + i:05d}" for i in range(per_fold)]
        combos = [(a, i, j) for a in ids for i in range(1, m + 1) for j in range(i + 1, m + 1)]
        pick = rng.choice(len(combos), n, replace=False)
        matched.append([combos[k] for k in pick])
        seen: set = set()
        mm = []
        while len(mm) < n:
            a, b = rng.choice(per_fold, 2, replace=False)
            i, j = rng.integers(1, m + 1, 2)
            key = (min(a, b), max(a, b), i, j)
            if key not in seen:
                seen.add(key)
                mm.append((ids[a], int(i), ids[b], int(j)))
        mismatched.append(mm)
    return 10 * per_fold, matched, mismatched


def _jobs(spec: SyntheticSpec, root: Path, n_val_ids: int) -> list[tuple[int, int, list[tuple[int, str]]]]:
    """(role, identity index, [(image index, output path)]) per identity."""
    jobs = []
    for i in range(spec.identities):
        jobs.append((ROLE_TRAIN, i, [(k, str(root / "train" / f"id_{i:05d}" / f"{k:04d}.jpg"))
                                     for k in range(spec.images_per_identity)]))
    for i in range(n_val_ids):
        name = f"v_{i:05d}"
        jobs.append((ROLE_VAL, i, [(k, str(root / "val" / name / f"{name}_{k:04d}.jpg"))
                                   for k in range(1, VAL_IMAGES_PER_IDENTITY + 1)]))
    mf = root / "megaface"
    for i in range(spec.probe_identities):
        name = f"probe_{i:03d}"
        jobs.append((ROLE_PROBE, i, [(k, str(mf / "facescrub" / name / f"{name}_{k}.jpg"))
                                     for k in range(spec.probe_images)]))
    for start in range(0, spec.distractors, 50):  # one image each: batch identities per job
        stop = min(start + 50, spec.distractors)
        jobs.append((ROLE_DISTRACTOR, -1, [(i, _distractor_path(mf, i)) for i in range(start, stop)]))
    return jobs


def _distractor_path(mf: Path, i: int) -> str:
    return str(mf / "megaface" / f"{i // 100:03d}" / f"{i:07d}_0.jpg")


def _render_job(args) -> int:
    spec, (role, ident, items) = args
    hw = (spec.height, spec.width)
    person = make_identity(spec.seed, role, ident) if ident >= 0 else None
    os.makedirs(os.path.dirname(items[0][1]), exist_ok=True)
    for k, path in items:
        if ident >= 0:
            data = render_face_jpeg(spec.seed, role, ident, k, spec.difficulty, hw, person)
        else:  # distractor k is identity k's only image
            os.makedirs(os.path.dirname(path), exist_ok=True)
            data = render_face_jpeg(spec.seed, role, k, 0, spec.difficulty, hw)
        with open(path, "wb") as f:
            f.write(data)
    return len(items)


# ---------------------------------------------------------------------------------------------- writing
def _generate(spec: SyntheticSpec, tmp: Path, workers: int) -> None:
    n_val_ids, matched, mismatched = _val_plan(spec)
    jobs = _jobs(spec, tmp, n_val_ids)
    total = sum(len(j[2]) for j in jobs)
    bar = tqdm(total=total, desc="generating synthetic faces", unit="img", smoothing=0.1)
    try:
        if workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                for done in pool.imap_unordered(_render_job, [(spec, j) for j in jobs], chunksize=4):
                    bar.update(done)
        else:
            for j in jobs:
                bar.update(_render_job((spec, j)))
    finally:
        bar.close()

    names = [f"id_{i:05d}/{k:04d}.jpg" for i in range(spec.identities) for k in range(spec.images_per_identity)]
    labels = [i for i in range(spec.identities) for _ in range(spec.images_per_identity)]
    write_list_file(tmp / "train_list.txt", names, labels)
    write_lfw_pairs(tmp / "val_pairs.txt", matched, mismatched)

    lists = tmp / "megaface" / "templatelists"
    lists.mkdir(parents=True, exist_ok=True)
    probes = [(f"probe_{i:03d}/probe_{i:03d}_{k}.jpg", f"probe_{i:03d}")
              for i in range(spec.probe_identities) for k in range(spec.probe_images)]
    with open(lists / "facescrub_features_list.json", "w") as f:
        json.dump({"path": [p for p, _ in probes], "id": [i for _, i in probes]}, f)
    order = np.random.default_rng([spec.seed, 0xD15]).permutation(spec.distractors)
    rel = [os.path.relpath(_distractor_path(tmp / "megaface", int(i)), tmp / "megaface" / "megaface") for i in order]
    for n, path in _paths(tmp, spec).distractor_lists.items():  # nested lists, as in the devkit
        with open(path, "w") as f:
            json.dump({"path": rel[:n]}, f)


class _FileLock:
    """An exclusive lock on a file (POSIX flock): concurrent ranks wait for one generator instead of racing."""

    def __init__(self, path: Path):
        self.path, self.fh = path, None

    def __enter__(self) -> "_FileLock":
        try:
            import fcntl  # POSIX only, hence imported here
        except ImportError:  # no flock (Windows): the atomic rename below still keeps readers safe
            return self
        self.fh = open(self.path, "a")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()  # closing releases the lock


def ensure_synthetic(cfg, workers: int | None = None) -> SyntheticPaths:
    """Generate the synthetic set for `cfg` under cfg.data_root unless it is already there; return its paths.

    `workers` processes render images (default: the CPU count, at most 8).
    """
    spec = synthetic_spec(cfg)
    base = Path(cfg.data_root).expanduser().resolve()
    final = base / spec.key()
    paths = _paths(final, spec)
    if (final / "meta.json").is_file():
        return paths
    base.mkdir(parents=True, exist_ok=True)
    with _FileLock(base / f".{spec.key()}.lock"):
        if (final / "meta.json").is_file():  # another process generated it while this one waited
            return paths
        _build(spec, base, final, paths, workers or min(8, os.cpu_count() or 1))
    return paths


def _build(spec: SyntheticSpec, base: Path, final: Path, paths: SyntheticPaths, workers: int) -> None:
    tmp = base / f".{spec.key()}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        start = time.perf_counter()
        _generate(spec, tmp, workers)
        seconds = time.perf_counter() - start
        meta = dict(spec.__dict__, color_order="RGB", generator="Datasets.synthetic_faces",
                    num_train_images=paths.num_train_images, num_classes=paths.num_classes,
                    val_pairs_written=20 * max(1, spec.val_pairs // 20), generation_seconds=round(seconds, 2),
                    workers=workers)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if final.exists() and not (final / "meta.json").is_file():
            shutil.rmtree(final)  # a folder left without its completion marker is not a usable set
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
