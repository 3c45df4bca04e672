"""history.jsonl after a crash mid-write: the torn last line must not block --resume."""
from __future__ import annotations

import json

import pytest

from _train_fixtures import PatternFaces, tiny_config

import Train
from Utils.training.run_dir import read_history


def test_resume_after_a_torn_last_history_line(tmp_path):
    common = dict(backbone="TinyTestNet", epochs=1, log_every=1)
    data = PatternFaces(classes=4, per_class=8)
    Train.train(tiny_config(tmp_path, run_name="part", max_iterations=1, **common), dataset=data)
    hist = tmp_path / "runs" / "part" / "history.jsonl"
    with open(hist, "a") as f:  # the process died while writing the next record
        f.write('{"kind": "train", "iteration": 2, "lo')
    with pytest.warns(UserWarning, match="torn last line"):
        resumed = Train.train(tiny_config(tmp_path, resume=str(tmp_path / "runs" / "part" / "last.pt"), **common),
                              dataset=data)
    assert resumed.state.iteration == 2
    # the file is whole again: every line parses with the standard library, iterations logged once each
    lines = [json.loads(ln) for ln in hist.read_text().splitlines()]
    assert [r["iteration"] for r in lines if r["kind"] == "train"] == [1, 2]


def test_damage_before_the_last_line_is_reported_with_its_line(tmp_path):
    (tmp_path / "history.jsonl").write_text('{"iteration": 1}\n{"iter\n{"iteration": 3}\n')
    with pytest.raises(ValueError, match=r"history.jsonl:2:"):
        read_history(tmp_path)
