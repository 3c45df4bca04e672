"""The config parser: typed --key=value, override files, presets, one-line errors naming the key."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import pytest

from Config import Config, ConfigError, PRESETS, parse_config
from tests.conftest import REPO


def test_defaults_are_valid():
    cfg, rest = parse_config([])
    assert cfg == Config() and rest == []


def test_every_field_has_a_help_text():
    for f in dataclasses.fields(Config):
        assert len(f.metadata.get("help", "")) > 10, f"field {f.name} has no help text"
    sections = [f.metadata["section"] for f in dataclasses.fields(Config) if f.metadata.get("section")]
    assert sections[0] == "run" and len(sections) == len(set(sections)) >= 6


def test_old_names_are_accepted():
    cfg, _ = parse_config(["--para_adj_mode=true", "--eval_protocol=seed"])
    assert cfg.write_nothing is True and cfg.eval_protocol == "face_pytorch"
    with pytest.raises(ConfigError, match="eval_protocol: 'facenet' is not one of: face_pytorch, insightface"):
        parse_config(["--eval_protocol=facenet"])


def test_typed_overrides():
    cfg, _ = parse_config(["--backbone=ResNet50_IR", "--head=CosFace", "--lr=0.05", "--use_amp=false",
                           "--epochs=3", "--milestones=[2,3]", "--gpus=0,1", "--val_sets=a.bin,b.bin",
                           "--channels_last=TRUE"])
    assert cfg.backbone == "ResNet50_IR" and cfg.head == "CosFace"
    assert cfg.lr == 0.05 and isinstance(cfg.lr, float)
    assert cfg.use_amp is False and cfg.channels_last is True
    assert cfg.epochs == 3 and cfg.milestones == [2, 3] and cfg.gpus == [0, 1]
    assert cfg.val_sets == ["a.bin", "b.bin"]


@pytest.mark.parametrize("arg,pattern", [
    ("--epcohs=3", r"unknown config key 'epcohs'.*did you mean 'epochs'"),
    ("--epochs=three", r"epochs: expected an integer"),
    ("--use_amp=maybe", r"use_amp: expected true/false"),
    ("--lr=fast", r"lr: expected a number"),
    ("--backbone=ResNet50", r"backbone: 'ResNet50' is not one of: .*ResNet50_IR.*did you mean"),
    ("--head=arcface", r"head: 'arcface' is not one of.*did you mean 'ArcFace'"),
    ("--milestones=[5,2]", r"milestones: must be increasing"),
    ("--preset=webface", r"preset: 'webface' is not one of: casia, ms1m"),
    ("stray", r"unexpected argument 'stray'"),
])
def test_bad_values_name_the_key(arg, pattern):
    with pytest.raises(ConfigError, match=pattern):
        parse_config([arg])


def test_override_file_holds_only_differences(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("import os\nbackbone = 'SEResNet50_IR'\nmilestones = [10, 20]\n_private = 3\n")
    cfg, _ = parse_config([f"--config={f}", "--lr=0.01"])
    assert cfg.backbone == "SEResNet50_IR" and cfg.milestones == [10, 20] and cfg.lr == 0.01
    assert cfg.epochs == Config().epochs
    f.write_text("batch_sise = 3\n")
    with pytest.raises(ConfigError, match=rf"unknown config key 'batch_sise' in {f}.*batch_size"):
        parse_config([f"--config={f}"])


def test_presets_hold_the_published_recipes():
    cfg, _ = parse_config(["--preset=casia"])
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.milestones, cfg.scale) == (256, 0.05, 36, [22, 31], 32.0)
    cfg, _ = parse_config(["--preset=ms1m", "--epochs=30"])  # later arguments win
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.milestones, cfg.scale) == (256, 0.05, 30, [13, 21], 32.0)
    assert set(PRESETS) == {"casia", "ms1m"}


def test_nothing_parsed_at_import():
    code = "import sys; sys.argv = ['x', '--bogus=1']; import Config, Train; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


def test_field_types_are_supported():
    hints = typing.get_type_hints(Config)
    for f in dataclasses.fields(Config):
        t = hints[f.name]
        assert t in (int, float, str, bool) or typing.get_origin(t) is list, f.name


def test_help_lists_every_setting_with_its_comment():
    out = subprocess.run([sys.executable, "Train.py", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for f in dataclasses.fields(Config):
        assert f"--{f.name}=" in out.stdout, f.name
    lr_line = next(l for l in out.stdout.splitlines() if l.strip().startswith("--lr="))
    assert f"--lr={Config().lr}" in lr_line and "learning rate" in lr_line
    assert "\noptimisation:\n" in out.stdout and "--para_adj_mode (= --write_nothing)" in out.stdout
