"""Log lines of a training run: to the console (above the tqdm bar) and to train.log in the run directory."""
from __future__ import annotations

import math
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["RunLogger", "format_table", "format_duration"]


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "--:--"
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_table(rows: list[tuple[str, str]], title: str = "") -> str:
    """Two aligned columns in a box of dashes."""
    width = max([len(k) for k, _ in rows] + [4])
    vwidth = max([len(v) for _, v in rows] + [4])
    rule = "-" * (width + vwidth + 3)
    lines = [rule] + ([title, rule] if title else [])
    lines += [f"{k:<{width}} | {v}" for k, v in rows]
    return "\n".join(lines + [rule])


class RunLogger:
    """Only the main process writes; a None `log_file` (write_nothing) keeps everything on the console."""

    def __init__(self, log_file: Path | None, enabled: bool = True):
        self.enabled = enabled
        self.log_file = log_file if enabled else None

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        tqdm.write(message)  # keeps an active progress bar intact
        if self.log_file is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(self.log_file, "a") as f:
                for line in message.splitlines() or [""]:
                    f.write(f"{stamp} {line}\n")

    def warn(self, message: str) -> None:
        self.info(f"warning: {message}")
