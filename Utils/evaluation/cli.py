"""What every evaluation command line shares: one flag set for the model, one loader, one error path.

    parser = EvalParser(prog, description)       # argparse, but errors are one line
    add_model_flags(parser)                      # --checkpoint, --batch_size, --device, --amp, --exact,
                                                 # --num_workers, --input_size, --color_order
    args = parser.parse_args(argv); check_counts(args)
    loaded = load_model(args)                    # checkpoint -> model on its device + input size + colour order +
                                                 # autocast dtype (the checkpoint's metadata unless a flag overrides)
                                                 # + whether to take the fast path (not --exact)
    return run_cli(lambda: work(args), ...)      # 0, or 2 after one "error: ..." line, 130 on Ctrl-C
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..checkpoint import load_backbone, load_checkpoint
from ..device import autocast_dtype, resolve_device

__all__ = ["CLIError", "HelpFormatter", "EvalParser", "parse_input_size", "parse_list", "add_model_flags",
           "add_trust_flag", "parse_bool", "check_counts", "LoadedModel", "check_checkpoint", "load_model",
           "synthetic_settings", "add_overwrite_flag", "check_overwrite", "run_cli"]


class CLIError(ValueError):
    """A bad command line; printed as one line."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's default in --help: appended as argparse does, '' shown as such, and left to the help text where
    it says "default:" itself (a default that depends on other flags or on the checkpoint)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.default == "":
            return f"{text} (default: '')"
        return super()._get_help_string(action)


class EvalParser(argparse.ArgumentParser):
    """argparse whose errors are one CLIError line instead of the usage block and an exit."""

    def __init__(self, prog: str, description: str):
        # every flag's default in --help
        super().__init__(prog=prog, description=description, allow_abbrev=False,
                         formatter_class=HelpFormatter)

    def error(self, message: str):
        raise CLIError(f"{message} (see --help)")


def parse_input_size(text: str) -> list[int]:
    """'112,96', '112x96' or '[112, 96]' -> [112, 96]; both sides at least 32 (four stride-2 stages, then >= 2)."""
    parts = [t for t in re.split(r"[,x\s\[\]]+", text.strip()) if t]
    try:
        hw = [int(t) for t in parts]
    except ValueError:
        hw = []
    if len(hw) != 2 or min(hw) < 32:
        raise CLIError(f"--input_size: expected H,W of at least 32 each (e.g. 112,96), got '{text}'")
    return hw


def parse_list(text: str, kind: Callable, flag: str) -> list:
    """'a,b c' -> [kind(a), kind(b), kind(c)]; ints may be written as floats (1e6)."""
    try:
        return [kind(float(t)) if kind is int else kind(t) for t in re.split(r"[,\s]+", text.strip()) if t]
    except ValueError:
        raise CLIError(f"{flag}: cannot parse '{text}'") from None


def add_model_flags(group, checkpoint_required: bool = True,
                    checkpoint_help: str = "a project checkpoint (training or Utils.tools.model_import), or a run "
                                           "directory (its last.pt)",
                    device_help: str = "auto, cpu, cuda or cuda:N", amp_help: str = "autocast precision") -> None:
    """The flags of every script that embeds images with a checkpoint: the checkpoint, batch, device, precision,
    the fast path or --exact, workers, and the input size and colour order that override the checkpoint's
    metadata."""
    group.add_argument("--checkpoint", required=checkpoint_required, default="", help=checkpoint_help)
    group.add_argument("--batch_size", type=int, default=0,
                       help="images per forward pass (each also flipped); 0 = chosen for the device (CPU 64, GPU 256)")
    group.add_argument("--device", default="auto", help=device_help)
    group.add_argument("--amp", default="auto", choices=["auto", "none", "bf16", "fp16"],
                       help=f"{amp_help}; auto = bf16 where the device runs it natively, else none")
    group.add_argument("--exact", action="store_true",
                       help="the reference path: fp32, NCHW, eager, BN unfolded (ignores --amp). Default: the fast "
                            "path (BN folded, channels_last, native bf16)")
    group.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes for image decoding")
    group.add_argument("--input_size", default="", help="override the checkpoint's input size: H,W, e.g. 112,96 "
                                                        "(default: the checkpoint's)")
    group.add_argument("--color_order", default=None, choices=["RGB", "BGR"],
                       help="override the checkpoint's channel order (default: the checkpoint's)")
    add_trust_flag(group)


def parse_bool(text: str) -> bool:
    """'true'/'false' (1/0, yes/no, on/off) as argparse type."""
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_trust_flag(group) -> None:
    """--trust_checkpoint[=true]: load a checkpoint that pickles more than tensors and plain types (runs its code)."""
    group.add_argument("--trust_checkpoint", type=parse_bool, nargs="?", const=True, default=False,
                       help="load a checkpoint that needs full unpickling (it can run code: only files you trust)")


def check_counts(args, at_least_one: tuple[str, ...] = ("batch_size",)) -> None:
    """Flags that must be >= 1 (--batch_size may be 0: the device's default), and --num_workers >= 0: one line
    naming the flag."""
    if getattr(args, "batch_size", 1) == 0:
        at_least_one = tuple(f for f in at_least_one if f != "batch_size")
    for flag in at_least_one:
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag}: must be >= 1, got {getattr(args, flag)}")
    if args.num_workers < 0:
        raise CLIError(f"--num_workers: must be >= 0, got {args.num_workers}")


@dataclass
class LoadedModel:
    """A checkpoint's backbone ready to embed, and how its inputs must look."""
    model: torch.nn.Module  # eval mode, on `device`
    meta: dict
    input_hw: list[int]
    color_order: str
    device: torch.device
    amp_dtype: torch.dtype | None
    amp: str  # the precision actually used ("none", "bf16", "fp16"), for reports
    fast: bool = True  # the fast path (fast_inference.FastModel); False under --exact

    def describe(self) -> str:
        h, w = self.input_hw
        return (f"model {self.meta['backbone']} ({self.meta['embedding_size']}-d, input {h}x{w} {self.color_order}) "
                f"on {self.device}, amp={self.amp}, {'fast path' if self.fast else 'exact (fp32 NCHW eager)'}")


def check_checkpoint(args) -> None:
    """--checkpoint names an existing file or run directory (checked before anything heavy is imported)."""
    if not args.checkpoint:
        raise CLIError("--checkpoint: not given")
    if not Path(args.checkpoint).exists():
        raise CLIError(f"--checkpoint: no such file: {args.checkpoint}")


def load_model(args) -> LoadedModel:
    """The checkpoint's backbone on --device with its input size and colour order (flags override the metadata)
    and the autocast dtype of --amp."""
    check_checkpoint(args)
    device = resolve_device(args.device)
    if getattr(args, "batch_size", None) == 0:  # 0 = the device's default, resolved once for every later use
        from .fast_inference import default_batch_size
        args.batch_size = default_batch_size(device)
    exact = bool(getattr(args, "exact", False))
    amp_dtype = None if exact else autocast_dtype(args.amp, device, key="--amp")
    model, meta = load_backbone(args.checkpoint, device, trust=args.trust_checkpoint)
    hw = parse_input_size(args.input_size) if args.input_size else [int(v) for v in meta["input_size"]]
    color = args.color_order or meta.get("color_order", "RGB")
    amp = {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}[amp_dtype]
    return LoadedModel(model, meta, hw, color, device, amp_dtype, amp, fast=not exact)


def synthetic_settings(checkpoint: str, trust: bool = False) -> dict:
    """The synthetic-set settings (data_root, synthetic_*, input_size) of the run that wrote `checkpoint`: the set
    it was trained and validated on, which --data=synthetic evaluates instead of the default one. {} for a
    checkpoint that holds no config."""
    from Config.config import Config  # deferred, as the scripts import Config only when they need it

    saved = load_checkpoint(checkpoint, trust=trust).get("config") or {} if checkpoint else {}
    keys = [k for k in Config.field_names() if k.startswith("synthetic_") or k in ("data_root", "input_size")]
    return {k: saved[k] for k in keys if k in saved}


def add_overwrite_flag(group) -> None:
    group.add_argument("--overwrite", action="store_true",
                       help="replace a result file that holds another checkpoint's or data set's result")


def check_overwrite(path: Path, identity: dict, overwrite: bool) -> None:
    """Refuse to replace `path` when it holds the result of another checkpoint or data (`identity`: the report's
    keys naming what was evaluated) unless --overwrite; rerunning the same evaluation replaces its own result."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        old = {}
    differ = [k for k, v in identity.items() if str(old.get(k)) != str(v)]
    if differ:
        was = ", ".join(f"{k} {old.get(k)}" for k in differ)
        raise CLIError(f"{path} already holds another result ({was}); give --overwrite to replace it, or --name / "
                       f"--output_dir to keep both")


def run_cli(run: Callable[[], object]) -> int:
    """Call `run`; 0 when it returns, 2 after one 'error: ...' line on a bad flag, file or value, 130 on Ctrl-C."""
    try:
        run()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError, RuntimeError) as exc:  # CLIError, ConfigError, DataFormatError: ValueErrors
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
    return 0
