"""10-fold verification time: the vectorised protocols of Utils/verification.py against plain loops over thresholds.

The loops are written here the way the references are (Face_Pytorch getThreshold/getAccuracy: 20,001 thresholds,
one masked count per threshold; insightface calculate_roc/calculate_val: 400 + 4,000 thresholds), on the same
random embeddings. Two rows per protocol: the whole 10-fold evaluation from embeddings (scores included), and the
threshold search alone given the same scores. Every row asserts identical per-fold accuracies and thresholds.

    python bench/bench_verification.py                      # 6000 pairs, 512-d, as LFW with a ResNet
    python bench/bench_verification.py --pairs=1200 --dim=128 --repeat=1   # quick
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, machine_line, print_table, time_call  # noqa: E402
from Utils.evaluation import verification as V  # noqa: E402

# -------------------------------------------------------------------------------------------- loop baselines


def loop_fp_threshold(scores, issame):
    thresholds = V.FACE_PYTORCH_THRESHOLDS
    acc = np.zeros(len(thresholds))
    for k, t in enumerate(thresholds):
        acc[k] = (np.sum(scores[issame] > t) + np.sum(scores[~issame] < t)) / len(scores)
    return float(np.mean(thresholds[acc == acc.max()]))


def loop_fp_accuracy(scores, issame, t):
    return (np.sum(scores[issame] > t) + np.sum(scores[~issame] < t)) / len(scores)


def loop_face_pytorch(emb, flip, issame, folds):
    fl = np.concatenate([emb[0::2], flip[0::2]], 1).astype(np.float64)
    fr = np.concatenate([emb[1::2], flip[1::2]], 1).astype(np.float64)
    accs, thrs = [], []
    for i in np.unique(folds):
        train, test = folds != i, folds == i
        mu = np.mean(np.concatenate([fl[train], fr[train]]), 0)
        l, r = fl - mu, fr - mu
        l /= np.sqrt(np.sum(l ** 2, 1))[:, None]
        r /= np.sqrt(np.sum(r ** 2, 1))[:, None]
        s = np.sum(l * r, 1)
        t = loop_fp_threshold(s[train], issame[train])
        thrs.append(t)
        accs.append(loop_fp_accuracy(s[test], issame[test], t))
    return np.array(accs), np.array(thrs)


def loop_insightface_search(dist, issame, train, test):
    thresholds = V.INSIGHTFACE_THRESHOLDS
    acc = np.zeros(len(thresholds))
    d, y = dist[train], issame[train]
    for k, t in enumerate(thresholds):
        p = d < t
        acc[k] = (np.sum(p & y) + np.sum(~p & ~y)) / d.size
    best = thresholds[np.argmax(acc)]
    p = dist[test] < best
    accuracy = (np.sum(p & issame[test]) + np.sum(~p & ~issame[test])) / p.size
    far = np.zeros(len(V.INSIGHTFACE_VAL_THRESHOLDS))
    for k, t in enumerate(V.INSIGHTFACE_VAL_THRESHOLDS):
        far[k] = float(np.sum((d < t) & ~y)) / float(np.sum(~y))
    t_val = V._slinear_at(far, V.INSIGHTFACE_VAL_THRESHOLDS, 1e-3) if far.max() >= 1e-3 else 0.0
    val, far_test = V.insightface_val_far(dist[test], issame[test], t_val)
    return accuracy, best, val, far_test


def loop_insightface(emb, flip, issame, folds, dist=None):
    if dist is None:
        e = emb.astype(np.float64) + flip.astype(np.float64)
        e /= np.sqrt(np.sum(e ** 2, 1))[:, None]
        dist = np.sum((e[0::2] - e[1::2]) ** 2, 1)
    out = [loop_insightface_search(dist, issame, folds != i, folds == i) for i in np.unique(folds)]
    return tuple(np.array(c) for c in zip(*out))


# -------------------------------------------------------------------------------------------- vectorised, same outputs


def vec_fp_search(scores_by_fold, issame, folds):
    accs, thrs = [], []
    for row, i in enumerate(np.unique(folds)):
        train, test = folds != i, folds == i
        t = V.face_pytorch_best_threshold(scores_by_fold[row][train], issame[train])
        thrs.append(t)
        accs.append(V.face_pytorch_accuracy(scores_by_fold[row][test], issame[test], t))
    return np.array(accs), np.array(thrs)


def vec_insightface_search(dist, issame, folds):
    out = []
    for i in np.unique(folds):
        train, test = folds != i, folds == i
        best = V.INSIGHTFACE_THRESHOLDS[V.insightface_best_threshold_index(dist[train], issame[train])]
        acc = V.insightface_accuracy(dist[test], issame[test], best)
        val, far = V.insightface_val_far(dist[test], issame[test],
                                         V.insightface_val_threshold(dist[train], issame[train], 1e-3))
        out.append((acc, best, val, far))
    return tuple(np.array(c) for c in zip(*out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the vectorised code (median reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n, d = args.pairs, args.dim
    issame = np.zeros(n, dtype=bool)
    folds = V.kfold_ids(n)
    for f in range(10):
        block = np.flatnonzero(folds == f)
        issame[block[: len(block) // 2]] = True
    centre = rng.standard_normal((2 * n, d)).astype(np.float32)
    centre[1::2][issame] = centre[0::2][issame]
    # overlapping classes, ~90% accuracy at any dim: cosine noise shrinks as 1/sqrt(d), so the shared part does too
    emb = (0.6 * (128 / d) ** 0.25 * centre + rng.standard_normal((2 * n, d))).astype(np.float32)
    flip = (emb + 0.3 * rng.standard_normal(emb.shape)).astype(np.float32)

    rows = []

    def row(name, loop_fn, vec_fn, same):
        loop_out = loop_fn()
        loop_s = time_call(loop_fn, warmup=0, repeat=1)
        vec_out = vec_fn()
        vec_s = time_call(vec_fn, warmup=1, repeat=args.repeat)
        identical = same(loop_out, vec_out)
        assert identical, f"{name}: vectorised results differ from the loop"
        rows.append([name, f"{loop_s:.3f}", f"{vec_s * 1e3:.1f}", f"{loop_s / vec_s:.0f}x", "yes"])
        return loop_out

    def equal(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    def face_pytorch_full():
        r = V.face_pytorch_protocol(emb, flip, issame, folds)
        return r.fold_accuracies, r.fold_thresholds

    def if_full():
        r = V.insightface_protocol(emb, flip, issame, folds)
        return r.fold_accuracies, r.fold_thresholds, np.array(r.extra["fold_val"]), np.array(r.extra["fold_far"])

    fp_out = row("face_pytorch: 10 folds from embeddings", lambda: loop_face_pytorch(emb, flip, issame, folds), face_pytorch_full, equal)
    scores = V.face_pytorch_fold_scores(emb, flip, folds)
    row("face_pytorch: threshold search only", lambda: vec_fp_search_loop(scores, issame, folds),
        lambda: vec_fp_search(scores, issame, folds), equal)
    row("insightface: 10 folds from embeddings", lambda: loop_insightface(emb, flip, issame, folds), if_full, equal)
    dist = V.insightface_distances(emb, flip)
    row("insightface: threshold search only", lambda: loop_insightface(emb, flip, issame, folds, dist),
        lambda: vec_insightface_search(dist, issame, folds), equal)

    print(f"# {command_line()}")
    print(f"# {machine_line()}")
    print(f"# {n} pairs, {d}-d embeddings (+ flips), 10 folds; face_pytorch accuracy {100 * np.mean(fp_out[0]):.2f}%")
    print_table(["protocol / part", "loop (s)", "vectorised (ms)", "speed-up", "identical"], rows)


def vec_fp_search_loop(scores_by_fold, issame, folds):
    """The loop baseline of the threshold search alone, on the vectorised code's own scores."""
    accs, thrs = [], []
    for row, i in enumerate(np.unique(folds)):
        train, test = folds != i, folds == i
        t = loop_fp_threshold(scores_by_fold[row][train], issame[train])
        thrs.append(t)
        accs.append(loop_fp_accuracy(scores_by_fold[row][test], issame[test], t))
    return np.array(accs), np.array(thrs)


if __name__ == "__main__":
    main()
