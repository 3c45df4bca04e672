"""SIGTERM (cluster pre-emption) and SIGINT during training: the real Train.py in a subprocess gets the signal after
its first step, finishes that step, saves a resumable last.pt, exits with status 3; --resume then ends with the very
weights (torch.equal) of a run that was never interrupted."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# MobileFaceNet at 32x32 on 64 synthetic images: 8 steps per epoch, 24 in all, a few seconds on one core
ARGS = ["--synthetic_identities=8", "--synthetic_images_per_identity=8", "--synthetic_val_pairs=20",
        "--synthetic_probe_identities=0", "--synthetic_distractors=0", "--input_size=[32,32]", "--num_workers=0",
        "--compile=false", "--use_amp=false", "--channels_last=false", "--epochs=3", "--batch_size=8",
        "--val_sets=[]", "--eval_at_start=false", "--log_every=1", "--milestones=[100]", "--warmup_epochs=0",
        "--dropout=0.2", "--embedding_size=32", "--lr_schedule=cosine"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same threads, same float sums


def _cmd(tmp_path, *extra):
    return [sys.executable, "Train.py", *ARGS, f"--data_root={tmp_path / 'data'}",
            f"--output_dir={tmp_path / 'runs'}", *extra]


def _train_steps(run: Path) -> list[int]:
    path = run / "history.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip().endswith("}")]
    return [r["iteration"] for r in lines if r.get("kind") == "train"]


def _weights(path: Path) -> dict:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return {**{f"b.{k}": v for k, v in ckpt["backbone"].items()}, **{f"h.{k}": v for k, v in ckpt["head"].items()}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The synthetic set (generated once, cached under data/) and an uninterrupted run's final weights."""
    root = tmp_path_factory.mktemp("signals")
    full = subprocess.run(_cmd(root, "--run_name=full"), cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert full.returncode == 0, full.stderr[-2000:]
    return root, _weights(root / "runs" / "full" / "last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_resumable_checkpoint_and_resume_matches_uninterrupted(reference, sig):
    tmp_path, a = reference
    name = f"cut_{signal.Signals(sig).name}"
    run = tmp_path / "runs" / name
    proc = subprocess.Popen(_cmd(tmp_path, f"--run_name={name}"), cwd=REPO, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not _train_steps(run) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, (proc.returncode, err[-2000:])
    stopped_at = torch.load(run / "last.pt", map_location="cpu", weights_only=True)["iteration"]
    assert 1 <= stopped_at < 24, "the signal came too late to test anything"
    assert f"{signal.Signals(sig).name} received: stopped after iteration {stopped_at}" in out
    assert "--resume=" in out and "Traceback" not in err

    resumed = subprocess.run(_cmd(tmp_path, f"--resume={run / 'last.pt'}"), cwd=REPO, env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    b = _weights(run / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert _train_steps(run) == list(range(1, 25))  # each step logged once, none lost or repeated


def test_stop_signals_sets_a_flag_and_restores_the_handler():
    from Utils.training.distributed import DistContext
    from Utils.training.signals import StopSignals

    before = signal.getsignal(signal.SIGTERM)
    ctx = DistContext()
    with StopSignals() as stops:
        assert not stops.requested(ctx)
        os.kill(os.getpid(), signal.SIGTERM)  # would end pytest without the handler
        time.sleep(0.01)
        assert stops.requested(ctx) and stops.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


def test_dataloader_workers_ignore_stop_signals():
    """The training loader's worker_init_fn makes a worker survive a SIGTERM/SIGINT sent to the process group."""
    script = ("import os, signal, sys; sys.path.insert(0, %r)\n"
              "from Utils.training.build import _seed_worker\n"
              "_seed_worker(0)\n"
              "os.kill(os.getpid(), signal.SIGTERM); os.kill(os.getpid(), signal.SIGINT)\n"
              "print('alive')\n" % str(REPO))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", (proc.returncode, proc.stderr[-500:])
