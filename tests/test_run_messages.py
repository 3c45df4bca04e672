"""What a run says: where to watch it, the command that evaluates its best.pt, compile warm-up named as
such, torch's "No CUDA runtime" probe hidden on CPU, and short runs' curves visible (markers; log_every clamped)."""
from __future__ import annotations

import json
import logging
import shlex

import pytest
import torch
import torch.nn as nn

import Train
from _train_fixtures import TinyTestNet  # noqa: F401  (registers the TinyTestNet backbone)
from Utils.evaluation import verification_cli


def _args(tmp_path, **extra):
    flags = dict(backbone="TinyTestNet", input_size="[32,32]", synthetic_identities=6, synthetic_images_per_identity=4,
                 synthetic_val_pairs=40, synthetic_probe_identities=2, synthetic_distractors=10, batch_size=8,
                 epochs=1, num_workers=0, compile="false", use_amp="false", eval_at_start="false",
                 data_root=tmp_path / "data", output_dir=tmp_path / "runs", run_name="my-run")
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def test_a_run_says_where_to_watch_it_and_how_to_evaluate_it(tmp_path, capsys):
    assert Train.main(_args(tmp_path, use_tensorboard="true")) == 0
    out = capsys.readouterr().out
    run = tmp_path / "runs" / "my-run"
    assert f"run dir: {run}" in out
    assert "http://127.0.0.1:8097/env/my_run" in out  # visdom's environment of this run ('-' is not allowed there)
    assert f"tensorboard --logdir {run}" in out and list(run.glob("events.out.tfevents.*"))
    # 24 images / batch 8 = 3 iterations, shorter than the default log_every=20: still a point per iteration
    train_points = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines() if '"train"' in l]
    assert [p["iteration"] for p in train_points] == [1, 2, 3]
    line = next(l for l in out.splitlines() if l.startswith("evaluate the best checkpoint: "))
    command = shlex.split(line.split(": ", 1)[1])
    assert command[:2] == ["python", "LFW_Evaluation.py"] and f"--checkpoint={run / 'best.pt'}" in command
    # the printed command runs as printed (in process; its output folder moved into tmp_path)
    assert verification_cli.main(command[2:] + [f"--output_dir={tmp_path / 'eval'}", "--num_workers=0",
                                                "--no_progress"], dataset="LFW") == 0


class OptimizedModule(nn.Module):
    """Stands in for torch.compile's wrapper (same class name): the loop's warm-up message, without a compile."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


def test_compile_warm_up_is_announced(tmp_path, capsys, monkeypatch):
    import Utils.training.build as build

    monkeypatch.setattr(build, "_maybe_compile", lambda backbone, device: OptimizedModule(backbone))
    assert Train.main(_args(tmp_path, compile="true")) == 0
    assert "compiling the backbone (torch.compile), ~1-2 min on CPU" in capsys.readouterr().out


def test_the_cuda_probe_message_is_hidden_on_cpu():
    if torch.cuda.is_available():
        pytest.skip("the message is torch's on machines without a GPU")
    from Utils.device import hide_cuda_probe_message

    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    log = logging.getLogger("torch.utils.cpp_extension")
    handler = Keep()
    log.addHandler(handler)
    try:
        hide_cuda_probe_message()
        hide_cuda_probe_message()  # idempotent
        log.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")  # torch's own call
        log.warning("another warning")
    finally:
        log.removeHandler(handler)
    assert seen == ["another warning"]


def test_short_run_curves_have_markers(tmp_path, monkeypatch):
    import Utils.training.curves as curves

    figures = []
    monkeypatch.setattr(curves, "save_figure", lambda fig, path, dpi=100: figures.append(fig) or path)
    history = [{"kind": "train", "iteration": i, "loss": 1.0 / i, "accuracy": 0.1 * i, "lr": 0.1} for i in (1, 2)]
    curves.plot_training_curves(history, tmp_path / "c.png")
    long = [{"kind": "train", "iteration": i, "loss": 1.0, "accuracy": 0.5, "lr": 0.1} for i in range(1, 200)]
    curves.plot_training_curves(long, tmp_path / "d.png")
    short_line, long_line = figures[0].axes[0].lines[0], figures[1].axes[0].lines[0]
    assert short_line.get_marker() == "o" and long_line.get_marker() in ("None", None, "")
