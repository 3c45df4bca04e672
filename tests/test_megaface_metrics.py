"""MegaFace metrics (Utils/megaface.py) against a brute-force full score matrix computed here with numpy.

The reference ranks every (probe, gallery image) pair by counting, over ALL distractors, those scoring >= the
gallery image (ties count against the probe), and takes TAR at FAR from the fully sorted impostor scores.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from Utils.evaluation.megaface_metrics import (evaluate_megaface, identification, l2_normalize, replace_with_identity_centres,
                            search_distractors, verification)


def _brute_cmc(p, labels, g, max_rank):
    """CMC by a per-pair loop over the full probe x distractor matrix."""
    p = np.asarray(p, np.float64)
    scores = p @ np.asarray(g, np.float64).T
    hits = np.zeros(max_rank, np.int64)
    pairs = 0
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        for gi in members:
            for pi in members:
                if pi == gi:
                    continue
                pairs += 1
                rank = 1 + int((scores[pi] >= p[pi] @ p[gi]).sum())
                for r in range(rank, max_rank + 1):
                    hits[r - 1] += 1
    return hits / max(pairs, 1)


def _brute_tar(p, labels, g, far, num_unreachable=0):
    """TAR at FAR: threshold = the (floor(far * #impostors) + 1)-th highest impostor score; accept score > it."""
    p = np.asarray(p, np.float64)
    imp = np.sort((p @ np.asarray(g, np.float64).T).ravel())[::-1]
    n_imp = p.shape[0] * (g.shape[0] + num_unreachable)
    allowed = int(np.floor(far * n_imp + 1e-9))
    thr = imp[allowed] if allowed < imp.size else -np.inf
    gen = []
    for c in np.unique(labels):
        m = np.flatnonzero(labels == c)
        for i in range(len(m)):
            for j in range(i + 1, len(m)):
                gen.append(p[m[i]] @ p[m[j]])
    gen = np.array(gen)
    return float((gen > thr).mean()), float(thr)


def _clustered(rng, n_ids, per_id, dim, spread):
    labels = np.repeat(np.arange(n_ids), per_id)
    centres = rng.normal(size=(n_ids, dim))
    feats = l2_normalize(centres[labels] + spread * rng.normal(size=(labels.size, dim)))
    return feats, labels


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_random_features_match_brute_force(precision):
    rng = np.random.default_rng(0)
    p, labels = _clustered(rng, 9, 7, 24, 0.6)
    g = l2_normalize(rng.normal(size=(2300, 24)))  # 2300: chunks of 700 leave a last chunk not a multiple of 64
    fars = [1 / (p.shape[0] * g.shape[0]), 1e-4, 1e-3, 1e-2, 0.2]
    res = evaluate_megaface(p, labels, g, max_rank=12, fars=fars, precision=precision, chunk_size=700,
                            tail_far=1.0, progress=False)
    np.testing.assert_allclose(res["identification"]["cmc"], _brute_cmc(p, labels, g, 12), rtol=0, atol=1e-12)
    assert 0.05 < res["identification"]["rank1"] < 0.95  # neither trivial nor hopeless: the test can fail
    for row, far in zip(res["verification"]["tar_at_far"], fars):
        tar, thr = _brute_tar(p, labels, g, far)
        assert row["exact"]
        assert row["tar"] == pytest.approx(tar, abs=1e-12)
        assert row["threshold"] == pytest.approx(thr, abs=1e-12)
        assert row["far_actual"] <= far


def test_topk_and_tail_equal_sorted_full_matrix():
    rng = np.random.default_rng(1)
    p = l2_normalize(rng.normal(size=(40, 32)))
    g = l2_normalize(rng.normal(size=(3000, 32)))
    s = search_distractors(p, g, k=15, tail_size=500, precision="bf16", chunk_size=512, progress=False)
    full = p.astype(np.float64) @ g.astype(np.float64).T
    np.testing.assert_allclose(s.topk_scores, -np.sort(-full, axis=1)[:, :15], rtol=0, atol=1e-12)
    np.testing.assert_allclose(full[np.arange(40)[:, None], s.topk_index], s.topk_scores, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.tail_scores, np.sort(full.ravel())[::-1][:500], rtol=0, atol=1e-12)
    np.testing.assert_allclose(full[s.tail_probe, s.tail_distractor], s.tail_scores, rtol=0, atol=1e-12)
    assert s.hist_counts.sum() == full.size


@pytest.mark.parametrize("chunk_size", [4096, 128])
def test_near_ties_below_bf16_resolution_stay_exact(chunk_size):
    """Distractors within 1e-4 of each other: bf16 cannot order them. Chunks of 4096 open every block above the
    floor that the block maxima give (the first chunk included); chunks of 128 (2 blocks, fewer than k) start on the
    widening path, whose certificate must fail and widen."""
    rng = np.random.default_rng(2)
    p, labels = _clustered(rng, 4, 5, 16, 0.3)
    base = p[rng.integers(0, len(p), 40)]
    g = l2_normalize(np.repeat(base, 200, axis=0) + 1e-4 * rng.normal(size=(8000, 16)))
    s = search_distractors(p, g, k=3, tail_size=300, precision="bf16", chunk_size=chunk_size, progress=False)
    full = p.astype(np.float64) @ g.astype(np.float64).T
    assert (s.widened > 0) == (chunk_size == 128)
    np.testing.assert_allclose(s.topk_scores, -np.sort(-full, axis=1)[:, :3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.tail_scores, np.sort(full.ravel())[::-1][:300], rtol=0, atol=1e-12)
    np.testing.assert_allclose(identification(p, labels, s)["cmc"], _brute_cmc(p, labels, g, 3), atol=1e-12)


def _dyadic(rng, n, dim):
    """Vectors of multiples of 1/4 in [-1, 1]: every dot product is exact in bf16, fp32 and float64 alike."""
    return rng.integers(-4, 5, size=(n, dim)).astype(np.float32) / 4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_exact_ties_count_against_the_probe(precision):
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 4)
    # each identity: a base vector with one coordinate nudged per image; distractors: small random vectors plus
    # exact copies of some probes, which tie with the genuine score of their identity-mates
    p = np.repeat(_dyadic(rng, 5, 6), 4, axis=0)
    p[np.arange(20), rng.integers(0, 6, 20)] += 0.25
    g = np.concatenate([p[::3], _dyadic(rng, 300, 6) / 4])
    s = search_distractors(p, g, k=8, tail_size=p.shape[0] * g.shape[0], precision=precision, chunk_size=128,
                           progress=False)
    ident = identification(p, labels, s)
    np.testing.assert_allclose(ident["cmc"], _brute_cmc(p, labels, g, 8), rtol=0, atol=1e-12)
    # the optimistic rule (count only strictly greater) would give a different CMC on this data
    full = p.astype(np.float64) @ g.astype(np.float64).T
    optimistic = []
    for c in range(5):
        m = np.flatnonzero(labels == c)
        optimistic += [1 + int((full[i] > p[i] @ p[j]).sum()) == 1 for i in m for j in m if i != j]
    assert np.mean(optimistic) != ident["rank1"]
    fars = [1e-3, 1e-2, 0.05, 0.3]
    v = verification(p, labels, s, fars=fars)
    for row, far in zip(v["tar_at_far"], fars):
        tar, thr = _brute_tar(p, labels, g, far)
        assert row["exact"] and row["tar"] == pytest.approx(tar, abs=1e-12) and row["threshold"] == thr


def test_collapsed_features_score_zero():
    """Every feature equal: every distractor ties with every gallery image, so nothing is identified."""
    unit = l2_normalize(np.random.default_rng(8).normal(size=(1, 512)))  # not dyadic: sums round
    p = np.repeat(unit, 12, axis=0)
    g = np.repeat(unit, 100, axis=0)
    labels = np.repeat(np.arange(3), 4)
    res = evaluate_megaface(p, labels, g, max_rank=5, fars=[1e-3], precision="bf16", tail_far=1.0, progress=False)
    assert res["identification"]["cmc"] == [0.0] * 5
    assert res["verification"]["tar_at_far"][0]["tar"] == 0.0


def test_fewer_distractors_than_ranks():
    rng = np.random.default_rng(4)
    p, labels = _clustered(rng, 3, 4, 8, 2.0)
    g = l2_normalize(rng.normal(size=(3, 8)))
    res = evaluate_megaface(p, labels, g, max_rank=6, fars=[0.1], precision="fp32", progress=False)
    cmc = res["identification"]["cmc"]
    np.testing.assert_allclose(cmc, _brute_cmc(p, labels, g, 6), atol=1e-12)
    assert cmc[3] == 1.0  # with 3 distractors the gallery image ranks 4th at worst


def test_unreachable_distractors_count_as_rejected_impostors():
    rng = np.random.default_rng(5)
    p, labels = _clustered(rng, 4, 5, 12, 1.0)
    g = l2_normalize(rng.normal(size=(400, 12)))
    far = 2e-3
    res = evaluate_megaface(p, labels, g, fars=[far], precision="fp32", tail_far=1.0, num_unreachable=100,
                            progress=False)
    row = res["verification"]["tar_at_far"][0]
    tar, thr = _brute_tar(p, labels, g, far, num_unreachable=100)
    assert res["verification"]["num_impostors"] == 20 * 500
    assert row["tar"] == pytest.approx(tar, abs=1e-12) and row["threshold"] == pytest.approx(thr, abs=1e-12)


def test_coarse_far_from_histogram_at_bf16_resolution():
    """Beyond the kept tail, TAR comes from the histogram of bf16-rounded scores (exact here: dyadic data)."""
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(6), 5)
    p = _dyadic(rng, 30, 5)
    g = _dyadic(rng, 500, 5)
    s = search_distractors(p, g, k=5, tail_size=20, precision="bf16", chunk_size=200, progress=False)
    v = verification(p, labels, s, fars=[1e-3, 0.1])
    exact_row, coarse_row = v["tar_at_far"]
    assert exact_row["exact"] and not coarse_row["exact"]
    imp = (p.astype(np.float64) @ g.astype(np.float64).T).ravel()
    imp_bf16 = torch.from_numpy(imp).to(torch.bfloat16).double().numpy()
    values = np.unique(imp_bf16)[::-1]
    above = np.array([(imp_bf16 > v_).sum() for v_ in values])
    thr = values[np.flatnonzero(above <= int(0.1 * imp.size))[-1]]
    gen = np.concatenate([(p[labels == c].astype(np.float64) @ p[labels == c].T.astype(np.float64))[
        np.triu_indices(5, 1)] for c in range(6)])
    assert coarse_row["threshold"] == thr
    assert coarse_row["tar"] == pytest.approx((gen > thr).mean(), abs=1e-12)


def test_identity_centre_cleaning_matches_a_loop():
    rng = np.random.default_rng(7)
    feats, labels = _clustered(rng, 3, 4, 6, 0.5)
    noisy = np.zeros(12, bool)
    noisy[[1, 5, 6]] = True
    out, replaced = replace_with_identity_centres(feats, labels, noisy)
    assert replaced == 3
    for i in range(12):
        if noisy[i]:
            clean = [feats[j] for j in range(12) if labels[j] == labels[i] and not noisy[j]]
            centre = np.mean(np.array(clean, np.float64), axis=0)
            np.testing.assert_allclose(out[i], centre / np.linalg.norm(centre), atol=1e-6)
        else:
            np.testing.assert_array_equal(out[i], feats[i])


@pytest.mark.parametrize("n_probes, chunk_size", [(30, 64), (30, 200), (30, 4096), (300, 4000)])
def test_histogram_counts_every_score_once_by_its_bf16_pattern(n_probes, chunk_size):
    """The histogram against numpy's own count of the bf16 bit patterns: chunks of whole blocks reuse the score and
    pattern buffers, 200 pads its last block with -inf rows (never counted), 4096 is one chunk, and 300 x 4000 scores
    are more than one piece of the pattern buffer (2^20), the last one partial. Dyadic data: every score is exact in
    bf16, so the reference needs no matmul."""
    rng = np.random.default_rng(8)
    p, g = _dyadic(rng, n_probes, 5), _dyadic(rng, 1000 if n_probes == 30 else 4000, 5)
    s = search_distractors(p, g, k=3, tail_size=10, precision="bf16", chunk_size=chunk_size, progress=False)
    exact = (p.astype(np.float64) @ g.astype(np.float64).T).astype(np.float32)
    patterns = (exact.view(np.uint32) >> 16).astype(np.int64)  # bf16 = the float32's upper half (exact values)
    np.testing.assert_array_equal(s.hist_counts, np.bincount(patterns.ravel(), minlength=65536))


def test_no_probes_searches_to_empty_results():
    """A probe list with no entries gives empty top-k and tail and an all-zero histogram, not an error (the
    histogram's piece loop once stepped by zero on an empty chunk)."""
    rng = np.random.default_rng(9)
    g = l2_normalize(rng.normal(size=(300, 16))).astype(np.float32)
    s = search_distractors(np.zeros((0, 16), np.float32), g, k=3, precision="bf16", chunk_size=128, progress=False)
    assert s.topk_scores.shape == (0, 3) and s.tail_scores.size == 0
    assert s.hist_counts.shape == (65536,) and s.hist_counts.sum() == 0


def test_search_buffers_are_reused_and_grow_on_demand():
    """The chunk buffers: a smaller request reuses the same memory (no fresh pages per chunk), a larger one or
    another dtype gets a new tensor of the asked shape."""
    import torch

    from Utils.evaluation.megaface_chunk import Buffers

    bufs = Buffers(torch.device("cpu"))
    big = bufs.get("scores", (64, 30), torch.bfloat16)
    small = bufs.get("scores", (10, 30), torch.bfloat16)
    assert small.shape == (10, 30) and small.data_ptr() == big.data_ptr()
    grown = bufs.get("scores", (128, 30), torch.bfloat16)
    assert grown.shape == (128, 30) and grown.dtype == torch.bfloat16
    other = bufs.get("scores", (10, 30), torch.float32)
    assert other.shape == (10, 30) and other.dtype == torch.float32
    assert bufs.get("work", (5,), torch.float32).shape == (5,)  # names are separate buffers
