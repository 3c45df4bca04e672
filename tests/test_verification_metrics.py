"""TAR@FAR, ROC AUC and EER against brute-force definitions over every candidate threshold (plain loops)."""
from __future__ import annotations

import numpy as np
import pytest

from Utils.evaluation import verification as V


def brute_rates(issame, scores):
    """(far, tar) for "same when score >= t" at every distinct score and +inf."""
    out = []
    for t in np.r_[np.inf, np.unique(scores)[::-1]]:
        accept = scores >= t
        out.append((np.sum(accept & ~issame) / np.sum(~issame), np.sum(accept & issame) / np.sum(issame)))
    return out


def brute_tar_at_far(issame, scores, far):
    return max(tar for f, tar in brute_rates(issame, scores) if f <= far)


def brute_auc(issame, scores):
    pos, neg = scores[issame], scores[~issame]
    wins = sum(float(p > n) + 0.5 * float(p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def brute_eer(issame, scores):
    """Walk the ROC points from strict to lax; interpolate FAR where FRR - FAR changes sign."""
    pts = brute_rates(issame, scores)
    prev = None
    for far, tar in pts:
        gap = (1 - tar) - far
        if gap <= 0:
            if prev is None or gap == 0:
                return far
            g0, f0 = prev
            return f0 + g0 / (g0 - gap) * (far - f0)
        prev = (gap, far)
    raise AssertionError("ROC never reached FAR = FRR")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_free_metrics_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = 400
    issame = rng.random(n) < 0.5
    scores = np.round(rng.standard_normal(n) + 1.2 * issame, 1 if seed == 2 else 6)  # seed 2: many tied scores
    tars = V.tar_at_far(issame, scores, (1e-1, 1e-2, 5e-3, 1e-4))
    for far, tar in tars.items():
        assert tar == pytest.approx(brute_tar_at_far(issame, scores, far), abs=1e-12)
    assert V.roc_auc(issame, scores) == pytest.approx(brute_auc(issame, scores), abs=1e-12)
    assert V.equal_error_rate(issame, scores) == pytest.approx(brute_eer(issame, scores), abs=1e-12)


def test_known_values():
    issame = np.array([True, True, True, True, False, False, False, False])
    perfect = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    assert V.roc_auc(issame, perfect) == 1.0
    assert V.equal_error_rate(issame, perfect) == 0.0
    assert V.tar_at_far(issame, perfect, (1e-4,)) == {1e-4: 1.0}
    swapped = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.5, 0.4, 0.3])  # one same pair below every different pair
    assert V.roc_auc(issame, swapped) == 12 / 16
    assert V.equal_error_rate(issame, swapped) == 0.25
    assert V.tar_at_far(issame, swapped, (0.1, 0.5)) == {0.1: 0.75, 0.5: 0.75}


def test_roc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        V.roc_curve(np.ones(5, bool), np.arange(5.0))
