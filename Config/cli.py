"""Turn `--key=value` arguments (and `--config=file.py`, `--preset=name`) into a validated `Config`.

Values are typed by the dataclass annotations: `--use_amp=false` is False, `--milestones=[22,31]` or
`--milestones=22,31` is a list of ints. An unknown key, a value of the wrong type or a name outside its registry
raises `ConfigError` with one line naming the key, the valid choices and the closest name.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import ALIASES, VALUE_ALIASES, Config
from .presets import PRESETS

__all__ = ["ConfigError", "parse_config", "apply_overrides", "load_override_file", "validate", "help_text"]


class ConfigError(ValueError):
    """A bad setting; the message is one line naming the key."""


def _backbone_names() -> list[str]:
    from Backbones import list_backbones  # deferred: the registries import torch (see CHOICES)
    return list_backbones()


def _head_names() -> list[str]:
    from Heads import list_heads  # deferred, as above
    return list_heads()


def _train_formats() -> list[str]:
    from Datasets import list_train_formats  # deferred, as above
    return list_train_formats()


# Fields whose value must be one of a known set. Registries are imported only when validating, so that reading a
# config (and --help) does not import torch.
CHOICES: dict[str, Callable[[], Iterable[str]]] = {
    "backbone": _backbone_names,
    "head": _head_names,
    "train_format": _train_formats,
    "color_order": lambda: ["RGB", "BGR"],
    "bad_image_policy": lambda: ["skip", "error"],
    "optimizer": lambda: ["sgd", "adamw"],
    "lr_schedule": lambda: ["multistep", "cosine", "poly"],
    "amp_dtype": lambda: ["auto", "bfloat16", "float16"],
    "dist_backend": lambda: ["auto", "nccl", "gloo"],
    "eval_protocol": lambda: ["face_pytorch", "insightface"],
}

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f"}


def _closest(name: str, options: Iterable[str]) -> str:
    options = list(options)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    if not match:  # registry names differ mostly in case and underscores
        lowered = {o.lower().replace("_", ""): o for o in options}
        match = difflib.get_close_matches(name.lower().replace("_", ""), list(lowered), n=1, cutoff=0.5)
        match = [lowered[m] for m in match]
    return f" (did you mean '{match[0]}'?)" if match else ""


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert `value` (a string from argv, or a Python value from a file) to the field's type."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        (item_type,) = set(typing.get_args(annotation)) or {str}
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    raise ConfigError(f"{key}: cannot parse list {value!r}") from None
            else:
                value = [v for v in (p.strip() for p in text.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list of {item_type.__name__}, got {value!r}")
        return [_coerce(key, v, item_type) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported field type {annotation!r}")  # a new field with an exotic type


def apply_overrides(cfg: Config, overrides: dict[str, Any], source: str = "argument") -> Config:
    """Return a copy of `cfg` with `overrides` applied, typed and checked key by key."""
    types_ = _field_types()
    changes = {}
    for key, value in overrides.items():
        key = ALIASES.get(key, key)
        value = VALUE_ALIASES.get(key, {}).get(value, value) if isinstance(value, str) else value
        if key not in types_:
            raise ConfigError(f"unknown config key '{key}' in {source}{_closest(key, types_)}; "
                              f"see Config/config.py for the valid keys")
        changes[key] = _coerce(key, value, types_[key])
    return dataclasses.replace(cfg, **changes)


def load_override_file(path: str) -> dict[str, Any]:
    """Read the public names of a Python file holding only the settings that differ from the defaults."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: override file not found: {path}")
    spec = importlib.util.spec_from_file_location(f"_config_overrides_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # the user's own settings file, like any Python config
    except Exception as exc:
        raise ConfigError(f"config: cannot load {path}: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def validate(cfg: Config) -> Config:
    """Check values against their choices and ranges; raise ConfigError naming the key."""
    if ":" in cfg.backbone:  # a family name (timm:<model>): checked by its family, not against a fixed list
        from Backbones import check_backbone_name  # deferred, as the registries
        try:
            check_backbone_name(cfg.backbone)
        except ValueError as exc:
            raise ConfigError(f"backbone: {exc}") from None
    for key, choices in CHOICES.items():
        value = getattr(cfg, key)
        if key == "backbone" and ":" in value:
            continue
        options = list(choices())
        if value not in options:
            raise ConfigError(f"{key}: '{value}' is not one of: {', '.join(options)}{_closest(value, options)}")
    positive = ["epochs", "batch_size", "grad_accum_steps", "eval_batch_size", "log_every", "subcenters",
                "sphereface_m", "max_bad_steps"]
    for key in positive:
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: must be >= 1, got {getattr(cfg, key)}")
    for key in ["lr", "scale"]:
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"{key}: must be > 0, got {getattr(cfg, key)}")
    for key in ["num_workers", "embedding_size", "eval_every", "save_every", "grad_clip", "warmup_epochs",
                "weight_decay", "dropout", "max_iterations"]:
        if getattr(cfg, key) < 0:
            raise ConfigError(f"{key}: must be >= 0, got {getattr(cfg, key)}")
    if len(cfg.input_size) != 2 or min(cfg.input_size) < 32:
        raise ConfigError(f"input_size: expected [height, width] of at least 32 each, got {cfg.input_size}")
    if len(cfg.combined_margins) != 3:
        raise ConfigError(f"combined_margins: expected [m1, m2, m3], got {cfg.combined_margins}")
    if len(cfg.magface_norm_range) != 2 or not 0 < cfg.magface_norm_range[0] < cfg.magface_norm_range[1]:
        raise ConfigError(f"magface_norm_range: expected [l_a, u_a] with 0 < l_a < u_a, got {cfg.magface_norm_range}")
    if len(cfg.magface_margin_range) != 2:
        raise ConfigError(f"magface_margin_range: expected [l_m, u_m], got {cfg.magface_margin_range}")
    if cfg.elastic_sigma < 0 or cfg.magface_lambda_g < 0:
        raise ConfigError(f"{'elastic_sigma' if cfg.elastic_sigma < 0 else 'magface_lambda_g'}: must be >= 0")
    if len(cfg.sphereface_lambda) != 4:
        raise ConfigError(f"sphereface_lambda: expected [base, min, gamma, power], got {cfg.sphereface_lambda}")
    if not 0.0 < cfg.partial_fc_sample_rate <= 1.0:
        raise ConfigError(f"partial_fc_sample_rate: must be in (0, 1], got {cfg.partial_fc_sample_rate}")
    if not 0.0 <= cfg.synthetic_difficulty <= 1.0:
        raise ConfigError(f"synthetic_difficulty: must be in [0, 1], got {cfg.synthetic_difficulty}")
    from Backbones import supports_activation_checkpointing  # deferred, as the registries above
    if cfg.activation_checkpointing and not supports_activation_checkpointing(cfg.backbone):
        raise ConfigError(f"activation_checkpointing: backbone '{cfg.backbone}' does not support it (the IR nets and "
                          f"the ViTs do)")
    from Datasets.augment import parse_augment  # deferred, as the registries above
    try:
        parse_augment(cfg.augment)
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None
    if sorted(cfg.milestones) != list(cfg.milestones):
        raise ConfigError(f"milestones: must be increasing, got {cfg.milestones}")
    return cfg


def _split_argv(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    pairs, rest = [], []
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            pairs.append((key.replace("-", "_"), value))
        else:
            rest.append(arg)
    return pairs, rest


def parse_config(argv: list[str], base: Config | None = None,
                 extra_flags: Iterable[str] = ()) -> tuple[Config, list[str]]:
    """Build a Config from argv: defaults <- --preset <- --config file <- --key=value, in that order.

    Returns (config, leftover) where leftover holds arguments named in `extra_flags` (script-specific flags such as
    `--summary`) and `--key=value` pairs for those flags. Anything else unknown is a ConfigError.
    """
    cfg = base or Config()
    pairs, rest = _split_argv(argv)
    extra = set(extra_flags)
    leftover = [a for a in rest if a.lstrip("-").replace("-", "_") in extra]
    stray = [a for a in rest if a not in leftover]
    if stray:
        raise ConfigError(f"unexpected argument '{stray[0]}'; settings are given as --key=value")
    plain = []
    for key, value in pairs:
        if key == "preset":
            if value not in PRESETS:
                raise ConfigError(f"preset: '{value}' is not one of: {', '.join(PRESETS)}{_closest(value, PRESETS)}")
            cfg = apply_overrides(cfg, PRESETS[value], source=f"preset '{value}'")
        elif key == "config":
            cfg = apply_overrides(cfg, load_override_file(value), source=value)
        elif key in extra:
            leftover.append(f"--{key}={value}")
        else:
            plain.append((key, value))
    for key, value in plain:
        cfg = apply_overrides(cfg, {key: value}, source="command line")
    return validate(cfg), leftover


def help_text() -> str:
    """Every setting with its default and help, from the fields' metadata (Config/config.py `setting`)."""
    lines = ["Settings (override any as --key=value; also --config=overrides.py and --preset="
             + "|".join(PRESETS) + "):"]
    defaults = Config()
    for f in dataclasses.fields(Config):
        if f.metadata.get("section"):
            lines += ["", f"{f.metadata['section']}:"]
        lines.append(f"  {f'--{f.name}={getattr(defaults, f.name)}':<40} {f.metadata.get('help', '')}")
    aliases = ", ".join(f"--{old} (= --{new})" for old, new in ALIASES.items())
    return "\n".join(lines + ["", f"Old names still accepted: {aliases}."])
