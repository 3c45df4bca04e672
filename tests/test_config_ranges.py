"""Settings that make no sense are refused at parse time, naming the key and the valid range; every Config field
has a rule (Config/ranges.py)."""
from __future__ import annotations

import math

import pytest

from Config import Config, ConfigError, parse_config
from Config.ranges import RULES


def test_every_config_field_has_a_rule():
    missing = [name for name in Config.field_names() if name not in RULES]
    assert not missing, (f"Config fields without a range rule in Config/ranges.py RULES: {', '.join(missing)} "
                         f"(add one: at_least / above / interval / CHOICE / BOOL / anything('why'))")
    stale = sorted(set(RULES) - set(Config.field_names()))
    assert not stale, f"RULES names fields Config no longer has: {', '.join(stale)}"


def test_defaults_pass_their_rules():
    parse_config([])


# (arguments, the message's start): the ranges the issue names, written out here rather than read from RULES
REFUSED = [
    (["--head=ArcFace", "--margin=0"], "margin: must be in (0, pi/2) for head ArcFace, got 0.0"),
    (["--head=ArcFace", f"--margin={math.pi / 2}"], "margin: must be in (0, pi/2) for head ArcFace"),
    (["--head=ArcFace", "--margin=-0.1"], "margin: must be in (0, pi/2)"),
    (["--head=SubCenterArcFace", "--margin=2"], "margin: must be in (0, pi/2) for head SubCenterArcFace"),
    (["--head=CosFace", "--margin=1.0"], "margin: must be in (0, 1) for head CosFace"),
    (["--scale=0"], "scale: must be > 0, got 0.0"),
    (["--scale=-3"], "scale: must be > 0"),
    (["--scale=inf"], "scale: must be > 0"),
    (["--partial_fc_sample_rate=0"], "partial_fc_sample_rate: must be in (0, 1], got 0.0"),
    (["--partial_fc_sample_rate=1.5"], "partial_fc_sample_rate: must be in (0, 1]"),
    (["--lr=0"], "lr: must be > 0"),
    (["--batch_size=0"], "batch_size: must be >= 1, got 0"),
    (["--epochs=0"], "epochs: must be >= 1"),
    (["--momentum=1"], "momentum: must be in [0, 1), got 1.0"),
    (["--dropout=1"], "dropout: must be in [0, 1)"),
    (["--synthetic_difficulty=1.5"], "synthetic_difficulty: must be in [0, 1]"),
    (["--synthetic_val_pairs=5"], "synthetic_val_pairs: must be >= 20"),
    (["--visdom_port=70000"], "visdom_port: must be in [1, 65535]"),
    (["--visdom_timeout=0"], "visdom_timeout: must be > 0"),
    (["--num_workers=-1"], "num_workers: must be >= 0"),
    (["--device=gpu"], "device: must be auto, cpu, cuda, cuda:N or mps, got gpu"),
    (["--run_name=a/b"], "run_name: must be letters, digits"),
    (["--output_dir="], "output_dir: must be a non-empty folder path"),
    (["--input_size=[16,16]"], "input_size: must be [height, width] of at least 32 each"),
    (["--combined_margins=[1.0,0.3]"], "combined_margins: must be [m1 > 0"),
    (["--milestones=[5,2]"], "milestones: must be increasing"),
    (["--gpus=[]"], "gpus: must be a non-empty list"),
    (["--adaface_t_alpha=0"], "adaface_t_alpha: must be in (0, 1]"),
]


@pytest.mark.parametrize("argv,message", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_nonsense_is_refused_naming_key_and_range(argv, message):
    with pytest.raises(ConfigError) as err:
        parse_config(argv)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


ACCEPTED = [["--head=ArcFace", "--margin=1.5"], ["--head=CosFace", "--margin=0.35"], ["--scale=1e-3"],
            ["--partial_fc_sample_rate=1"], ["--partial_fc_sample_rate=0.01"], ["--momentum=0"],
            ["--head=Softmax", "--margin=0"], ["--head=SphereFace", "--margin=3"], ["--device=cuda:1"],
            ["--synthetic_difficulty=0"], ["--synthetic_difficulty=1"], ["--visdom_port=1"]]


@pytest.mark.parametrize("argv", ACCEPTED, ids=[" ".join(a) for a in ACCEPTED])
def test_range_edges_that_make_sense_are_accepted(argv):
    parse_config(argv)
