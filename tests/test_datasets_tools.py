"""Dataset tools: list generation, .bin <-> folder conversion, and 5-point alignment (checked against a direct
least-squares solve and by where known marks land after warping)."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from Datasets import DataFormatError
from Datasets.align import ARCFACE_TEMPLATE, SPHEREFACE_TEMPLATE, align_face, similarity_transform
from Utils.tools import align_faces, convert_bin, generate_dataset_list
from _datasets_fixtures import jpeg_bytes


def test_generate_dataset_list(tmp_path, capsys):
    for ident, files in {"b_person": ["2.jpg", "1.png"], "a_person": ["x.jpg"], "empty": [], "c": ["n/3.jpeg"]}.items():
        (tmp_path / ident).mkdir()
        for f in files:
            (tmp_path / ident / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / ident / f).write_bytes(jpeg_bytes(1))
    (tmp_path / "a_person" / "notes.txt").write_text("not an image")
    assert generate_dataset_list.main([str(tmp_path)]) == 0
    lines = (tmp_path / "train_list.txt").read_text().splitlines()
    assert lines == ["a_person/x.jpg 0", "b_person/1.png 1", "b_person/2.jpg 1", "c/n/3.jpeg 2"]
    assert generate_dataset_list.main([str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_convert_bin_round_trip(tmp_path):
    bins = [jpeg_bytes(i) for i in range(6)]
    bins[3] = jpeg_bytes(3, fmt="PNG")
    issame = [True, False, True]
    with open(tmp_path / "cfp_fp.bin", "wb") as f:
        pickle.dump((bins, issame), f, protocol=2)
    out = tmp_path / "folder"
    assert convert_bin.main(["to-folder", str(tmp_path / "cfp_fp.bin"), str(out)]) == 0
    assert (out / "pairs.txt").read_text().splitlines() == [
        "00001.jpg 00002.jpg 1", "00003.jpg 00004.png -1", "00005.jpg 00006.jpg 1"]
    for i, b in enumerate(bins):
        assert (out / f"{i + 1:05d}.{'png' if i == 3 else 'jpg'}").read_bytes() == b
    assert convert_bin.main(["to-bin", f"{out / 'pairs.txt'}::{out}", str(tmp_path / "back.bin")]) == 0
    with open(tmp_path / "back.bin", "rb") as f:
        back_bins, back_same = pickle.load(f)
    assert back_bins == bins and list(back_same) == issame


def _lstsq_similarity(src, dst):
    """Reference: solve [a -b tx; b a ty] directly by linear least squares."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_similarity_matches_least_squares():
    rng = np.random.default_rng(0)
    for _ in range(20):
        src = rng.uniform(0, 300, (5, 2))
        dst = ARCFACE_TEMPLATE + rng.normal(0, 2, (5, 2))
        assert np.allclose(similarity_transform(src, dst), _lstsq_similarity(src, dst), atol=1e-8)
    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE)


@pytest.mark.parametrize("template,size,ref", [("arcface", (112, 112), ARCFACE_TEMPLATE),
                                               ("sphereface", (96, 112), SPHEREFACE_TEMPLATE)])
def test_align_puts_landmarks_on_template(template, size, ref):
    # a photo where the face is rotated 25 degrees, scaled x2.3 and shifted; marks drawn at its landmarks
    ang, s, t = np.deg2rad(25), 2.3, np.array([130.0, 60.0])
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    landmarks = (s * ARCFACE_TEMPLATE @ rot.T) + t
    img = Image.new("RGB", (400, 400), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    for x, y in landmarks:
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(255, 255, 255))
    out = align_face(img, landmarks, template)
    assert out.size == size
    arr = np.asarray(out, np.float32)[:, :, 0]
    for x, y in ref:  # the brightest spot near each template point is on it (to within half a pixel)
        ys, xs = np.mgrid[0:arr.shape[0], 0:arr.shape[1]]
        w = arr * ((xs - x) ** 2 + (ys - y) ** 2 < 36)
        cx, cy = (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()
        assert abs(cx - x) < 0.5 and abs(cy - y) < 0.5, (template, x, y, cx, cy)
    assert np.allclose(SPHEREFACE_TEMPLATE, ARCFACE_TEMPLATE - [8, 0])


def test_align_batch_cli(tmp_path):
    (tmp_path / "raw" / "p1").mkdir(parents=True)
    Image.new("RGB", (250, 250), (90, 60, 30)).save(tmp_path / "raw" / "p1" / "a.png")
    lm = " ".join(f"{v:.2f}" for v in (ARCFACE_TEMPLATE * 2).ravel())
    (tmp_path / "lm.txt").write_text(f"p1/a.png {lm}\np1/missing.jpg {lm}\n")
    rc = align_faces.main(["--input_dir", str(tmp_path / "raw"), "--landmark_file", str(tmp_path / "lm.txt"),
                           "--output_dir", str(tmp_path / "out")])
    assert rc == 0
    with Image.open(tmp_path / "out" / "p1" / "a.jpg") as im:
        assert im.size == (112, 112)
    (tmp_path / "bad.txt").write_text(f"p1/a.png {lm}\np1/a.png 1 2 3\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: expected"):
        align_faces.read_landmark_file(tmp_path / "bad.txt")


def test_real_lfw_pairs_and_crops(realdata):
    from Config import Config
    from Datasets import load_verification_set
    lfw = realdata / "lfw"
    vs = load_verification_set(f"{lfw / 'pairs.txt'}::{lfw / 'aligned_112x96'}", Config(input_size=[112, 96]))
    assert len(vs) == 6000 and vs.issame.sum() == 3000
    assert np.bincount(vs.folds).tolist() == [600] * 10
    x = vs.images[0]
    assert x.shape == (3, 112, 96) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    first = (lfw / "pairs.txt").read_text().splitlines()[1].split("\t")
    assert Path(vs.images.path(vs.pairs()[0, 0])).name == f"{first[0]}_{int(first[1]):04d}.jpg"
    assert len(vs.images) == 7701  # the distinct images of the 6,000 pairs
