"""The verification scripts end to end, as a user runs them: a tiny .bin written here with pickle, a tiny project
checkpoint, subprocesses; then the exit status, the JSON, the ROC PNG/CSV, and one-line errors for bad input."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
N_PAIRS = 30


def _write_bin(path: Path) -> list[bool]:
    """insightface layout: pickle of (list of 2N encoded images, N bools); same pairs = one face, two noisy copies."""
    rng = np.random.default_rng(0)
    bins, issame = [], []
    for k in range(N_PAIRS):
        same = k % 2 == 0
        a = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        b = a if same else rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
        for img in (a, b):
            noisy = np.clip(img.astype(int) + rng.integers(-8, 9, img.shape), 0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(noisy).save(buf, format="PNG")
            bins.append(buf.getvalue())
        issame.append(same)
    with open(path, "wb") as f:
        pickle.dump((bins, issame), f, protocol=2)
    return issame


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import torch

    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta, save_checkpoint

    root = tmp_path_factory.mktemp("eval")
    _write_bin(root / "tiny.bin")
    torch.manual_seed(0)
    model = get_backbone("MobileFaceNet", 128, (112, 112))
    save_checkpoint({"backbone": model.state_dict(), "meta": backbone_meta("MobileFaceNet", 128, (112, 112), "RGB"),
                     "config": {}}, root / "model.pt")
    return root


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    # one intra-op thread: on a busy shared CPU, spinning worker threads make a small forward pass ~10x slower
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.parametrize("script,protocol", [
    ("LFW_Evaluation.py", "face_pytorch"),
    pytest.param("CFP-FP_Evaluation.py", "insightface", marks=pytest.mark.slow),  # same path, other protocol
])
def test_script_end_to_end(inputs, script, protocol):
    out = inputs / f"out_{protocol}"
    proc = _run(script, f"--checkpoint={inputs / 'model.pt'}", f"--data={inputs / 'tiny.bin'}",
                f"--protocol={protocol}", "--device=cpu", "--batch_size=16", "--num_workers=0", "--no_progress",
                f"--output_dir={out}")
    assert proc.returncode == 0, proc.stderr
    name = "lfw" if script.startswith("LFW") else "cfp-fp"
    report = json.loads((out / f"{name}_{protocol}.json").read_text())
    assert report["protocol"] == protocol and report["n_pairs"] == N_PAIRS and report["n_same"] == N_PAIRS // 2
    assert len(report["fold_accuracies"]) == 10 and all(0.0 <= a <= 1.0 for a in report["fold_accuracies"])
    assert report["accuracy"] == pytest.approx(np.mean(report["fold_accuracies"]))
    assert report["backbone"] == "MobileFaceNet" and report["input_size"] == [112, 112]
    assert set(report["tar_at_far"]) == {"1e-01", "1e-02", "1e-03", "1e-04"} and 0.0 <= report["eer"] <= 1.0
    if protocol == "insightface":
        assert "val" in report and report["far_target"] == 1e-3
    assert (out / f"{name}_{protocol}_roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / f"{name}_{protocol}_roc.csv").read_text().count("\n") > 3
    assert "+-" in proc.stdout and "fold" in proc.stdout  # the per-fold table and mean +- std


@pytest.mark.parametrize("args,expect", [
    (["--data=/nonexistent/lfw.bin"], "no such file"),
    (["--checkpoint=/nonexistent/model.pt"], "no such file"),
    (["--protocol=facenet"], "invalid choice"),
    (["--batch-size=4"], "unrecognized"),
    (["--pairs=x.txt"], "give either"),
])
def test_bad_input_is_one_line_error(inputs, args, expect):
    base = {"--checkpoint": f"--checkpoint={inputs / 'model.pt'}", "--data": f"--data={inputs / 'tiny.bin'}"}
    for a in args:
        base[a.split("=")[0]] = a
    proc = _run("AgeDB-30_Evaluation.py", *base.values())
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], proc.stderr


def test_corrupt_bin_is_one_line_error(inputs):
    bad = inputs / "corrupt.bin"
    bad.write_bytes(b"not a pickle at all")
    proc = _run("LFW_Evaluation.py", f"--checkpoint={inputs / 'model.pt'}", f"--data={bad}", "--device=cpu")
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "corrupt.bin" in lines[0], proc.stderr
