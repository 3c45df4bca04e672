"""The training loop's behaviour: mixed precision learns, non-finite steps are skipped and stop the run, gradient
accumulation equals the large batch, train accuracy, evaluation bookkeeping, para_adj_mode, config errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from _train_fixtures import PatternFaces, tiny_config

import Train
import Utils.training.loop as trainer
from Utils.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]


def _train_losses(result):
    return [r["loss"] for r in result.history if r["kind"] == "train"]


def test_bf16_autocast_on_cpu_runs_and_learns(tmp_path):
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", use_amp=True, amp_dtype="bfloat16", epochs=4, log_every=1)
    seen = []
    comp_holder = {}
    orig = trainer.forward_loss

    def spy(comp, images, labels):
        comp_holder["c"] = comp
        h = comp.backbone.fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        try:
            return orig(comp, images, labels)
        finally:
            h.remove()

    trainer.forward_loss = spy
    try:
        res = Train.train(cfg, dataset=PatternFaces())
    finally:
        trainer.forward_loss = orig
    assert set(seen) == {torch.bfloat16}  # the matmuls really ran in bf16
    losses = _train_losses(res)
    assert all(map(lambda v: v == v, losses))
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    assert res.state.last_accuracy > 0.8 and res.state.skipped_steps == 0


def test_float16_on_cpu_is_a_config_error(tmp_path):
    with pytest.raises(ValueError, match="float16"):
        Train.build_components(tiny_config(tmp_path, use_amp=True, amp_dtype="float16", device="cpu"),
                               dataset=PatternFaces())


def test_nonfinite_steps_are_skipped_and_counted(tmp_path, monkeypatch):
    orig = trainer.forward_loss
    calls = {"n": 0}

    def sometimes_nan(comp, images, labels):
        calls["n"] += 1
        loss, c, n = orig(comp, images, labels)
        return (loss * float("nan") if calls["n"] in (2, 3, 6) else loss), c, n

    monkeypatch.setattr(trainer, "forward_loss", sometimes_nan)
    res = Train.train(tiny_config(tmp_path, backbone="TinyTestNet", epochs=2, max_bad_steps=3), dataset=PatternFaces())
    assert res.stop_reason is Train.StopReason.FINISHED and res.state.skipped_steps == 3 and res.state.iteration == 8
    assert "non-finite loss at iteration 2" in (res.run_dir / "train.log").read_text()
    assert "skipped steps        | 3" in res.summary


def test_consecutive_nonfinite_losses_stop_after_saving_and_change_nothing(tmp_path, monkeypatch):
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=2, max_bad_steps=3, run_name="nan")
    initial = Train.build_components(cfg, dataset=PatternFaces()).backbone.state_dict()
    orig = trainer.forward_loss
    monkeypatch.setattr(trainer, "forward_loss",
                        lambda comp, x, y: (lambda l, c, n: (l + float("inf"), c, n))(*orig(comp, x, y)))
    res = Train.train(cfg, dataset=PatternFaces())
    assert res.stop_reason is Train.StopReason.BAD_STEPS and res.state.iteration == 3 and res.state.bad_in_row == 3
    saved = load_checkpoint(tmp_path / "runs" / "nan" / "last.pt")
    assert saved["iteration"] == 3
    for k, v in initial.items():  # no skipped step touched the weights (BN running stats aside)
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(saved["backbone"][k], v), k
    log = (tmp_path / "runs" / "nan" / "train.log").read_text()
    assert "error: 3 non-finite losses in a row at iteration 3" in log and "last.pt" in log


def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    data = PatternFaces(classes=8, per_class=8)
    common = dict(backbone="TinyTestNetNoBN", epochs=1, weight_decay=5e-4, momentum=0.9)
    big = Train.train(tiny_config(tmp_path, run_name="big", batch_size=16, **common), dataset=data)
    acc = Train.train(tiny_config(tmp_path, run_name="acc", batch_size=4, grad_accum_steps=4, **common), dataset=data)
    assert acc.state.iteration == big.state.iteration == 4
    for (k, a), b in zip(big.components.backbone.state_dict().items(), acc.components.backbone.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), k
    assert torch.allclose(big.components.head.weight, acc.components.head.weight, atol=1e-6, rtol=1e-5)


def test_train_accuracy_counts_argmax_of_cosine(tmp_path):
    comp = Train.build_components(tiny_config(tmp_path, backbone="TinyTestNet"), dataset=PatternFaces())
    images = torch.randn(16, 3, 32, 32)
    labels = torch.randint(0, 8, (16,))
    comp.model.eval()
    with torch.no_grad():
        _, correct, count = trainer.forward_loss(comp, images, labels)
        emb = comp.backbone(images)
        w = comp.head.weight
        expected = 0
        for i in range(16):  # per-sample loop: the class whose centre is closest in angle
            sims = [float(F.cosine_similarity(emb[i], w[j], dim=0)) for j in range(8)]
            expected += int(max(range(8), key=lambda j: sims[j]) == int(labels[i]))
    assert int(correct) == expected and count == 16


def test_evaluation_tracks_best_per_set_and_keeps_best_checkpoint(tmp_path):
    scores = {"a": iter([0.60, 0.80, 0.70, 0.75]), "b": iter([0.50, 0.55, 0.90, 0.40])}

    def fake_verify(model, vset, protocol, batch_size, device, amp_dtype):
        assert not model.training
        return {"name": vset.name, "accuracy": next(scores[vset.name]), "std": 0.01}

    sets = [SimpleNamespace(name="a"), SimpleNamespace(name="b")]
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=2, eval_every=2, run_name="ev",
                      val_sets=["x", "y"])
    res = Train.train(cfg, dataset=PatternFaces(), val_sets=sets, verify_fn=fake_verify)
    assert res.state.best == {"a": 0.80, "b": 0.90}
    best = load_checkpoint(tmp_path / "runs" / "ev" / "best.pt")
    assert best["iteration"] == 6 and best["accuracies"] == {"a": 0.70, "b": 0.90}  # best mean: 0.80 at iter 6
    assert "best a" in res.summary and "80.00%" in res.summary
    assert (tmp_path / "runs" / "ev" / "curves.png").stat().st_size > 1000


def test_skipped_files_are_counted(tmp_path):
    res = Train.train(tiny_config(tmp_path, backbone="TinyTestNet", epochs=1), dataset=PatternFaces(bad_every=5))
    assert res.state.skipped_files == sum(1 for i in range(64) if i % 5 == 0)


def test_para_adj_mode_writes_nothing(tmp_path):
    out = tmp_path / "nothing_here"
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=1, para_adj_mode=True, output_dir=str(out),
                      save_every=1)
    res = Train.train(cfg, dataset=PatternFaces())
    assert res.run_dir is None and res.state.iteration == 4
    assert not out.exists()


def test_config_errors_exit_2_with_one_line(capsys):
    assert Train.main(["--batch_size=0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: batch_size")
    assert Train.main(["--use_amp=true", "--amp_dtype=float16", "--device=cpu"]) == 2
    assert "float16" in capsys.readouterr().err


def test_script_reports_unknown_key():
    proc = subprocess.run([sys.executable, "Train.py", "--lerning_rate=0.1"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
