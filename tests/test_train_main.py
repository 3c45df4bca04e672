"""`python Train.py` end to end as a user runs it: the real synthetic data set, evaluation and run directory."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_script_trains_evaluates_saves_and_resumes(tmp_path):
    args = [sys.executable, "Train.py", "--epochs=2", "--synthetic_identities=12", "--synthetic_images_per_identity=6",
            "--synthetic_val_pairs=200", "--input_size=[32,32]", "--batch_size=16", "--num_workers=0",
            f"--data_root={tmp_path / 'data'}", f"--output_dir={tmp_path / 'runs'}", "--run_name=e2e",
            "--log_every=2", "--save_every=3"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "e2e"
    assert {"config.json", "train.log", "history.jsonl", "curves.png", "last.pt", "best.pt"} <= \
        {p.name for p in run.iterdir()}
    assert json.loads((run / "config.json").read_text())["synthetic_identities"] == 12
    assert "training summary" in proc.stdout and "best synthetic" in proc.stdout
    evals = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines() if '"eval"' in l]
    # the untrained baseline (eval_at_start), then each epoch end: 72 images / 16 = 4 iterations per epoch
    assert [e["iteration"] for e in evals] == [0, 4, 8]
    assert all(0.0 <= e["accuracies"]["synthetic"] <= 1.0 for e in evals)
    ckpt = torch.load(run / "last.pt", weights_only=False)
    assert ckpt["iteration"] == 8 and ckpt["meta"]["input_size"] == [32, 32]

    # the evaluation side reads what training wrote
    from Utils.checkpoint import load_backbone

    model, meta = load_backbone(run / "best.pt")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, meta["embedding_size"])

    # a config error is one line and exit code 2
    bad = subprocess.run(args[:2] + ["--lr=-1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: lr: must be > 0, got -1.0"
