"""Resume equivalence and atomic checkpoints.

An uninterrupted run and the same run stopped after k iterations (max_iterations) then resumed from last.pt must
end with identical weights on CPU (torch.equal, bit for bit): this proves the checkpoint holds every piece of state
(mid-epoch position, optimizer momentum, LR schedule, RNGs behind dropout).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from _train_fixtures import PatternFaces, tiny_config

import Train
from Utils.checkpoint import load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _final_state(result):
    return {**{f"b.{k}": v.clone() for k, v in result.components.backbone.state_dict().items()},
            **{f"h.{k}": v.clone() for k, v in result.components.head.state_dict().items()}}


@pytest.mark.parametrize("stop_at,accum", [(3, 1), pytest.param(5, 2, marks=pytest.mark.slow)])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path, stop_at, accum):
    # dropout exercises the torch RNG, nesterov+weight decay the optimizer state, warmup+cosine the scheduler;
    # stop_at=3 stops mid-epoch (4 iterations per epoch with accum 1), stop_at=4 exactly at an epoch boundary
    common = dict(backbone="TinyTestNet", dropout=0.3, epochs=2, batch_size=16 // accum, grad_accum_steps=accum,
                  nesterov=True, lr_schedule="cosine", warmup_epochs=0.5, grad_clip=5.0, log_every=2)
    data = PatternFaces(classes=8, per_class=8)
    full = Train.train(tiny_config(tmp_path, run_name="full", **common), dataset=data)

    first = Train.train(tiny_config(tmp_path, run_name="part", max_iterations=stop_at, **common), dataset=data)
    assert first.stop_reason is Train.StopReason.MAX_ITERATIONS and first.state.iteration == stop_at
    ckpt = tmp_path / "runs" / "part" / "last.pt"
    assert load_checkpoint(ckpt)["iteration"] == stop_at
    resumed = Train.train(tiny_config(tmp_path, resume=str(ckpt), **common), dataset=data)

    assert resumed.stop_reason is Train.StopReason.FINISHED and resumed.state.iteration == full.state.iteration
    a, b = _final_state(full), _final_state(resumed)
    assert a.keys() == b.keys()
    for k in a:  # bit for bit, as the docs claim: the same float operations in the same order
        assert torch.equal(a[k], b[k]), k
    # and the run actually trained: weights moved from the stopped run's
    stopped = _final_state(first)
    assert any(not torch.equal(stopped[k], a[k]) for k in a if a[k].is_floating_point())
    # the resumed run appended to the same run directory and its history has no repeated iteration
    hist = [r["iteration"] for r in resumed.history if r["kind"] == "train"]
    assert hist == sorted(set(hist)) and hist[-1] == full.state.iteration


def test_checkpoint_content_is_loadable_by_evaluation(tmp_path):
    from Utils.checkpoint import load_backbone

    res = Train.train(tiny_config(tmp_path, run_name="c", backbone="TinyTestNet", epochs=1), dataset=PatternFaces())
    state = load_checkpoint(tmp_path / "runs" / "c" / "last.pt")
    for key in ("backbone", "head", "optimizer", "scheduler", "scaler", "epoch", "iteration", "rng",
                "config", "meta"):
        assert key in state, key
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["meta"]["backbone"] == "TinyTestNet" and state["meta"]["input_size"] == [32, 32]
    assert not any(k.startswith("module.") for k in state["backbone"])
    model, meta = load_backbone(tmp_path / "runs" / "c" / "last.pt")
    x = torch.randn(4, 3, 32, 32)
    ref = res.components.backbone.eval()
    assert torch.allclose(model(x), ref(x), atol=1e-6)


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"backbone": {"w": torch.ones(3)}, "iteration": 1}, path)
    real_save = torch.save

    def dying_save(obj, f, *a, **kw):
        f.write(b"partial garbage " * 100)  # half of a file is on disk when the process "dies"
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"backbone": {"w": torch.zeros(3)}, "iteration": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    state = load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(state["backbone"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_process_killed_during_save_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint({"backbone": {"w": torch.ones(3)}, "iteration": 1}, path)
    # a child writes a large checkpoint and is SIGKILLed while torch.save is streaming it
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(REPO)!r})
        from Utils.checkpoint import save_checkpoint
        real = torch.serialization._save
        def slow(*a, **kw):
            print("writing", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        torch.serialization._save = slow
        save_checkpoint({{"backbone": {{"w": torch.zeros(1000, 1000)}}, "iteration": 2}}, {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9 and "writing" in proc.stdout
    state = load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(state["backbone"]["w"], torch.ones(3))


def test_disk_full_while_saving_keeps_previous_checkpoint_and_stops_with_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import Utils.checkpoint as checkpoint

    real_save, calls = torch.save, []

    def save_until_disk_full(obj, f, *a, **kw):
        calls.append(1)
        if len(calls) >= 2:  # the second checkpoint finds the disk full, after half of it is written
            f.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(checkpoint.torch, "save", save_until_disk_full)
    args = ["--synthetic_identities=4", "--synthetic_images_per_identity=4", "--synthetic_val_pairs=20",
            "--synthetic_probe_identities=0", "--synthetic_distractors=0", "--input_size=[32,32]", "--num_workers=0",
            "--compile=false", "--use_amp=false", "--channels_last=false", "--epochs=1", "--batch_size=4",
            "--val_sets=[]", "--eval_at_start=false", "--save_every=1", "--embedding_size=16",
            f"--data_root={tmp_path / 'data'}", f"--output_dir={tmp_path / 'runs'}", "--run_name=full"]
    last = tmp_path / "runs" / "full" / "last.pt"
    snapshots = []
    real_replace = checkpoint.os.replace

    def replace_and_keep_bytes(src, dst):
        real_replace(src, dst)
        if Path(dst) == last:  # (the synthetic generator renames files too)
            snapshots.append(Path(dst).read_bytes())

    monkeypatch.setattr(checkpoint.os, "replace", replace_and_keep_bytes)
    capsys.readouterr()
    assert Train.main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err  # (the rest of stderr is tqdm's progress bars)
    assert [line for line in err.splitlines() if "error" in line] == \
        [f"error: cannot write checkpoint {last}: No space left on device; the previous one is unchanged"]
    assert len(snapshots) == 1 and last.read_bytes() == snapshots[0]  # bit for bit the first checkpoint
    assert torch.load(last, weights_only=True)["iteration"] == 1
    assert not [p.name for p in last.parent.iterdir() if p.name.endswith(".tmp")]
