"""The evaluation scripts' data flags: --data=synthetic, spelled the same in every script, evaluates the
synthetic set the checkpoint's run used (not the default one), and result files never overwrite each other
silently. A tiny run is trained once; the scripts run in process."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import Train
from _train_fixtures import TinyTestNet  # noqa: F401  (registers the TinyTestNet backbone)
from Datasets import save_bin
from Utils.evaluation import megaface_cli, verification_cli


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run on a synthetic set far from the defaults (6 identities, 40 pairs, 2 probe identities, 10 distractors)."""
    root = tmp_path_factory.mktemp("run")
    flags = dict(backbone="TinyTestNet", input_size="[32,32]", synthetic_identities=6, synthetic_images_per_identity=4,
                 synthetic_val_pairs=40, synthetic_probe_identities=2, synthetic_distractors=10, batch_size=8,
                 epochs=1, num_workers=0, compile="false", use_amp="false", eval_at_start="false",
                 data_root=root / "data", output_dir=root / "runs", run_name="r")
    assert Train.main([f"--{k}={v}" for k, v in flags.items()]) == 0
    return root


def _lfw(*args: str) -> int:
    return verification_cli.main(["--device=cpu", "--num_workers=0", "--no_progress", *args], dataset="LFW",
                                 prog="LFW_Evaluation.py")


def _bin(path, pairs: int, seed: int):
    rng = np.random.default_rng(seed)
    bins = []
    for _ in range(2 * pairs):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        bins.append(buf.getvalue())
    save_bin(path, bins, [i % 2 == 0 for i in range(pairs)])
    return path


def test_data_synthetic_evaluates_the_checkpoints_own_synthetic_set(run, tmp_path):
    ckpt = run / "runs" / "r" / "best.pt"
    sets_before = sorted(os.listdir(run / "data"))
    assert _lfw(f"--checkpoint={ckpt}", "--data=synthetic", f"--output_dir={tmp_path}") == 0
    report = json.loads((tmp_path / "synthetic_face_pytorch.json").read_text())
    assert report["n_pairs"] == 40  # the run's synthetic_val_pairs, not the default 3000
    assert sorted(os.listdir(run / "data")) == sets_before  # no default set generated beside it

    # MegaFace: the same spelling, the same set (2 probe identities x 10 images, 10 distractors)
    out = tmp_path / "mf"
    assert megaface_cli.main([f"--checkpoint={ckpt}", "--data=synthetic", "--device=cpu", "--num_workers=0",
                              "--no_progress", "--no_plots", f"--output_dir={out}"]) == 0
    report = json.loads((out / "megaface_synthetic.json").read_text())
    assert report["num_probes"] == 20 and report["num_identities"] == 2 and max(map(int, report["results"])) == 10
    # the old spelling still works, with a note
    assert megaface_cli.main([f"--checkpoint={ckpt}", "--synthetic", "--device=cpu", "--num_workers=0",
                              "--no_progress", "--no_plots", f"--output_dir={out}"]) == 0
    assert sorted(os.listdir(run / "data")) == sets_before


def test_result_files_do_not_overwrite_each_other_silently(run, tmp_path, capsys):
    ckpt = run / "runs" / "r" / "best.pt"
    real, other = _bin(tmp_path / "lfw.bin", 20, 0), _bin(tmp_path / "other.bin", 20, 1)
    out = tmp_path / "eval"
    assert _lfw(f"--checkpoint={ckpt}", "--data=synthetic", f"--output_dir={out}") == 0
    assert _lfw(f"--checkpoint={ckpt}", f"--data={real}", f"--output_dir={out}") == 0
    assert {"synthetic_face_pytorch.json", "lfw_face_pytorch.json"} <= set(os.listdir(out))
    assert json.loads((out / "synthetic_face_pytorch.json").read_text())["data"] == "synthetic"
    assert _lfw(f"--checkpoint={ckpt}", f"--data={real}", f"--output_dir={out}") == 0  # a rerun replaces its own
    capsys.readouterr()
    # another data set under the same name is refused in one line, the old result kept
    assert _lfw(f"--checkpoint={ckpt}", f"--data={other}", f"--output_dir={out}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err
    assert json.loads((out / "lfw_face_pytorch.json").read_text())["data"] == str(real)
    assert _lfw(f"--checkpoint={ckpt}", f"--data={other}", f"--output_dir={out}", "--overwrite") == 0
    assert json.loads((out / "lfw_face_pytorch.json").read_text())["data"] == str(other)
