"""What the evaluation command lines share: one-line argument errors and the --input_size flag."""
from __future__ import annotations

import argparse
import re
import sys
from typing import Callable

__all__ = ["CLIError", "OneLineParser", "parse_input_size", "add_extraction_flags", "check_counts", "exit_status"]


class CLIError(ValueError):
    """A bad command line; printed as one line."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage block and exit by itself
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


def add_extraction_flags(group, device_help: str = "auto, cpu, cuda or cuda:N",
                         amp_help: str = "autocast precision") -> None:
    """The flags of every script that embeds images with a checkpoint: batch, device, precision, workers, and the
    input size and colour order that override the checkpoint's metadata."""
    group.add_argument("--batch_size", type=int, default=128, help="images per forward pass (each also flipped)")
    group.add_argument("--device", default="auto", help=device_help)
    group.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"], help=amp_help)
    group.add_argument("--num_workers", type=int, default=2, help="DataLoader worker processes for image decoding")
    group.add_argument("--input_size", default="", help="override the checkpoint's input size: H,W (e.g. 112,96)")
    group.add_argument("--color_order", default="", choices=["", "RGB", "BGR"], help="override the checkpoint's")


def check_counts(args, at_least_one: tuple[str, ...] = ("batch_size",)) -> None:
    """Flags that must be >= 1, and --num_workers >= 0: one line naming the flag."""
    for flag in at_least_one:
        if getattr(args, flag) < 1:
            raise CLIError(f"--{flag}: must be >= 1, got {getattr(args, flag)}")
    if args.num_workers < 0:
        raise CLIError(f"--num_workers: must be >= 0, got {args.num_workers}")


def exit_status(run: Callable[[], object]) -> int:
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
