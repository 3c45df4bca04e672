"""What the evaluation command lines share: one-line argument errors and the --input_size flag."""
from __future__ import annotations

import argparse
import re

__all__ = ["CLIError", "OneLineParser", "parse_input_size"]


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
