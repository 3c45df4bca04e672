"""TensorBoard event files beside visdom: `use_tensorboard=true` writes the run's curves to `tensorboard_dir`
(default: the run directory), readable with `tensorboard --logdir runs/`.

torch.utils.tensorboard's SummaryWriter already writes from a background thread; a failure (disk full, folder
removed) turns the sink off with one warning, so it never fails training. A resumed run purges the steps after its
checkpoint that the interrupted run had logged, as history.jsonl does.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

__all__ = ["TensorBoardSink"]


class TensorBoardSink:
    """Scalars of one run as TensorBoard events.

    Args:
        log_dir: folder of the event files.
        purge_step: first step this session logs; events at or after it from an earlier session are hidden.
        warn: where the one warning goes (default: warnings.warn).
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None,
                 warn: Callable[[str], None] | None = None):
        from torch.utils.tensorboard import SummaryWriter  # deferred: tensorboard loads only when asked for

        self.log_dir = str(log_dir)
        self._warn = warn or (lambda msg: warnings.warn(msg, RuntimeWarning, stacklevel=3))
        self._writer = SummaryWriter(self.log_dir, purge_step=purge_step or None, flush_secs=30)
        self.disabled = False

    def scalar(self, tag: str, step: int, value: float, title: str | None = None) -> None:
        if self.disabled:
            return
        try:
            self._writer.add_scalar(tag, value, global_step=int(step))
        except Exception as exc:  # the sink must never end a run
            self._disable(exc)

    def _disable(self, exc: Exception) -> None:
        self.disabled = True
        self._warn(f"tensorboard: cannot write to {self.log_dir} ({exc}); TensorBoard logging is off for this run")

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception as exc:
            if not self.disabled:
                self._disable(exc)
