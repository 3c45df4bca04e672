"""The bf16 filter's error bound where its input-rounding term decides: every score is near 0, so the output
rounding (u * |score| ~ 4e-6) is negligible while rounding the inputs to bf16 moves scores by ~1e-3, far more than
their spacing. The search must still return float64 brute force's exact top-k and tail."""
from __future__ import annotations

import numpy as np
import pytest

from Utils.evaluation.megaface_metrics import l2_normalize
from Utils.evaluation.megaface_search import search_distractors


def _near_orthogonal(seed: int = 3, n_probes: int = 6, n: int = 3000, dim: int = 64):
    """Distractors orthogonal to every probe but for a component t in [0, 2e-3] along one of them."""
    rng = np.random.default_rng(seed)
    p = l2_normalize(rng.normal(size=(n_probes, dim)))
    basis = np.linalg.qr(p.T)[0]  # orthonormal basis of the probes' span
    g = np.empty((n, dim))
    for i in range(n):
        v = rng.normal(size=dim)
        v -= basis @ (basis.T @ v)
        v /= np.linalg.norm(v)
        t = rng.uniform(0, 2e-3)
        g[i] = v * np.sqrt(1 - t * t) + t * p[i % n_probes]
    return p.astype(np.float32), g.astype(np.float32)


def _bf16_exact(x: np.ndarray) -> np.ndarray:
    import torch

    return torch.from_numpy(x).bfloat16().float().numpy()


@pytest.mark.parametrize("rounded", ["both", "probes", "distractors"])
def test_bf16_search_is_exact_when_input_rounding_dominates(rounded):
    # "probes": distractors already bf16 values, so only the probes' rounding term covers the error (and vice versa)
    p, g = _near_orthogonal()
    if rounded == "probes":
        g = _bf16_exact(g)
    elif rounded == "distractors":
        p = _bf16_exact(p)
    full = p.astype(np.float64) @ g.astype(np.float64).T
    # the data really is the hard case: bf16 inputs move scores 10x more than the output rounding could
    bf = _bf16_exact(p).astype(np.float64) @ _bf16_exact(g).astype(np.float64).T
    assert np.abs(full).max() < 5e-3 and np.abs(bf - full).max() > 10 * np.abs(full).max() * 2.0 ** -8
    s = search_distractors(p, g, k=5, tail_size=50, precision="bf16", chunk_size=512, progress=False)
    np.testing.assert_allclose(s.topk_scores, -np.sort(-full, axis=1)[:, :5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.tail_scores, np.sort(full.ravel())[::-1][:50], rtol=0, atol=1e-12)


@pytest.mark.parametrize("where", ["topk", "tail"])
def test_bf16_output_rounding_of_half_a_unit_is_covered(where):
    """bf16 keeps 8 significant bits, so rounding a score to it can move the score by 2^-8 of its size (half the
    spacing 2^-7): the true best 0.5 + 2^-9 (a tie, rounded to even: 0.5) and the earlier best 0.5 + 3 * 2^-11
    (0.5 too) both read 0.5 in bf16. All inputs are bf16 values, so only the output term can cover the gap; a bound
    of 2^-9 (half bf16's real unit roundoff) leaves the later, better distractor unopened."""
    p = np.zeros((1, 4), np.float32)
    p[0, :2] = 1.0
    g = np.zeros((128, 4), np.float32)
    g[:, 2] = 1.0  # score 0: the fillers of both chunks
    g[0, :3] = (0.5, 3 * 2.0 ** -11, 0.0)  # chunk 1's best, 0.50146484375
    g[64, :3] = (0.5, 2.0 ** -9, 0.0)  # chunk 2's, 0.501953125: the true best
    assert np.array_equal(_bf16_exact(g), g)
    full = p.astype(np.float64) @ g.astype(np.float64).T
    k, tail = (1, 0) if where == "topk" else (0, 1)
    s = search_distractors(p, g, k=k, tail_size=tail, precision="bf16", chunk_size=64, histogram=False,
                           progress=False)
    best = s.topk_scores[0, 0] if where == "topk" else s.tail_scores[0]
    assert best == full.max() == 0.5 + 2.0 ** -9
