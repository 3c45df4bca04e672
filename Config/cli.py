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
import json
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import ALIASES, VALUE_ALIASES, Config
from .presets import PRESETS
from .ranges import check_ranges
from .resume import resume_conflicts, saved_run_settings

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


# Keys of a run's config.json that name the run it came from, not its settings: a run started from that file is a
# new run (a fresh timestamped directory unless --run_name is given), not a continuation (that is --resume).
_RUN_IDENTITY_KEYS = ("run_name", "resume")


def _load_json_config(p: Path) -> dict[str, Any]:
    try:
        values = json.loads(p.read_text())
    except ValueError as exc:
        raise ConfigError(f"config: {p} is not valid JSON ({exc})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config: {p} must hold a JSON object of settings, got {type(values).__name__}")
    return {k: v for k, v in values.items() if k not in _RUN_IDENTITY_KEYS}


def load_override_file(path: str) -> dict[str, Any]:
    """Read the public names of a Python file holding only the settings that differ from the defaults, or a JSON
    object of settings (a run directory's config.json: every setting of that run, its name left out)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: override file not found: {path}")
    if p.suffix.lower() == ".json":
        return _load_json_config(p)
    if p.suffix.lower() != ".py":
        raise ConfigError(f"config: {path} is neither a .py file of settings nor a run's config.json")
    spec = importlib.util.spec_from_file_location(f"_config_overrides_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # the user's own settings file, like any Python config
    except Exception as exc:
        raise ConfigError(f"config: cannot load {path}: {type(exc).__name__}: {exc}") from None
    return {k: v for k, v in vars(module).items()
            if not k.startswith("_") and not isinstance(v, (types.ModuleType, types.FunctionType, type))}


def validate(cfg: Config) -> Config:
    """Check values against their choices and ranges (Config/ranges.py); raise ConfigError naming the key and the
    valid range."""
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
    check_ranges(cfg, ConfigError)  # every field against its rule in Config/ranges.py
    if cfg.train_sets:
        formats = _train_formats()
        for entry in cfg.train_sets:
            fmt, sep, root = entry.partition(":")
            if not sep or fmt not in formats:
                raise ConfigError(f"train_sets: '{entry}' is not 'format:root' with a format among "
                                  f"{', '.join(formats)}{_closest(fmt, formats)}")
        if cfg.train_root:
            raise ConfigError("train_root: set together with train_sets, which replaces it; list every set in "
                              "train_sets")
    from Backbones import supports_activation_checkpointing  # deferred, as the registries above
    if cfg.activation_checkpointing and not supports_activation_checkpointing(cfg.backbone):
        raise ConfigError(f"activation_checkpointing: backbone '{cfg.backbone}' does not support it (the IR nets and "
                          f"the ViTs do)")
    from Datasets.augment import parse_augment  # deferred, as the registries above
    try:
        parse_augment(cfg.augment)
    except ValueError as exc:
        raise ConfigError(f"augment: {exc}") from None
    others = [a.name for a in parse_augment(cfg.augment) if a.name != "flip" and a.p > 0]
    if cfg.gpu_decode and others:  # the batch is decoded on the GPU after the loader, where only the flip is applied
        raise ConfigError(f"gpu_decode: applies only the flip of augment to images decoded on the GPU; drop "
                          f"{', '.join(others)} from augment or set gpu_decode=false")
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
    resume = next((value for key, value in pairs if key == "resume" and value), "")
    if resume:
        leftover += [f"--{k}={v}" for k, v in pairs if k in extra]
        return validate(_resumed_config(resume, [(k, v) for k, v in pairs if k not in extra])), leftover
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


def _resumed_config(resume: str, pairs: list[tuple[str, str]]) -> Config:
    """The run's own settings (Config/resume.py), then the flags that may change on resume; a flag that would change
    the training itself is refused, every such key named in one line."""
    if any(key in ("preset", "config") for key, _ in pairs):
        raise ConfigError("resume: --preset/--config cannot be combined with --resume (a resumed run keeps its own "
                          "settings; change only epochs, cadence or logging flags)")
    try:
        trust = any(ALIASES.get(k, k) == "trust_checkpoint" and str(v).strip().lower() in ("1", "true", "yes", "on")
                    for k, v in pairs)
        saved = saved_run_settings(resume, trust)
    except (OSError, ValueError) as exc:
        raise ConfigError(str(exc)) from None
    known = set(Config.field_names())
    # keys of fields this version no longer has are dropped: the run was written by an older version
    cfg = apply_overrides(Config(), {k: v for k, v in saved.items() if ALIASES.get(k, k) in known},
                          source=f"the saved settings of {resume}")
    run_settings = cfg.to_dict()
    given = {}
    for key, value in pairs:
        cfg = apply_overrides(cfg, {key: value}, source="command line")
        given[ALIASES.get(key, key)] = getattr(cfg, ALIASES.get(key, key))
    conflicts = resume_conflicts(run_settings, given)
    if conflicts:
        raise ConfigError(f"resume: these flags would change the training of {resume}, so a resumed run refuses "
                          f"them (start a new run instead): {'; '.join(conflicts)}")
    return cfg


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
