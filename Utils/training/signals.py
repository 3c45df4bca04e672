"""SIGTERM / SIGINT during training: finish the current step, save a resumable checkpoint, exit with status 3.

Cluster schedulers pre-empt a job with SIGTERM and a grace period; killing the process mid-step would lose
everything since the last save_every. The handler only sets a flag; the loop reads it between steps (all-reduced,
so every DDP rank stops at the same step and none waits forever in a collective). A second signal while the first
is being honoured restores the default behaviour and is raised again, so a stuck run can still be killed.
DataLoader workers ignore both signals (`ignore_in_worker`): their parent decides when they end.
"""
from __future__ import annotations

import signal
import threading

import torch
import torch.distributed as dist

__all__ = ["STOP_SIGNALS", "StopSignals", "ignore_in_worker"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager: while inside, SIGTERM/SIGINT set `received` instead of ending the process.

    Outside the main thread (signal handlers cannot be installed there) it does nothing and never reports a stop.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:  # the second one: give up the graceful stop
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.received = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    @property
    def name(self) -> str:
        return signal.Signals(self.received).name if self.received is not None else ""

    def requested(self, ctx) -> bool:
        """Whether any rank received a stop signal (an all-reduce under DDP: every rank must take the same path)."""
        if not ctx.distributed:
            return self.received is not None
        flag = torch.tensor([1.0 if self.received is not None else 0.0], device=ctx.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.received is None:
            self.received = signal.SIGTERM  # another rank's signal
        return bool(flag.item())


def ignore_in_worker() -> None:
    """In a DataLoader worker: a signal sent to the whole process group must not kill the worker under its parent,
    which would turn a graceful stop into 'DataLoader worker exited unexpectedly'."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
