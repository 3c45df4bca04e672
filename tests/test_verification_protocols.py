"""Both 10-fold protocols against loop-over-thresholds references written here from the published code's semantics.

The references follow Face_Pytorch's evaluation_10_fold (getThreshold / getAccuracy) and insightface's
calculate_roc / calculate_val line by line: per fold, every threshold in turn, counts by boolean masks. The
vectorised code must give the same per-fold accuracies and thresholds, exactly, including ties.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from Utils.evaluation import verification as V

# ------------------------------------------------------------------------------------------------ references


def ref_seed_scores(emb, flip, folds, i):
    """Face_Pytorch: fl/fr = [emb, flip] features, mu of the training folds' fl and fr, normalise, cosine."""
    fl = np.concatenate([emb[0::2], flip[0::2]], 1).astype(np.float64)
    fr = np.concatenate([emb[1::2], flip[1::2]], 1).astype(np.float64)
    val = folds != i
    mu = np.mean(np.concatenate((fl[val, :], fr[val, :]), 0), 0)[None, :]
    fl, fr = fl - mu, fr - mu
    fl = fl / np.sqrt(np.sum(np.power(fl, 2), 1))[:, None]
    fr = fr / np.sqrt(np.sum(np.power(fr, 2), 1))[:, None]
    return np.sum(np.multiply(fl, fr), 1)


def ref_get_accuracy(scores, flags, threshold):
    p = np.sum(scores[flags == 1] > threshold)
    n = np.sum(scores[flags == -1] < threshold)
    return 1.0 * (p + n) / len(scores)


def ref_get_threshold(scores, flags, thr_num=10000):
    """getThreshold; the per-side selections are hoisted out of the loop (same counts, half the time)."""
    thresholds = np.arange(-thr_num, thr_num + 1) * 1.0 / thr_num
    pos, neg = scores[flags == 1], scores[flags == -1]
    accs = np.zeros((2 * thr_num + 1, 1))
    for k in range(2 * thr_num + 1):
        accs[k] = 1.0 * (np.sum(pos > thresholds[k]) + np.sum(neg < thresholds[k])) / len(scores)
    best = np.squeeze(accs == np.max(accs))
    return np.mean(thresholds[best])


def ref_seed(emb, flip, issame, folds):
    flags = np.where(issame, 1, -1)
    accs, thrs = [], []
    for i in np.unique(folds):
        scores = ref_seed_scores(emb, flip, folds, i)
        val, test = folds != i, folds == i
        t = ref_get_threshold(scores[val], flags[val])
        thrs.append(t)
        accs.append(ref_get_accuracy(scores[test], flags[test], t))
    return np.array(accs), np.array(thrs)


def ref_calculate_accuracy(threshold, dist, actual_issame):
    predict = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict, actual_issame))
    tn = np.sum(np.logical_and(np.logical_not(predict), np.logical_not(actual_issame)))
    return float(tp + tn) / dist.size


def ref_calculate_val_far(threshold, dist, actual_issame):
    predict = np.less(dist, threshold)
    ta = np.sum(np.logical_and(predict, actual_issame))
    fa = np.sum(np.logical_and(predict, np.logical_not(actual_issame)))
    return float(ta) / float(np.sum(actual_issame)), float(fa) / float(np.sum(np.logical_not(actual_issame)))


def ref_slinear(x, y, xv):
    """interp1d(kind='slinear') as scipy < 1.9 evaluated it on repeated x: a degree-1 B-spline whose interval for xv
    starts at the LAST knot <= xv; de Boor's two weights (zero on an empty interval)."""
    n = len(x)
    upper = n - 1
    for j in range(1, n):  # first point strictly beyond xv
        if x[j] > xv:
            upper = j
            break
    xa, xb = x[upper - 1], x[upper]
    if xa == xb:
        return 0.0
    w = 1.0 / (xb - xa)
    return 0.0 + y[upper - 1] * (w * (xb - xv)) + y[upper] * (w * (xv - xa))


def ref_insightface(emb, flip, issame, folds, far_target=1e-3):
    embeddings = emb.astype(np.float64) + flip.astype(np.float64)
    embeddings = normalize(embeddings)
    dist = np.sum(np.square(np.subtract(embeddings[0::2], embeddings[1::2])), 1)
    t_acc = np.arange(0, 4, 0.01)
    t_val = np.arange(0, 4, 0.001)
    accs, thrs, vals, fars = [], [], [], []
    for i in np.unique(folds):
        train, test = folds != i, folds == i
        acc_train = np.zeros(len(t_acc))
        for k, t in enumerate(t_acc):
            acc_train[k] = ref_calculate_accuracy(t, dist[train], issame[train])
        best = np.argmax(acc_train)
        thrs.append(t_acc[best])
        accs.append(ref_calculate_accuracy(t_acc[best], dist[test], issame[test]))
        far_train = np.zeros(len(t_val))
        neg = dist[train][~issame[train]]  # calculate_val_far's FAR, the selection hoisted out of the loop
        for k, t in enumerate(t_val):
            far_train[k] = float(np.sum(np.less(neg, t))) / float(neg.size)
        threshold = ref_slinear(far_train, t_val, far_target) if np.max(far_train) >= far_target else 0.0
        v, f = ref_calculate_val_far(threshold, dist[test], issame[test])
        vals.append(v)
        fars.append(f)
    return np.array(accs), np.array(thrs), np.mean(vals), np.mean(fars), dist


# ------------------------------------------------------------------------------------------------ data


def make_pairs(n_pairs, dim, separation, seed):
    """Embeddings of n_pairs pairs, half the same identity: same pairs share a centre, `separation` scales it."""
    rng = np.random.default_rng(seed)
    issame = np.zeros(n_pairs, dtype=bool)
    for f in range(10):  # each fold: first half same, second half different, like pairs.txt
        block = np.arange(f * n_pairs // 10, (f + 1) * n_pairs // 10)
        issame[block[: len(block) // 2]] = True
    centres = rng.standard_normal((2 * n_pairs, dim))
    centres[1::2][issame] = centres[0::2][issame]
    emb = (separation * centres + rng.standard_normal((2 * n_pairs, dim))).astype(np.float32)
    flip = (emb + 0.3 * rng.standard_normal(emb.shape)).astype(np.float32)
    return emb, flip, issame, V.kfold_ids(n_pairs)


CASES = {"random": (0.0, 1), "overlapping": (0.5, 2), "well_separated": (8.0, 3)}


@pytest.mark.parametrize("case", list(CASES))
def test_seed_protocol_equals_loop(case):
    separation, seed = CASES[case]
    emb, flip, issame, folds = make_pairs(200, 24, separation, seed)
    ref_acc, ref_thr = ref_seed(emb, flip, issame, folds)
    got = V.face_pytorch_protocol(emb, flip, issame, folds)
    np.testing.assert_array_equal(got.fold_accuracies, ref_acc)
    np.testing.assert_array_equal(got.fold_thresholds, ref_thr)
    if case == "well_separated":
        assert got.accuracy == 1.0
    for i in range(10):  # each pair's score comes from its own held-out fold's mean
        test = folds == i
        np.testing.assert_allclose(got.scores[test], ref_seed_scores(emb, flip, folds, i)[test], rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_insightface_protocol_equals_loop(case):
    separation, seed = CASES[case]
    emb, flip, issame, folds = make_pairs(400, 24, separation, seed)
    ref_acc, ref_thr, ref_val, ref_far, ref_dist = ref_insightface(emb, flip, issame, folds)
    got = V.insightface_protocol(emb, flip, issame, folds)
    np.testing.assert_array_equal(-got.scores, ref_dist)  # the same floats as insightface's own arithmetic
    np.testing.assert_array_equal(got.fold_accuracies, ref_acc)
    np.testing.assert_array_equal(got.fold_thresholds, ref_thr)
    assert got.val == ref_val and got.far == ref_far


def test_seed_threshold_ties_on_the_grid():
    """Scores exactly on threshold values: a score equal to t is wrong for both sides; plateaus of equal accuracy
    (many thresholds) are averaged."""
    rng = np.random.default_rng(7)
    grid = V.FACE_PYTORCH_THRESHOLDS
    for trial in range(4):
        n = 60
        scores = grid[rng.integers(9000, 11000, size=n)] if trial < 2 else grid[rng.choice([9990, 10000, 10010], n)]
        issame = rng.random(n) < 0.5
        flags = np.where(issame, 1, -1)
        assert V.face_pytorch_best_threshold(scores, issame) == ref_get_threshold(scores, flags)
        t = float(scores[0])  # evaluation exactly at a score value
        assert V.face_pytorch_accuracy(scores, issame, t) == ref_get_accuracy(scores, flags, t)


def test_insightface_threshold_ties_on_the_grid():
    rng = np.random.default_rng(8)
    grid = V.INSIGHTFACE_THRESHOLDS
    for _ in range(4):
        dist = grid[rng.integers(100, 200, size=80)]  # every distance equals some threshold
        issame = rng.random(80) < 0.5
        ref = np.argmax([ref_calculate_accuracy(t, dist, issame) for t in grid])
        assert V.insightface_best_threshold_index(dist, issame) == ref
        assert V.insightface_accuracy(dist, issame, grid[ref]) == ref_calculate_accuracy(grid[ref], dist, issame)


def test_val_threshold_interpolation():
    """Strictly increasing FAR: equals today's scipy interp1d(slinear) bit for bit; repeated FAR values (always the
    case on real data): the reference scan, including a target that equals a FAR value exactly."""
    from scipy.interpolate import interp1d

    rng = np.random.default_rng(9)
    x = np.cumsum(rng.random(50) + 0.01) / 100
    y = np.arange(50) * 0.001
    for xv in [x[0], x[3], (x[10] + x[11]) / 2, x[-1]]:
        assert V._slinear_at(x, y, xv) == float(interp1d(x, y, kind="slinear")(xv))
    dist = np.r_[rng.random(30) * 0.5, 1.0 + rng.random(5000)]
    issame = np.r_[np.ones(30, bool), np.zeros(5000, bool)]
    far_train = np.array([ref_calculate_val_far(t, dist, issame)[1] for t in V.INSIGHTFACE_VAL_THRESHOLDS])
    for target in (1e-3, 2e-3, 5 / 5000, 0.5):
        assert V.insightface_val_threshold(dist, issame, target) == ref_slinear(far_train, V.INSIGHTFACE_VAL_THRESHOLDS,
                                                                             target)
    far_away = np.r_[dist[:30], np.full(10, 4.5)]  # no threshold below 4 accepts a different pair
    assert V.insightface_val_threshold(far_away, issame[:40], 1e-3) == 0.0  # the reference's fallback


def test_kfold_ids_match_sklearn():
    for n in (6000, 7000, 23, 105):
        ids = V.kfold_ids(n)
        for f, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(np.arange(n))):
            np.testing.assert_array_equal(np.flatnonzero(ids == f), test)
    with pytest.raises(ValueError):
        V.kfold_ids(5)


def test_folds_need_not_be_contiguous():
    emb, flip, issame, folds = make_pairs(100, 8, 0.7, 4)
    perm = np.random.default_rng(0).permutation(folds)
    got = V.face_pytorch_protocol(emb, flip, issame, perm)
    for i in range(10):
        test = perm == i
        np.testing.assert_allclose(got.scores[test], ref_seed_scores(emb, flip, perm, i)[test], atol=1e-12)


def test_bad_inputs_are_one_line_errors():
    emb, flip, issame, folds = make_pairs(20, 4, 1.0, 5)
    with pytest.raises(ValueError, match="expected"):
        V.face_pytorch_protocol(emb[:-2], flip[:-2], issame, folds)
    bad = emb.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        V.insightface_protocol(bad, flip, issame, folds)
    with pytest.raises(ValueError, match="protocol"):
        V.run_protocol("lfw", emb, flip, issame, folds)
