"""use_tensorboard: the run's curves as TensorBoard events, read back with TensorBoard's own reader."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from _train_fixtures import PatternFaces, tiny_config

import Train

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_hold_every_curve_of_the_run(tmp_path):
    accs = iter([0.7, 0.9])
    cfg = tiny_config(tmp_path, backbone="TinyTestNet", epochs=2, use_tensorboard=True, run_name="tb", log_every=2,
                      eval_every=4, val_sets=["toy"])
    res = Train.train(cfg, dataset=PatternFaces(), val_sets=[SimpleNamespace(name="toy")],
                      verify_fn=lambda model, vset, **kw: {"accuracy": next(accs), "std": 0.0})
    got = _scalars(tmp_path / "runs" / "tb")
    logged = [r for r in res.history if r["kind"] == "train"]
    assert logged
    for tag, key in (("loss", "loss"), ("train_accuracy", "accuracy"), ("lr", "lr"), ("images_per_s", "images_per_s")):
        assert [s for s, _ in got[tag]] == [r["iteration"] for r in logged], tag
        assert [v for _, v in got[tag]] == pytest.approx([r[key] for r in logged], rel=1e-5), tag
    assert got["val_toy"] == [(4, pytest.approx(0.7)), (8, pytest.approx(0.9))]


def test_tensorboard_dir_and_resume_purge(tmp_path):
    import shutil

    common = dict(backbone="TinyTestNet", epochs=2, log_every=1, use_tensorboard=True,
                  tensorboard_dir=str(tmp_path / "tb"))
    data = PatternFaces(classes=4, per_class=8)  # 2 iterations per epoch
    run = tmp_path / "runs" / "r"
    Train.train(tiny_config(tmp_path, run_name="r", max_iterations=1, **common), dataset=data)
    assert [s for s, _ in _scalars(tmp_path / "tb")["loss"]] == [1]
    shutil.copy(run / "last.pt", run / "at1.pt")
    Train.train(tiny_config(tmp_path, resume=str(run / "last.pt"), **common), dataset=data)
    assert [s for s, _ in _scalars(tmp_path / "tb")["loss"]] == [1, 2, 3, 4]
    # resumed again from iteration 1: what the later sessions logged after it is superseded, not shown twice
    again = Train.train(tiny_config(tmp_path, resume=str(run / "at1.pt"), **common), dataset=data)
    got = _scalars(tmp_path / "tb")["loss"]
    assert [s for s, _ in got] == [1, 2, 3, 4]
    last = [r for r in again.history if r["kind"] == "train"][-1]
    assert got[-1][1] == pytest.approx(last["loss"], rel=1e-5)
    assert not list(run.glob("events.*"))  # all went to tensorboard_dir
