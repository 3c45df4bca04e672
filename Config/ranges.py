"""The valid range of every Config field, checked at parse time so that a setting that makes no sense is refused
before anything runs, naming the key and the range ("margin: ArcFace needs a margin in (0, pi/2), got 2.0").

`RULES` maps each field to a `Rule`; tests/test_config_ranges.py fails for a field without one. A rule's range may
depend on other fields (the margin's on the head). Fields whose value is one of a named set are `CHOICE` here and
checked against `Config.cli.CHOICES`; typed fields whose every value is valid (booleans, free paths) say so.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Rule", "RULES", "CHOICE", "check_ranges", "MARGIN_RANGES"]


@dataclass(frozen=True)
class Rule:
    """`ok(value, cfg)` is True when valid; `text(cfg)` completes "<key>: must be ..."."""
    ok: Callable[[Any, Any], bool]
    text: Callable[[Any], str]


def _rule(ok: Callable[[Any], bool], text: str) -> Rule:
    return Rule(lambda v, cfg: ok(v), lambda cfg: text)


def at_least(n: float) -> Rule:
    return _rule(lambda v: v >= n, f">= {n}")


def above(n: float) -> Rule:
    return _rule(lambda v: math.isfinite(v) and v > n, f"> {n}")


def interval(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False, shown: str = "") -> Rule:
    def ok(v):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return _rule(ok, f"in {shown or ('(' if lo_open else '[') + f'{lo:g}, {hi:g}' + (')' if hi_open else ']')}")


def anything(why: str) -> Rule:
    """Every value of the field's type is valid (the type itself is checked by Config.cli)."""
    return _rule(lambda v: True, why)


def non_empty(what: str) -> Rule:
    return _rule(lambda v: bool(str(v).strip()), f"a non-empty {what}")


CHOICE = anything("one of its choices (Config.cli.CHOICES)")
BOOL = anything("true or false")

# margin per head, as (low, high, low open, high open, shown): ArcFace-like heads add m to the angle, so past pi/2
# the target logit is no longer the largest; CosFace subtracts m from a cosine in [-1, 1]
_ANGLE = (0.0, math.pi / 2, True, True, "(0, pi/2)")
MARGIN_RANGES: dict[str, tuple] = {"ArcFace": _ANGLE, "SubCenterArcFace": _ANGLE, "CurricularFace": _ANGLE,
                                   "CosFace": (0.0, 1.0, True, True, "(0, 1)"),
                                   "AdaFace": (0.0, 1.0, True, True, "(0, 1)"),
                                   "ElasticArcFace": _ANGLE, "ElasticArcFacePlus": _ANGLE,
                                   "ElasticCosFace": (0.0, 1.0, True, True, "(0, 1)"),
                                   "ElasticCosFacePlus": (0.0, 1.0, True, True, "(0, 1)")}


def _margin_ok(v, cfg) -> bool:
    if cfg.head not in MARGIN_RANGES:  # Softmax, SphereFace, CombinedMargin: margin is not read
        return math.isfinite(v)
    lo, hi, lo_open, hi_open, _ = MARGIN_RANGES[cfg.head]
    return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


def _margin_text(cfg) -> str:
    if cfg.head not in MARGIN_RANGES:
        return "a finite number"
    return f"in {MARGIN_RANGES[cfg.head][4]} for head {cfg.head}"


def _combined_ok(v) -> bool:
    return len(v) == 3 and v[0] > 0 and 0 <= v[1] < math.pi / 2 and 0 <= v[2] < 1


def _device_ok(v) -> bool:
    return re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v.strip().lower()) is not None


RULES: dict[str, Rule] = {
    # run
    "run_name": _rule(lambda v: re.fullmatch(r"[\w.\-]*", v) is not None, "letters, digits, '_', '-', '.' or empty"),
    "output_dir": non_empty("folder path"),
    "seed": at_least(0),
    "write_nothing": BOOL,
    "resume": anything("a path or empty (its existence is checked by Utils/training/preflight.py)"),
    "trust_checkpoint": BOOL,
    "device": _rule(_device_ok, "auto, cpu, cuda, cuda:N or mps"),
    "log_every": at_least(1),
    # training data
    "train_format": CHOICE,
    "train_root": anything("a path (checked by preflight for the formats that read it)"),
    "train_list": anything("a path or empty (checked by preflight)"),
    "data_root": non_empty("folder path"),
    "train_sets": anything("'format:root' entries (formats checked by Config.cli, paths by preflight)"),
    "synthetic_identities": at_least(2),  # mismatched pairs need two identities
    "synthetic_images_per_identity": at_least(1),  # as Datasets/synthetic.py's generator needs
    "synthetic_val_pairs": at_least(20),  # 10 folds of matched and mismatched pairs
    "synthetic_difficulty": interval(0.0, 1.0),
    "synthetic_seed": at_least(0),
    "synthetic_probe_identities": at_least(0),
    "synthetic_distractors": at_least(0),
    "color_order": CHOICE,
    "input_size": _rule(lambda v: len(v) == 2 and min(v) >= 32, "[height, width] of at least 32 each"),
    "num_workers": at_least(0),
    "persistent_workers": BOOL,
    "prefetch_factor": at_least(1),
    "gpu_decode": BOOL,
    "bad_image_policy": CHOICE,
    "random_flip": BOOL,
    "augment": anything("'name:probability[:strength]' items (names and values checked by Datasets.augment)"),
    "activation_checkpointing": BOOL,
    # model
    "backbone": CHOICE,
    "embedding_size": at_least(0),
    "dropout": interval(0.0, 1.0, hi_open=True),
    # head
    "head": CHOICE,
    "scale": above(0),
    "margin": Rule(_margin_ok, _margin_text),
    "easy_margin": BOOL,
    "magface_norm_range": _rule(lambda v: len(v) == 2 and 0 < v[0] < v[1], "[l_a, u_a] with 0 < l_a < u_a"),
    "magface_margin_range": _rule(lambda v: len(v) == 2 and 0 <= v[0] <= v[1] < math.pi / 2,
                                  "[l_m, u_m] with 0 <= l_m <= u_m < pi/2"),
    "magface_lambda_g": at_least(0),
    "elastic_sigma": at_least(0),
    "combined_margins": _rule(_combined_ok, "[m1 > 0, m2 in [0, pi/2), m3 in [0, 1)]"),
    "sphereface_m": at_least(1),
    "sphereface_lambda": _rule(lambda v: len(v) == 4 and min(v) >= 0, "[base, min, gamma, power], each >= 0"),
    "subcenters": at_least(1),
    "adaface_h": above(0),
    "adaface_t_alpha": interval(0.0, 1.0, lo_open=True),
    # optimisation
    "epochs": at_least(1),
    "batch_size": at_least(1),
    "grad_accum_steps": at_least(1),
    "optimizer": CHOICE,
    "lr": above(0),
    "momentum": interval(0.0, 1.0, hi_open=True),
    "nesterov": BOOL,
    "weight_decay": at_least(0),
    "lr_schedule": CHOICE,
    "milestones": _rule(lambda v: sorted(v) == list(v) and min(v, default=0) >= 0, "increasing, epochs >= 0"),
    "lr_gamma": above(0),
    "warmup_epochs": at_least(0),
    "poly_power": above(0),
    "grad_clip": at_least(0),
    "max_bad_steps": at_least(1),
    "max_iterations": at_least(0),
    # devices and precision
    "use_amp": BOOL,
    "amp_dtype": CHOICE,
    "channels_last": BOOL,
    "compile": BOOL,
    "use_multi_gpus": BOOL,
    "gpus": _rule(lambda v: len(v) >= 1 and min(v) >= 0, "a non-empty list of GPU ids >= 0"),
    "dist_backend": CHOICE,
    "sync_bn": BOOL,
    "partial_fc": BOOL,
    "partial_fc_sample_rate": interval(0.0, 1.0, lo_open=True),
    # evaluation during training
    "val_sets": _rule(lambda v: all(str(s).strip() for s in v), "a list of non-empty entries"),
    "eval_every": at_least(0),
    "eval_at_start": BOOL,
    "eval_protocol": CHOICE,
    "eval_batch_size": at_least(1),
    "save_every": at_least(0),
    # visdom
    "use_visdom": BOOL,
    "visdom_server": non_empty("address"),
    "visdom_port": interval(1, 65535),
    "visdom_timeout": above(0),
    "use_tensorboard": BOOL,
    "tensorboard_dir": anything("a folder path or empty (the run directory)"),
}


def check_ranges(cfg, error: Callable[[str], Exception]) -> None:
    """Raise `error(one line)` for the first field outside its rule (fields without a rule are not checked here;
    the test names them)."""
    for key, rule in RULES.items():
        if not hasattr(cfg, key):
            continue
        value = getattr(cfg, key)
        if not rule.ok(value, cfg):
            raise error(f"{key}: must be {rule.text(cfg)}, got {value}")
