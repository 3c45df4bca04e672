"""Every path a run needs is checked before any heavy work: a bad one is one line naming the key, exit status 2,
and neither the synthetic set nor a run directory has been written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from _train_fixtures import tiny_config

from Datasets.errors import DataPathError
from Utils.training.preflight import preflight

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--synthetic_identities=4", "--synthetic_images_per_identity=2", "--synthetic_val_pairs=20",
         "--input_size=[32,32]", "--num_workers=0", "--compile=false", "--epochs=1"]


def _train(tmp_path, *extra):
    args = [sys.executable, "Train.py", *SMALL, f"--data_root={tmp_path / 'data'}",
            f"--output_dir={tmp_path / 'runs'}", *extra]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_missing_val_set_is_reported_before_the_synthetic_set_is_generated(tmp_path):
    missing = tmp_path / "nope" / "lfw.bin"
    proc = _train(tmp_path, f"--val_sets=synthetic,{missing}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == f"error: val_sets: no such file or directory: {missing}"
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("case", ["train_root", "train_list", "rec_idx", "train_sets", "val_root", "resume", "resume_dir",
                                  "output_dir_is_file", "output_dir_readonly"])
def test_each_needed_path_is_checked(tmp_path, case):
    good_root = tmp_path / "faces"
    good_root.mkdir()
    (tmp_path / "pairs.txt").write_text("10\n")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    settings = {
        "train_root": (dict(train_format="folder", train_root=str(tmp_path / "missing")), "train_root", "missing"),
        "train_list": (dict(train_format="folder", train_root=str(good_root)), "train_list", "train_list.txt"),
        "rec_idx": (dict(train_format="rec", train_root=str(good_root)), "train_root", "train.rec"),
        "train_sets": (dict(train_sets=["synthetic:", f"rec:{good_root}"]), f"train_sets 'rec:{good_root}'", "train.rec"),
        "val_root": (dict(val_sets=[f"{tmp_path / 'pairs.txt'}::{tmp_path / 'imgs'}"]), "val_sets", "imgs"),
        "resume": (dict(resume=str(tmp_path / "run" / "last.pt")), "resume", "last.pt"),
        "resume_dir": (dict(resume=str(good_root)), "resume", "last.pt"),
        "output_dir_is_file": (dict(output_dir=str(a_file / "runs")), "output_dir", "file.txt"),
        "output_dir_readonly": (dict(output_dir=str(good_root / "runs")), "output_dir", "faces"),
    }
    overrides, key, named = settings[case]
    if case == "output_dir_readonly":
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders anyway")
        good_root.chmod(0o500)
    cfg = tiny_config(tmp_path, **overrides)
    try:
        with pytest.raises(DataPathError) as err:
            preflight(cfg)
    finally:
        good_root.chmod(0o700)
    assert str(err.value).startswith(f"{key}: ") and named in str(err.value) and "\n" not in str(err.value)


def test_good_paths_pass(tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    (root / "train_list.txt").write_text("a/1.jpg 0\n")
    preflight(tiny_config(tmp_path, train_format="folder", train_root=str(root), val_sets=["synthetic"]))
    assert not (tmp_path / "runs").exists()  # checking writes nothing
