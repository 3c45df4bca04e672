"""Untrusted checkpoint files: every reader loads with weights_only, so a file whose unpickling would run code is
refused (one line naming it and the flag) before any of its objects is built; our own checkpoints load that way."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _train_fixtures import PatternFaces, tiny_config

import Train
from Utils.checkpoint import UntrustedFileError, load_backbone, load_checkpoint, read_torch_file

REPO = Path(__file__).resolve().parents[1]


class _CreatesFile:
    """Unpickling this calls builtins.open(marker, "w"): the file appearing proves the pickle's code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _evil_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "downloaded.pt"
    torch.save({"backbone": {"w": torch.ones(2)}, "meta": {"backbone": "TinyTestNet"}, "x": _CreatesFile(marker)},
               path)
    assert not marker.exists()
    return path, marker


def test_crafted_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    for load in (lambda: read_torch_file(path), lambda: load_checkpoint(path), lambda: load_backbone(path)):
        with pytest.raises(UntrustedFileError) as err:
            load()
        msg = str(err.value)
        assert str(path) in msg and "--trust_checkpoint=true" in msg and "\n" not in msg
        assert not marker.exists()
    # knowingly trusted: it loads, and so its code runs (which is why this is opt-in)
    assert load_checkpoint(path, trust=True)["backbone"]["w"].tolist() == [1.0, 1.0]
    assert marker.exists()


def test_evaluation_script_refuses_crafted_checkpoint(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "LFW_Evaluation.py", f"--checkpoint={path}", "--data=synthetic",
                           f"--output_dir={out}", "--device=cpu"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "--trust_checkpoint" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not marker.exists() and not out.exists()


def test_resume_refuses_crafted_checkpoint(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(UntrustedFileError, match="--trust_checkpoint"):
        Train.setup(tiny_config(tmp_path, backbone="TinyTestNet", resume=str(path), write_nothing=True),
                    dataset=PatternFaces())
    assert not marker.exists()


def test_resume_on_the_command_line_refuses_crafted_checkpoint(tmp_path, capsys):
    # --resume=<a lone checkpoint file> reads the run's settings from it before anything else: weights_only too
    path, marker = _evil_checkpoint(tmp_path)
    assert Train.main([f"--resume={path}", f"--output_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "--trust_checkpoint" in err[0], err
    assert not marker.exists()


def test_model_import_reader_refuses_with_its_own_flag(tmp_path):
    from Utils.tools.model_import.mapping import read_foreign_weights

    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(UntrustedFileError, match="--trust_pickle=true"):
        read_foreign_weights(path)
    assert not marker.exists()


def test_training_checkpoints_load_with_weights_only(tmp_path):
    Train.train(tiny_config(tmp_path, run_name="w", backbone="TinyTestNet", epochs=1), dataset=PatternFaces())
    run = tmp_path / "runs" / "w"
    assert (run / "last.pt").is_file()
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            torch.load(run / name, map_location="cpu", weights_only=True)  # raises if anything needs pickling


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    import random

    from Utils.training.state import rng_state, set_rng_state

    np.random.seed(123)
    np.random.standard_normal()  # leaves a cached gaussian: part of numpy's state too
    torch.save({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = (np.random.standard_normal(3), np.random.random_sample(3), random.random(), torch.rand(3))
    np.random.seed(999), random.seed(999), torch.manual_seed(999)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])
    got = (np.random.standard_normal(3), np.random.random_sample(3), random.random(), torch.rand(3))
    assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])
    assert expected[2] == got[2] and torch.equal(expected[3], got[3])


def test_old_checkpoint_with_numpy_state_needs_the_flag_and_loads_with_it(tmp_path, capsys):
    """A checkpoint written before RNG states were tensors (numpy arrays inside) is refused, naming the flag; with
    --trust_checkpoint=true the evaluation runs on it."""
    import io as _io
    import pickle

    from PIL import Image

    from Backbones import get_backbone
    from Utils.checkpoint import backbone_meta
    from Utils.evaluation.verification_cli import main

    torch.manual_seed(0)
    old = tmp_path / "old.pt"
    torch.save({"backbone": get_backbone("TinyTestNet", 16, (32, 32)).state_dict(),
                "meta": backbone_meta("TinyTestNet", 16, (32, 32), "RGB"),
                "rng": {"numpy": np.random.get_state()}}, old)
    rng = np.random.default_rng(0)
    bins = []
    for _ in range(40):
        buf = _io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, format="PNG")
        bins.append(buf.getvalue())
    with open(tmp_path / "v.bin", "wb") as f:
        pickle.dump((bins, [k % 2 == 0 for k in range(20)]), f, protocol=4)
    args = [f"--checkpoint={old}", f"--data={tmp_path / 'v.bin'}", "--device=cpu", "--num_workers=0",
            "--no_progress", f"--output_dir={tmp_path / 'out'}"]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {old}: refused") and "--trust_checkpoint=true" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
    assert main(args + ["--trust_checkpoint=true"]) == 0
    assert (tmp_path / "out").is_dir()
