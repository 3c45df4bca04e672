"""MegaFace_Evaluation.py end to end on a tiny devkit-style tree: extraction from a checkpoint, the .npy cache,
matio output and input, cleaning, and the report against the metric math run here on the same features."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from PIL import Image

import MegaFace_Evaluation
from Utils.evaluation.megaface_metrics import evaluate_megaface, l2_normalize


def _tree(tmp_path):
    rng = np.random.default_rng(0)
    probes = [(f"P{i}/P{i}_{k}.png", f"P{i}") for i in range(3) for k in range(3)]
    distractors = [f"{i:03d}/d{i}_0.jpg" for i in range(12)]
    for rel, _ in probes:
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(tmp_path / "fs" / rel)
    for rel in distractors:
        (tmp_path / "mf" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (120, 100, 3), dtype=np.uint8)).save(tmp_path / "mf" / rel)
    lists = tmp_path / "templatelists"
    lists.mkdir()
    (lists / "facescrub_features_list.json").write_text(json.dumps({"path": [p for p, _ in probes],
                                                                     "id": [i for _, i in probes]}))
    (lists / "megaface_features_list.json_4_1").write_text(json.dumps({"path": distractors[8:]}))
    (lists / "megaface_features_list.json_12_1").write_text(json.dumps({"path": distractors}))
    (tmp_path / "fs_noise.txt").write_text("#c\nP1_2.png\n")
    (tmp_path / "mf_noise.txt").write_text("#c\n005/d5_0.jpg\n")
    return probes, distractors


@pytest.fixture
def checkpoint(tmp_path):
    import torch

    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta, save_checkpoint
    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 128, (112, 112))
    path = tmp_path / "model.pt"
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, [112, 112], "RGB")},
                    path)
    return path


def _base_args(tmp_path):
    return [f"--probe_list={tmp_path / 'templatelists' / 'facescrub_features_list.json'}",
            f"--probe_root={tmp_path / 'fs'}", f"--distractor_lists={tmp_path / 'templatelists'}",
            f"--distractor_root={tmp_path / 'mf'}", "--device=cpu", "--num_workers=0", "--no_progress",
            "--batch_size=16", "--max_rank=4", "--fars=1e-2,0.1", "--precision=bf16"]


def _read_matio(path):
    with open(path, "rb") as f:
        rows, cols, stride, cv_type = struct.unpack("<4i", f.read(16))
        return (rows, cols, stride, cv_type), np.frombuffer(f.read(), "<f4")


def test_checkpoint_to_report(tmp_path, checkpoint, capsys):
    probes, distractors = _tree(tmp_path)
    out = tmp_path / "out"
    args = _base_args(tmp_path) + [f"--checkpoint={checkpoint}", f"--output_dir={out}", "--name=mf",
                                   f"--write_matio={tmp_path / 'feats'}", "--features_suffix=_mfn.bin"]
    assert MegaFace_Evaluation.main(args) == 0
    report = json.loads((out / "mf.json").read_text())
    assert report["cleaned"] == {"facescrub": False, "megaface": False}
    assert report["num_probes"] == 9 and report["num_identities"] == 3
    assert set(report["results"]) == {"4", "12"}
    for name in ("mf_cmc.png", "mf_rank1.png", "mf_roc.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # matio files: one column of floats per image, under the devkit's names
    header, p0 = _read_matio(tmp_path / "feats" / "facescrub" / (probes[0][0] + "_mfn.bin"))
    assert header == (128, 1, 4, 5)
    p_feats = np.stack([_read_matio(tmp_path / "feats" / "facescrub" / (p + "_mfn.bin"))[1] for p, _ in probes])
    d_feats = np.stack([_read_matio(tmp_path / "feats" / "megaface" / (d + "_mfn.bin"))[1] for d in distractors])
    np.testing.assert_allclose(np.linalg.norm(p_feats, axis=1), 1, atol=1e-5)
    labels = np.repeat(np.arange(3), 3)
    for n, subset in ((4, d_feats[8:]), (12, d_feats)):
        ref = evaluate_megaface(p_feats, labels, subset, max_rank=4, fars=[1e-2, 0.1], precision="fp32",
                                progress=False)
        got = report["results"][str(n)]
        assert got["identification"]["cmc"] == pytest.approx(ref["identification"]["cmc"], abs=1e-12)
        assert [r["tar"] for r in got["verification"]["tar_at_far"]] == \
            pytest.approx([r["tar"] for r in ref["verification"]["tar_at_far"]], abs=1e-12)
    assert (out / "mf_features" / "distractors.npy").is_file()

    # second run: features come from the cache (no checkpoint load needed for them), cleaning on
    args2 = _base_args(tmp_path) + [f"--checkpoint={checkpoint}", f"--output_dir={out}", "--name=mf", "--sizes=12",
                                    f"--facescrub_noises={tmp_path / 'fs_noise.txt'}",
                                    f"--megaface_noises={tmp_path / 'mf_noise.txt'}", "--no_plots"]
    assert MegaFace_Evaluation.main(args2) == 0
    assert "cache" in capsys.readouterr().out
    report2 = json.loads((out / "mf.json").read_text())
    assert report2["cleaned"]["facescrub"] and report2["cleaned"]["megaface"]
    assert report2["cleaned"]["facescrub_replaced"] == 1 and report2["cleaned"]["megaface_removed"] == {"12": 1}
    res = report2["results"]["12"]
    assert res["num_distractors"] == 11 and res["verification"]["num_impostors"] == 9 * 12

    # third run: the matio files as input, no checkpoint
    args3 = _base_args(tmp_path) + [f"--probe_features_dir={tmp_path / 'feats' / 'facescrub'}",
                                    f"--distractor_features_dir={tmp_path / 'feats' / 'megaface'}",
                                    "--features_suffix=_mfn.bin", f"--output_dir={tmp_path / 'out3'}", "--no_plots"]
    assert MegaFace_Evaluation.main(args3) == 0
    report3 = json.loads((tmp_path / "out3" / "megaface.json").read_text())
    assert report3["results"]["12"]["identification"] == report["results"]["12"]["identification"]


@pytest.mark.parametrize("extra, message", [
    (["--sizes=20"], "no distractor list of size 20"),
    (["--fars=0"], "--fars"),
    (["--chunk_size=0"], "--chunk_size"),
    ([], "give --checkpoint"),
])
def test_bad_input_is_one_line(tmp_path, capsys, extra, message):
    _tree(tmp_path)
    args = _base_args(tmp_path) + [f"--output_dir={tmp_path / 'o'}", "--feature_cache=none"] + extra
    assert MegaFace_Evaluation.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_probe_lists_without_data_flag(capsys):
    assert MegaFace_Evaluation.main(["--device=cpu"]) == 2
    assert "no data" in capsys.readouterr().err
