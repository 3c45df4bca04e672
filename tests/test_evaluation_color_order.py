"""The colour order stored in a checkpoint reaches the evaluation scripts (LFW, AgeDB-30, CFP-FP, MegaFace).

Reference without the code under test: a BGR checkpoint of weights w must embed exactly like an RGB checkpoint whose
first convolution has its input channels reversed (that network, fed RGB, computes what w computes on BGR), and
differently from the RGB checkpoint of w itself. The test images are coloured (independent random channels), so
ignoring the stored order changes the scores.
"""
from __future__ import annotations

import csv
import io
import json
import pickle
import runpy
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import _train_fixtures  # noqa: F401  (registers TinyTestNet, a fast backbone)
from Backbones import get_backbone
from Utils.checkpoint import backbone_meta, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _first_conv_key(state: dict) -> str:
    return next(k for k, v in state.items() if v.ndim == 4 and v.shape[1] == 3)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{"bgr": w with BGR meta, "rgb_reversed": w with the first conv's input channels reversed, RGB meta,
    "rgb": w with RGB meta}."""
    root = tmp_path_factory.mktemp("colour")
    torch.manual_seed(0)
    state = get_backbone("TinyTestNet", 16, (32, 32)).state_dict()
    reversed_state = dict(state)
    key = _first_conv_key(state)
    reversed_state[key] = state[key].flip(1)
    paths = {}
    for name, weights, order in (("bgr", state, "BGR"), ("rgb_reversed", reversed_state, "RGB"),
                                 ("rgb", state, "RGB")):
        paths[name] = root / f"{name}.pt"
        save_checkpoint({"backbone": weights, "meta": backbone_meta("TinyTestNet", 16, (32, 32), order)},
                        paths[name])
    return paths


def _coloured_png(rng) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _run_script(script: str, argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [script, *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    return done.value.code


def _thresholds(path) -> np.ndarray:
    with open(path) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return np.array([float(r["score_threshold"]) for r in rows if r["score_threshold"] != "inf"])


@pytest.mark.parametrize("script,stem", [("LFW_Evaluation.py", "lfw"), ("AgeDB-30_Evaluation.py", "agedb-30"),
                                         ("CFP-FP_Evaluation.py", "cfp-fp")])
def test_verification_scripts_use_the_stored_colour_order(tmp_path, checkpoints, monkeypatch, script, stem):
    rng = np.random.default_rng(1)
    bins = [_coloured_png(rng) for _ in range(40)]
    with open(tmp_path / "c.bin", "wb") as f:
        pickle.dump((bins, [k % 2 == 0 for k in range(20)]), f, protocol=2)
    monkeypatch.chdir(REPO)
    scores = {}
    for name, ckpt in checkpoints.items():
        out = tmp_path / name
        code = _run_script(script, [f"--checkpoint={ckpt}", f"--data={tmp_path / 'c.bin'}", "--device=cpu",
                                    "--batch_size=8", "--num_workers=0", "--no_progress", f"--output_dir={out}"],
                           monkeypatch)
        assert code == 0
        report = json.loads(next(out.glob("*.json")).read_text())
        assert report["color_order"] == ("BGR" if name == "bgr" else "RGB")
        scores[name] = _thresholds(next(out.glob("*_roc.csv")))
    assert scores["bgr"].shape == scores["rgb_reversed"].shape
    np.testing.assert_allclose(scores["bgr"], scores["rgb_reversed"], atol=1e-5)
    assert scores["bgr"].shape != scores["rgb"].shape or np.abs(scores["bgr"] - scores["rgb"]).max() > 1e-3


def _megaface_tree(root, rng):
    probes = [(f"P{i}/P{i}_{k}.png", f"P{i}") for i in range(3) for k in range(2)]
    distractors = [f"{i:03d}/d{i}.png" for i in range(6)]
    for rel in [p for p, _ in probes]:
        (root / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "fs" / rel).write_bytes(_coloured_png(rng))
    for rel in distractors:
        (root / "mf" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "mf" / rel).write_bytes(_coloured_png(rng))
    lists = root / "templatelists"
    lists.mkdir()
    (lists / "facescrub_features_list.json").write_text(json.dumps({"path": [p for p, _ in probes],
                                                                     "id": [i for _, i in probes]}))
    (lists / "megaface_features_list.json_6_1").write_text(json.dumps({"path": distractors}))
    return [p for p, _ in probes] + distractors


def test_megaface_script_uses_the_stored_colour_order(tmp_path, checkpoints, monkeypatch):
    files = _megaface_tree(tmp_path, np.random.default_rng(2))
    monkeypatch.chdir(REPO)
    feats = {}
    for name, ckpt in checkpoints.items():
        out = tmp_path / f"feats_{name}"
        code = _run_script("MegaFace_Evaluation.py", [
            f"--probe_list={tmp_path / 'templatelists' / 'facescrub_features_list.json'}",
            f"--probe_root={tmp_path / 'fs'}", f"--distractor_lists={tmp_path / 'templatelists'}",
            f"--distractor_root={tmp_path / 'mf'}", "--device=cpu", "--num_workers=0", "--no_progress",
            "--batch_size=8", "--max_rank=2", "--fars=0.1", "--precision=fp32", "--feature_cache=none",
            "--no_plots", f"--checkpoint={ckpt}", f"--output_dir={tmp_path / ('out_' + name)}",
            f"--write_matio={out}", "--features_suffix=_x.bin"], monkeypatch)
        assert code == 0
        rows = []
        for rel in files:
            sub = "facescrub" if rel.startswith("P") else "megaface"
            data = (out / sub / (rel + "_x.bin")).read_bytes()
            assert struct.unpack("<4i", data[:16])[:2] == (16, 1)
            rows.append(np.frombuffer(data[16:], "<f4"))
        feats[name] = np.stack(rows)
    np.testing.assert_allclose(feats["bgr"], feats["rgb_reversed"], atol=1e-5)
    assert np.abs(feats["bgr"] - feats["rgb"]).max() > 1e-2

