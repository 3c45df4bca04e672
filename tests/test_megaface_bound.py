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


@pytest.mark.parametrize("where", ["topk", "tail"])
def test_first_chunk_floor_from_block_maxima_keeps_every_true_entry(where):
    """One chunk holds every distractor, so the floor that the chunk's block maxima give (the k-th of a row for the
    top-k, the L-th overall for the tail, less the rounding bound) alone decides what is opened; scores spread far
    wider than the bound, so a floor taken from fewer maxima (a higher one) leaves true entries unopened."""
    rng = np.random.default_rng(7)
    p = l2_normalize(rng.normal(size=(20, 64))).astype(np.float32)
    g = l2_normalize(rng.normal(size=(3000, 64))).astype(np.float32)
    full = p.astype(np.float64) @ g.astype(np.float64).T
    k, tail = (20, 0) if where == "topk" else (0, 300)
    s = search_distractors(p, g, k=k, tail_size=tail, precision="bf16", chunk_size=len(g), histogram=False,
                           progress=False)
    assert s.widened == 0 and s.rescored < full.size / 4  # the floor decided, and it did select
    if where == "topk":
        np.testing.assert_allclose(s.topk_scores, -np.sort(-full, axis=1)[:, :k], rtol=0, atol=1e-12)
    else:
        np.testing.assert_allclose(s.tail_scores, np.sort(full.ravel())[::-1][:tail], rtol=0, atol=1e-12)


def _opposite_input_errors(seed: int = 0, dim: int = 64):
    """A probe and two bf16-exact distractors near score 0.02 whose input-rounding errors are 0.9 of the bound
    (Cauchy-Schwarz on the probe's residual r: distractor = -+0.9 r/|r| + ...) with opposite signs: B is the better
    by ~1e-3, yet its bf16 score sits ~1.7e-3 below A's, more than one bound. Fillers score -0.5."""
    import torch

    rng = np.random.default_rng(seed)
    x = rng.normal(size=dim)
    x = (x / np.linalg.norm(x)).astype(np.float32).astype(np.float64)
    r = x - _bf16_exact(x.astype(np.float32))
    rh = r / np.linalg.norm(r)
    u1 = x - (x @ rh) * rh
    u1 /= np.linalg.norm(u1)
    u2 = rng.normal(size=dim)
    u2 -= (u2 @ rh) * rh + (u2 @ u1) * u1
    u2 /= np.linalg.norm(u2)

    def along(sign, score):
        c1 = (score - sign * 0.9 * (x @ rh)) / (x @ u1)
        return _bf16_exact((sign * 0.9 * rh + c1 * u1 + np.sqrt(1 - 0.81 - c1 ** 2) * u2).astype(np.float32))

    g = np.tile(_bf16_exact((-0.5 * u1 + np.sqrt(0.75) * u2).astype(np.float32)), (128, 1))
    g[5], g[70] = along(-1, 0.02), along(+1, 0.0204)  # A in block 0, B in block 1
    p = x[None].astype(np.float32)
    low = (torch.from_numpy(p).bfloat16() @ torch.from_numpy(g).bfloat16().T).float().numpy()[0]
    exact = (p.astype(np.float64) @ g.astype(np.float64).T)[0]
    assert exact[70] - exact[5] > 5e-4 and low[5] - low[70] > 1.05 * np.linalg.norm(r)  # the hard case
    return p, g, exact


@pytest.mark.parametrize("where", ["topk", "tail"])
def test_first_chunk_floor_subtracts_the_rounding_bound(where):
    """The first chunk's floor is the k-th (L-th) block maximum less the rounding bound: the maximum here is A's
    bf16 score, above its exact value by nearly the bound, and the true best B reads nearly a bound below its own.
    A floor at the maximum itself (the threshold then subtracts the bound only once) leaves B unopened."""
    p, g, exact = _opposite_input_errors()
    k, tail = (1, 0) if where == "topk" else (0, 1)
    s = search_distractors(p, g, k=k, tail_size=tail, precision="bf16", chunk_size=len(g), histogram=False,
                           progress=False)
    assert s.widened == 0
    best = s.topk_scores[0, 0] if where == "topk" else s.tail_scores[0]
    assert best == exact.max() == exact[70]
