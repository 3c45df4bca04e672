"""IJB-C 1:1 at full size: time and peak memory of the chunked template-pair scoring against a naive full
gather, from random features (23,124 templates x 512-d, 15,658,489 pairs with IJB-C's 19,557 genuine ones), and of
pooling 469,375 image features into the templates.

    python bench/bench_ijb.py                       # full size; the naive gather on 1/32 of the pairs
    python bench/bench_ijb.py --naive_fraction=0.01 --chunk_size=50000

The naive baseline gathers both sides of every pair at once (2 x pairs x 512 x 4 bytes: 64 GB for the full list,
more than this machine has), so it runs on a fraction of the pairs, with the chunked scoring timed on the same
fraction for the ratio; its full-size memory is the measured figure scaled by the pair count. Peak memory is the
resident set above what the features, pair lists and scores already take (RSS polled every 10 ms).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.bench_megaface import PeakRSS  # noqa: E402
from bench.common import command_line, machine_line, print_table  # noqa: E402
from Utils.evaluation.ijb.templates import get_pooling, image_features, pool_templates  # noqa: E402
from Utils.evaluation.ijb.verify11 import evaluate_1to1, pair_scores  # noqa: E402

IJBC_IMAGES, IJBC_TEMPLATES, IJBC_PAIRS, IJBC_GENUINE = 469_375, 23_124, 15_658_489, 19_557


def _measure(fn):
    with PeakRSS() as mem:
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
    return out, seconds, mem.extra_gb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=IJBC_IMAGES, help="images pooled into the templates (0: skip)")
    p.add_argument("--templates", type=int, default=IJBC_TEMPLATES)
    p.add_argument("--pairs", type=int, default=IJBC_PAIRS)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--chunk_size", type=int, default=50_000)
    p.add_argument("--naive_fraction", type=float, default=1 / 32)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    feats = rng.standard_normal((args.templates, args.dim), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    r1 = rng.integers(0, args.templates, args.pairs)
    r2 = rng.integers(0, args.templates, args.pairs)
    same = np.zeros(args.pairs, dtype=bool)
    same[rng.choice(args.pairs, round(args.pairs * IJBC_GENUINE / IJBC_PAIRS), replace=False)] = True
    n_sub = max(1, round(args.pairs * args.naive_fraction))

    pair_scores(feats, r1[:args.chunk_size], r2[:args.chunk_size], args.chunk_size, progress=False)  # warm-up
    auto, t_auto, m_auto = _measure(lambda: pair_scores(feats, r1, r2, args.chunk_size, progress=False))
    chunked, t_chunk, m_chunk = _measure(lambda: pair_scores(feats, r1, r2, args.chunk_size, progress=False,
                                                             method="gather"))
    assert np.allclose(auto, chunked, atol=1e-5)
    auto_route = "gram" if args.pairs * 40 > args.templates ** 2 else "gather"
    _, t_roc, m_roc = _measure(lambda: evaluate_1to1(chunked, same))
    sub_chunked, t_sub_chunk, m_sub_chunk = _measure(
        lambda: pair_scores(feats, r1[:n_sub], r2[:n_sub], args.chunk_size, progress=False, method="gather"))
    naive, t_naive, m_naive = _measure(lambda: np.einsum("ij,ij->i", feats[r1[:n_sub]], feats[r2[:n_sub]]))
    assert np.allclose(naive, sub_chunked, atol=1e-5) and np.allclose(sub_chunked, chunked[:n_sub], atol=1e-6)

    pool_rows = []
    if args.images:
        # image + flip embeddings as the cache holds them, ~3 images per media, templates of random size
        emb = rng.standard_normal((args.images, args.dim), dtype=np.float32)
        flip = rng.standard_normal((args.images, args.dim), dtype=np.float32)
        tids = np.sort(rng.integers(0, args.templates, args.images))
        mids = np.arange(args.images) // 3
        pooling = get_pooling("media")
        _, t_pool, m_pool = _measure(lambda: pool_templates(image_features(emb, flip, pooling), tids, mids, pooling))
        pool_rows = [["image features + media/template pooling", f"{args.images:,} images", f"{t_pool:.2f}",
                      f"{m_pool:.3f}"]]
        del emb, flip

    scale = args.pairs / n_sub
    print(f"# {machine_line()}\n# {command_line()}\n# {args.templates:,} templates x {args.dim}-d, "
          f"{args.pairs:,} pairs ({int(same.sum()):,} genuine); chunk {args.chunk_size:,} pairs; "
          f"naive on {n_sub:,} pairs; measured under load\n")
    print_table(["step", "pairs", "seconds", "peak RSS above inputs (GB)"], pool_rows + [
        [f"pair_scores default (auto: {auto_route} route)", f"{args.pairs:,}", f"{t_auto:.2f}", f"{m_auto:.3f}"],
        ["pair_scores gather route (chunked)", f"{args.pairs:,}", f"{t_chunk:.2f}", f"{m_chunk:.3f}"],
        ["TAR@FAR + AUC (sklearn roc_curve)", f"{args.pairs:,}", f"{t_roc:.2f}", f"{m_roc:.3f}"],
        ["gather route (chunked)", f"{n_sub:,}", f"{t_sub_chunk:.2f}", f"{m_sub_chunk:.3f}"],
        ["naive full gather", f"{n_sub:,}", f"{t_naive:.2f}", f"{m_naive:.3f}"],
        ["naive full gather (scaled, not run)", f"{args.pairs:,}", f"~{t_naive * scale:.0f}",
         f"~{m_naive * scale:.1f}"],
    ])
    print(f"\nfull size: default / gather route time {t_auto / t_chunk:.2f}x")
    print(f"same {n_sub:,} pairs: naive / chunked time {t_naive / t_sub_chunk:.2f}x, "
          f"peak memory {m_naive / max(m_sub_chunk, 1e-3):.1f}x; full size: default route peak {m_auto:.3f} GB vs naive "
          f"~{m_naive * scale:.1f} GB (x{m_naive * scale / max(m_auto, 1e-3):.0f})")


if __name__ == "__main__":
    main()
