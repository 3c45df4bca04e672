"""IJB-B / IJB-C: the readers, the aligned loader, template pooling, 1:1 and 1:N metrics and IJB_Evaluation.py end
to end, on a tiny set written here in the distributed layout (meta/ lists, loose_crop/ images with 5 landmarks).

Every metric is checked against a brute force written here: a per-template loop for the pooling, the full template
x template score matrix with sklearn's roc_curve for 1:1, a loop over probes and thresholds for 1:N."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

from Datasets.align import ARCFACE_TEMPLATE
from Datasets.errors import DataFormatError
from Datasets.ijb import IJBImages, load_ijb, load_ijb_1n
from Datasets.transforms import normalize_image
from Utils.evaluation.ijb.search1n import closed_set_search, open_set_search
from Utils.evaluation.ijb.templates import POOLINGS, get_pooling, image_features, pool_templates
from Utils.evaluation.ijb.verify11 import IJB_FARS, evaluate_1to1, pair_scores

REPO = Path(__file__).resolve().parents[1]
N_SUBJECTS = 6


def _face(rng, subject_seed: int) -> np.ndarray:
    """A smooth 112x112 'face': a pattern all subjects share plus a weaker one of the subject's, and per-image
    noise, so same and different scores overlap (a perfectly separated set would hide errors in the metrics)."""
    def pattern(seed):
        cells = np.random.default_rng(seed).integers(0, 256, (7, 7, 3)).astype(np.uint8)
        return np.asarray(Image.fromarray(cells).resize((112, 112), Image.BILINEAR)).astype(float)
    img = 0.6 * pattern(1000) + 0.4 * pattern(subject_seed) + rng.normal(0, 40, (112, 112, 3))
    return np.clip(img + rng.normal(0, 25), 0, 255).astype(np.uint8)


def write_ijb(root: Path, target: str = "IJBC") -> dict:
    """The distributed layout, tiny: each subject has one gallery template (G1 for the first half of the subjects,
    G2 for the rest) and two probe templates; a template has 1-2 medias of 1-2 images. Returns what was written."""
    rng = np.random.default_rng(1)
    p = target.lower()
    (root / "meta").mkdir(parents=True)
    (root / "loose_crop").mkdir()
    tid_lines, lmk_lines, templates = [], [], []
    gal_names = ("G1", "G2") if target == "IJBC" else ("S1", "S2")
    csv = {"probe_mixed": [], f"gallery_{gal_names[0]}": [], f"gallery_{gal_names[1]}": []}
    tid = 100
    for s in range(N_SUBJECTS):
        for role in ("gallery", "probe", "probe"):
            tid += 1
            templates.append((tid, s))
            part = f"gallery_{gal_names[s * 2 // N_SUBJECTS]}" if role == "gallery" else "probe_mixed"
            for media in range(int(rng.integers(1, 3))):
                for _ in range(int(rng.integers(1, 3))):
                    name = f"img_{len(tid_lines)}.jpg"
                    ox, oy = int(rng.integers(0, 30)), int(rng.integers(0, 30))
                    canvas = np.full((150, 150, 3), 90, dtype=np.uint8)
                    canvas[oy:oy + 112, ox:ox + 112] = _face(rng, s)
                    Image.fromarray(canvas).save(root / "loose_crop" / name, quality=95)
                    pts = ARCFACE_TEMPLATE + [ox, oy]
                    tid_lines.append(f"{name} {tid} {media + 7}")  # media ids repeat across templates
                    lmk_lines.append(name + " " + " ".join(f"{v:.4f}" for v in pts.ravel())
                                     + f" {rng.uniform(0.5, 1.0):.4f}")
                    csv[part].append(f"{tid},{s},{name},0,0,150,150")
    (root / "meta" / f"{p}_face_tid_mid.txt").write_text("\n".join(tid_lines) + "\n")
    (root / "meta" / f"{p}_name_5pts_score.txt").write_text("\n".join(lmk_lines) + "\n")
    pairs = [f"{a} {b} {int(sa == sb)}" for i, (a, sa) in enumerate(templates) for b, sb in templates[i + 1:]]
    (root / "meta" / f"{p}_template_pair_label.txt").write_text("\n".join(pairs) + "\n")
    for part, rows in csv.items():
        header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,FACE_X,FACE_Y,FACE_WIDTH,FACE_HEIGHT\n"
        (root / "meta" / f"{p}_1N_{part}.csv").write_text(header + "\n".join(rows) + "\n")
    return {"templates": templates, "n_images": len(tid_lines)}


# ------------------------------------------------------------------------------------------ brute-force references
def brute_pool(feats, templates, medias, normalize_images=True, by_media=True):
    """One template at a time, one media at a time, as insightface's eval_ijbc loop reads."""
    out = {}
    for t in np.unique(templates):
        rows = feats[templates == t].astype(np.float64)
        if normalize_images:
            rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        if by_media:
            m = medias[templates == t]
            v = sum(rows[m == u].mean(0) for u in np.unique(m))
        else:
            v = rows.mean(0)
        out[int(t)] = v / np.linalg.norm(v)
    return out


def brute_open_set(probe, psub, gal, gsub, fpir):
    """Loop over probes, then over every candidate threshold: the best TPIR whose FPIR is <= the target."""
    mate_at_1, best = [], []
    for f, s in zip(probe, psub):
        sims = [float(np.dot(f, g)) for g in gal]
        order = sorted(range(len(gal)), key=lambda j: -sims[j])
        if s in gsub:
            top = order[0]
            mate_at_1.append(sims[top] if gsub[top] == s else None)
        else:
            best.append(sims[order[0]])
    mated = len(mate_at_1)
    cands = sorted({v for v in best} | {v for v in mate_at_1 if v is not None} | {np.inf})
    answer = 0.0
    for t in cands:
        if sum(b >= t for b in best) / len(best) <= fpir:
            answer = max(answer, sum(v is not None and v >= t for v in mate_at_1) / mated)
    return answer


def brute_rank(probe, psub, gal, gsub, k):
    hits = n = 0
    for f, s in zip(probe, psub):
        if s not in gsub:
            continue
        n += 1
        sims = gal @ f
        order = np.argsort(-sims)
        hits += s in [gsub[j] for j in order[:k]]
    return hits / n


# ------------------------------------------------------------------------------------------------ library tests
@pytest.mark.parametrize("block_rows", [5, None])  # 5: group sums over many blocks, as at IJB-C size
@pytest.mark.parametrize("name", POOLINGS.names())
def test_pooling_matches_a_per_template_loop(name, block_rows, monkeypatch):
    if block_rows:
        monkeypatch.setattr("Utils.evaluation.ijb.templates._BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(0)
    n = 200
    templates = rng.integers(0, 25, n) * 3 + 5
    medias = rng.integers(0, 4, n)
    order = rng.permutation(n)  # lists out of template order too
    emb, flip, scores = rng.normal(size=(n, 16)), rng.normal(size=(n, 16)), rng.uniform(0.3, 1, n)
    pooling = get_pooling(name)
    feats = image_features(emb[order], flip[order], pooling, scores[order])
    tids, pooled = pool_templates(feats, templates[order], medias[order], pooling)
    ref_in = (emb + flip) / (np.linalg.norm(emb + flip, axis=1, keepdims=True) if pooling.normalize_images else 1)
    ref = brute_pool(ref_in * scores[:, None], templates, medias, normalize_images=False, by_media=pooling.by_media)
    assert list(tids) == sorted(ref)
    np.testing.assert_allclose(pooled, np.stack([ref[t] for t in tids]), atol=1e-5)


def test_no_flip_uses_the_image_alone():
    emb = np.array([[3.0, 4.0]])
    out = image_features(emb, np.array([[100.0, 0.0]]) * 0, get_pooling("media"))
    np.testing.assert_allclose(image_features(emb, None, get_pooling("media")), [[0.6, 0.8]])
    np.testing.assert_allclose(out, [[0.6, 0.8]])


@pytest.mark.parametrize("method", ["gather", "gram", "auto"])
def test_pair_scores_in_chunks_equal_the_full_matrix(method, monkeypatch):
    monkeypatch.setattr("Utils.evaluation.ijb.verify11._GRAM_ROWS", 4)  # many Gram blocks, one left empty
    rng = np.random.default_rng(2)
    f = rng.normal(size=(30, 8)).astype(np.float32)
    r1, r2 = rng.integers(0, 30, 101), rng.integers(0, 30, 101)
    r1[r1 // 4 == 2] = 0
    full = f.astype(np.float64) @ f.T.astype(np.float64)
    got = pair_scores(f, r1, r2, chunk=7, progress=False, method=method)
    np.testing.assert_allclose(got, full[r1, r2], rtol=1e-5, atol=1e-5)


def test_tar_at_far_against_sklearn_and_a_threshold_loop():
    rng = np.random.default_rng(3)
    same = rng.random(3000) < 0.2
    scores = rng.normal(size=3000) + 1.5 * same
    summary, _ = evaluate_1to1(scores, same)
    fpr, tpr, _ = roc_curve(same, scores)
    neg, pos = scores[~same], scores[same]
    for far in IJB_FARS:
        key = f"{far:.0e}"
        assert summary["tar_at_far"][key] == pytest.approx(tpr[np.argmin(np.abs(fpr - far))])
        best = max([np.mean(pos >= t) for t in np.r_[scores, np.inf] if np.mean(neg >= t) <= far])
        assert summary["tar_at_far_le"][key] == pytest.approx(best)


def test_open_set_search_against_a_loop_over_probes():
    rng = np.random.default_rng(4)
    gal_s = np.arange(20)
    gal = rng.normal(size=(20, 6))
    psub = rng.integers(0, 40, 300)  # subjects 20..39 are not in this gallery: non-mated searches
    probe = np.where((psub < 20)[:, None], gal[np.minimum(psub, 19)], 0) + rng.normal(size=(300, 6)) * 1.2
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    gal /= np.linalg.norm(gal, axis=1, keepdims=True)
    fpirs = (1e-2, 3e-2, 1e-1, 0.2, 0.37)  # more targets than the report's two, so each threshold step is seen
    res = open_set_search(probe, psub, gal, gal_s, fpirs=fpirs, chunk=37)
    assert res["n_mated"] == int((psub < 20).sum())
    for f in fpirs:
        assert res["tpir_at_fpir"][f"{f:.0e}"] == pytest.approx(brute_open_set(probe, psub, gal, gal_s, f))
    for k in (1, 5, 10):
        assert res[f"rank_{k}"] == pytest.approx(brute_rank(probe, psub, gal, gal_s, k))


def test_closed_set_search_against_insightface_reading():
    rng = np.random.default_rng(5)
    gal = rng.normal(size=(25, 6))
    psub = rng.integers(0, 25, 210)
    probe = gal[psub] + rng.normal(size=(210, 6)) * 1.5
    res = closed_set_search(probe, psub, gal, np.arange(25), chunk=16)
    sim = probe @ gal.T
    pos = sim[np.arange(210), psub]
    neg = np.sort(sim[np.arange(25)[None, :] != psub[:, None]])[::-1]
    for f in (1e-2, 1e-1):
        th = neg[math.ceil(f * 210) - 1]
        assert res["tpir_at_far"][f"{f:.0e}"] == pytest.approx(np.mean(pos > th))
    assert res["rank_1"] == pytest.approx(np.mean(sim.argmax(1) == psub))


# --------------------------------------------------------------------------------------------- readers and loader
def test_loader_aligns_each_crop_from_its_landmarks(tmp_path):
    write_ijb(tmp_path)
    meta = load_ijb(tmp_path, "IJBC")
    lmk = meta.landmarks[0]
    ox, oy = (lmk[0] - ARCFACE_TEMPLATE[0]).round().astype(int)
    crop = np.asarray(Image.open(tmp_path / "loose_crop" / meta.names[0]).convert("RGB"))
    face = crop[oy:oy + 112, ox:ox + 112]  # the crop was pasted at this offset: alignment must cut it back out
    got = IJBImages(meta, (112, 112), "BGR")[0]
    np.testing.assert_allclose(got.numpy(), normalize_image(face, (112, 112), "BGR").numpy(), atol=1.5 / 128)


def test_readers_give_the_written_lists(tmp_path):
    info = write_ijb(tmp_path, "IJBB")
    meta = load_ijb(tmp_path, "IJBB")
    assert len(meta.names) == info["n_images"] and meta.landmarks.shape == (info["n_images"], 5, 2)
    n_t = len(info["templates"])
    assert len(meta.pair_t1) == n_t * (n_t - 1) // 2
    search = load_ijb_1n(tmp_path, "IJBB", meta.templates)
    assert set(search.galleries) == {"S1", "S2"} and len(search.probe_templates) == 2 * N_SUBJECTS


# ------------------------------------------------------------------------------------------------- the script
@pytest.fixture(scope="module")
def ijb(tmp_path_factory):
    import torch

    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta, save_checkpoint

    root = tmp_path_factory.mktemp("ijb")
    info = write_ijb(root / "IJBC")
    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 64, (112, 112))
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 64, (112, 112), "RGB"),
                     "config": {}}, root / "model.pt")
    return root, info


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "IJB_Evaluation.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def test_script_end_to_end_against_brute_force(ijb):
    root, info = ijb
    out, cache = root / "out", root / "cache"
    common = [f"--checkpoint={root / 'model.pt'}", f"--data={root / 'IJBC'}", "--protocol=1:1,1:N",
              "--device=cpu", "--batch_size=32", "--num_workers=0", "--no_progress", f"--output_dir={out}",
              f"--feature_cache={cache}"]
    proc = _run(*common, "--closed_set")
    assert proc.returncode == 0, proc.stderr
    for f in ("ijbc_media_flip_1to1.json", "ijbc_media_flip_1to1_roc.csv", "ijbc_media_flip_1to1_roc.png",
              "ijbc_media_flip_1toN.json", "ijbc_media_flip_1toN_cmc.png"):
        assert (out / f).is_file(), f
    both = np.load(cache / "ijbc_images.npy")
    emb, flip = both[:, :64], both[:, 64:]
    meta = load_ijb(root / "IJBC", "IJBC")
    ref = brute_pool(emb + flip, meta.templates, meta.medias)
    tids = sorted(ref)
    mat = np.stack([ref[t] for t in tids])
    full = mat @ mat.T  # every template against every template; the pairs are read off it
    row = {t: i for i, t in enumerate(tids)}
    scores = full[[row[t] for t in meta.pair_t1], [row[t] for t in meta.pair_t2]]
    fpr, tpr, _ = roc_curve(meta.pair_same, scores)
    rep = json.loads((out / "ijbc_media_flip_1to1.json").read_text())
    neg, pos = scores[~meta.pair_same], scores[meta.pair_same]
    for far in IJB_FARS:
        assert rep["tar_at_far"][f"{far:.0e}"] == pytest.approx(tpr[np.argmin(np.abs(fpr - far))])
        best = max(np.mean(pos >= t) for t in np.r_[scores, np.inf] if np.mean(neg >= t) <= far)
        assert rep["tar_at_far_le"][f"{far:.0e}"] == pytest.approx(best)
    assert rep["auc"] == pytest.approx(roc_auc_score(meta.pair_same, scores), abs=1e-6)
    assert 0.5 < rep["auc"] < 1.0  # same and different scores overlap: the checks above see every score
    assert rep["n_pairs"] == len(scores) and rep["pooling"] == "media" and rep["flip"] is True

    search = load_ijb_1n(root / "IJBC", "IJBC", meta.templates)
    probe = mat[[row[t] for t in search.probe_templates]]
    res = json.loads((out / "ijbc_media_flip_1toN.json").read_text())
    for g, (gt, gs) in search.galleries.items():
        gal = mat[[row[t] for t in gt]]
        for f in (1e-2, 1e-1):
            assert res["open_set"][g]["tpir_at_fpir"][f"{f:.0e}"] == pytest.approx(
                brute_open_set(probe, search.probe_subjects, gal, gs, f))
        assert res["open_set"][g]["rank_1"] == pytest.approx(brute_rank(probe, search.probe_subjects, gal, gs, 1))
    assert res["open_set_mean"]["rank_1"] == pytest.approx(np.mean([r["rank_1"] for r in res["open_set"].values()]))
    closed = res["closed_set_insightface"]
    assert closed["n_probes"] == 2 * N_SUBJECTS
    gt = np.concatenate([t for t, _ in search.galleries.values()])
    gs = np.concatenate([s for _, s in search.galleries.values()])
    sim = probe @ mat[[row[t] for t in gt]].T
    is_mate = search.probe_subjects[:, None] == gs[None, :]
    mate_scores, non = sim[is_mate], np.sort(sim[~is_mate])[::-1]
    for f in (1e-2, 1e-1):
        th = non[math.ceil(f * len(probe)) - 1]
        assert closed["tpir_at_far"][f"{f:.0e}"] == pytest.approx(np.mean(mate_scores > th))
    assert closed["rank_1"] == pytest.approx(np.mean(is_mate[np.arange(len(probe)), sim.argmax(1)]))

    # other pooling flags: the image features come from the cache, no second extraction
    again = _run(*common, "--pooling=norm_media", "--no_flip", "--score_weighting", "--protocol=1:1", "--no_plots")
    assert again.returncode == 0, again.stderr
    assert "image features from cache" in again.stdout
    rep2 = json.loads((out / "ijbc_norm_media_noflip_score_1to1.json").read_text())
    ref2 = brute_pool(emb * meta.scores[:, None], meta.templates, meta.medias, normalize_images=False)
    mat2 = np.stack([ref2[t] for t in tids])
    s2 = (mat2 @ mat2.T)[[row[t] for t in meta.pair_t1], [row[t] for t in meta.pair_t2]]
    fpr2, tpr2, _ = roc_curve(meta.pair_same, s2)
    assert rep2["tar_at_far"]["1e-01"] == pytest.approx(tpr2[np.argmin(np.abs(fpr2 - 0.1))])
    assert rep2["auc"] == pytest.approx(roc_auc_score(meta.pair_same, s2), abs=1e-6)


def _break(root: Path, case: str) -> str:
    meta = root / "meta"
    if case == "missing meta":
        (meta / "ijbc_template_pair_label.txt").unlink()
        return "ijbc_template_pair_label.txt"
    if case == "template with no images":
        lines = (meta / "ijbc_template_pair_label.txt").read_text().splitlines()
        lines[4] = "101 999 0"
        (meta / "ijbc_template_pair_label.txt").write_text("\n".join(lines) + "\n")
        return "ijbc_template_pair_label.txt:5"
    if case == "wrong landmark count":
        lines = (meta / "ijbc_name_5pts_score.txt").read_text().splitlines()
        lines[2] = " ".join(lines[2].split()[:-2])
        (meta / "ijbc_name_5pts_score.txt").write_text("\n".join(lines) + "\n")
        return "ijbc_name_5pts_score.txt:3"
    if case == "unparsable number":
        lines = (meta / "ijbc_face_tid_mid.txt").read_text().splitlines()
        lines[1] = lines[1].rsplit(" ", 1)[0] + " seven"
        (meta / "ijbc_face_tid_mid.txt").write_text("\n".join(lines) + "\n")
        return "ijbc_face_tid_mid.txt:2"
    if case == "1:N template with no images":
        path = meta / "ijbc_1N_gallery_G2.csv"
        lines = path.read_text().splitlines()
        lines[2] = "4242," + lines[2].split(",", 1)[1]
        path.write_text("\n".join(lines) + "\n")
        return "ijbc_1N_gallery_G2.csv:3"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing meta", "template with no images", "wrong landmark count",
                                  pytest.param("unparsable number", marks=pytest.mark.slow),  # same path, other file
                                  pytest.param("1:N template with no images", marks=pytest.mark.slow)])
def test_bad_input_is_one_line_exit_2_nothing_written(ijb, tmp_path, case):
    root, _ = ijb
    write_ijb(tmp_path / "IJBC")
    where = _break(tmp_path / "IJBC", case)
    out = tmp_path / "out"
    proc = _run(f"--checkpoint={root / 'model.pt'}", f"--data={tmp_path / 'IJBC'}", "--protocol=1:1,1:N",
                "--device=cpu", "--num_workers=0", "--no_progress", f"--output_dir={out}")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and where in lines[0], proc.stderr
    assert not out.exists()


def test_reader_errors_are_data_format_errors(tmp_path):
    write_ijb(tmp_path)
    _break(tmp_path, "wrong landmark count")
    with pytest.raises(DataFormatError, match=r"name_5pts_score.txt:3: .*12 fields"):
        load_ijb(tmp_path, "IJBC")
