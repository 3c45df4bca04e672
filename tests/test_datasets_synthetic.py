"""The synthetic face set: real on-disk formats (read back by independent parsers here), held-out verification
identities, determinism, the parameter-keyed cache, and a difficulty knob that really adds nuisance."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from Config import Config
from Datasets import build_train_dataset, ensure_synthetic, load_verification_set
from Datasets import synthetic as synthetic_module
from Datasets.synthetic_faces import make_identity, render_face


def tiny_cfg(root, **kw) -> Config:
    cfg = Config(data_root=str(root), synthetic_identities=5, synthetic_images_per_identity=3, synthetic_val_pairs=40,
                 synthetic_probe_identities=2, synthetic_distractors=12)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "meta.json"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return ensure_synthetic(tiny_cfg(root), workers=1), root


def test_training_folder_and_list(generated):
    paths, _ = generated
    lines = Path(paths.train_list).read_text().splitlines()
    on_disk = sorted(os.path.relpath(os.path.join(d, f), paths.train_root)
                     for d, _, fs in os.walk(paths.train_root) for f in fs)
    assert sorted(ln.split()[0] for ln in lines) == on_disk and len(on_disk) == 15
    for ln in lines:  # one identity folder per label
        rel, label = ln.split()
        assert int(label) == int(rel.split("/")[0].split("_")[1])
    with Image.open(os.path.join(paths.train_root, on_disk[0])) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (112, 112)
    ds = build_train_dataset(tiny_cfg(Path(paths.root).parent))
    assert ds.num_classes == 5 and len(ds) == 15


def test_verification_pairs_lfw_layout(generated):
    paths, _ = generated
    lines = Path(paths.val_pairs).read_text().splitlines()
    assert lines[0] == "10\t2" and len(lines) == 1 + 40
    train_ids = set(os.listdir(paths.train_root))
    seen_per_fold: list[set] = []
    for fold in range(10):
        block = [ln.split("\t") for ln in lines[1 + 4 * fold: 5 + 4 * fold]]
        assert [len(b) for b in block] == [3, 3, 4, 4]
        names = {b[0] for b in block} | {b[2] for b in block if len(b) == 4}
        assert not names & train_ids  # held out from training
        seen_per_fold.append(names)
        for b in block:
            for name, num in ((b[0], b[1]), (b[-2], b[-1])) if len(b) == 4 else ((b[0], b[1]), (b[0], b[2])):
                assert os.path.isfile(os.path.join(paths.val_root, name, f"{name}_{int(num):04d}.jpg"))
            if len(b) == 3:
                assert b[1] != b[2]
            else:
                assert b[0] != b[2]
    for a in range(10):  # folds use disjoint identities, as LFW's do
        for b in range(a + 1, 10):
            assert not seen_per_fold[a] & seen_per_fold[b]
    vs = load_verification_set("synthetic", tiny_cfg(Path(paths.root).parent))
    assert vs.issame.tolist() == [True, True, False, False] * 10
    assert vs.folds.tolist() == [k // 4 for k in range(40)]


def test_megaface_lists(generated):
    paths, _ = generated
    probes = json.loads(Path(paths.probe_list).read_text())
    assert set(probes) == {"path", "id"} and len(probes["path"]) == 2 * 10 and len(set(probes["id"])) == 2
    for p, i in zip(probes["path"], probes["id"]):
        assert p.split("/")[0] == i and os.path.isfile(os.path.join(paths.probe_root, p))
    assert sorted(paths.distractor_lists) == [10, 12]
    small = json.loads(Path(paths.distractor_lists[10]).read_text())["path"]
    full = json.loads(Path(paths.distractor_lists[12]).read_text())["path"]
    assert full[:10] == small and len(set(full)) == 12  # nested, as the devkit's lists are
    assert all(os.path.isfile(os.path.join(paths.distractor_root, p)) for p in full)
    meta = json.loads(Path(paths.meta).read_text())
    assert meta["color_order"] == "RGB" and meta["identities"] == 5


def test_deterministic_across_processes_and_cached(generated, tmp_path, monkeypatch):
    paths, _ = generated
    again = ensure_synthetic(tiny_cfg(tmp_path), workers=2)  # a pool, other order: same bytes
    assert tree_digest(Path(again.root)) == tree_digest(Path(paths.root))
    monkeypatch.setattr(synthetic_module, "_generate", lambda *a: pytest.fail("regenerated a cached set"))
    assert ensure_synthetic(tiny_cfg(tmp_path)).root == again.root
    monkeypatch.undo()
    harder = ensure_synthetic(tiny_cfg(tmp_path, synthetic_difficulty=0.9), workers=1)
    assert harder.root != again.root
    assert tree_digest(Path(harder.root)) != tree_digest(Path(again.root))
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary folder left behind


def test_sphereface_size(tmp_path):
    paths = ensure_synthetic(tiny_cfg(tmp_path, input_size=[112, 96], synthetic_distractors=0,
                                      synthetic_probe_identities=0), workers=1)
    with Image.open(Path(paths.train_root) / "id_00000" / "0000.jpg") as im:
        assert im.size == (96, 112)


def test_identities_are_fixed_and_distinct():
    a, b = make_identity(1, 0, 3), make_identity(1, 0, 3)
    assert a.head_w == b.head_w and np.array_equal(a.skin, b.skin)
    others = [make_identity(1, 0, i) for i in range(50)]
    assert len({(round(o.head_w, 6), round(o.eye_dx, 6)) for o in others}) == 50
    held_out = make_identity(1, 1, 3)  # same index, other role: another person
    assert held_out.head_w != a.head_w


def test_difficulty_adds_within_identity_variation():
    def spread(d):
        imgs = np.stack([np.asarray(render_face(5, 0, i, k, difficulty=d), np.float32)
                         for i in range(3) for k in range(6)]).reshape(3, 6, -1)
        return float(np.mean([np.linalg.norm(x - x.mean(0), axis=1).mean() for x in imgs]))
    easy, hard = spread(0.0), spread(1.0)
    assert hard > 1.5 * easy, (easy, hard)
