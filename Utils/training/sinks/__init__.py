"""Where a run's numbers go besides train.log and history.jsonl: dashboards, one file per kind (visdom, tensorboard).

A sink takes `scalar(tag, step, value, title)` and `close()`; it must never slow training or fail it (each one
buffers and gives up with one warning). `build_sinks(cfg, name, warn, run_dir, start_step)` makes those the config
switches on.
"""
from __future__ import annotations

import math
from typing import Callable, Protocol

__all__ = ["MetricSink", "Sinks", "build_sinks", "visdom_env"]


class MetricSink(Protocol):
    def scalar(self, tag: str, step: int, value: float, title: str | None = None) -> None: ...

    def close(self) -> None: ...


class Sinks:
    """Every configured sink at once; non-finite values are not sent (a plot cannot show them)."""

    def __init__(self, sinks: list[MetricSink]):
        self.sinks = sinks

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def scalar(self, tag: str, step: int, value: float, title: str | None = None) -> None:
        if math.isfinite(value):
            for sink in self.sinks:
                sink.scalar(tag, step, value, title)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def visdom_env(name: str) -> str:
    """The visdom environment of run `name` (visdom reads '-' in an environment name as a sub-environment)."""
    return name.replace("-", "_")


def _visdom(cfg, name: str, warn: Callable[[str], None]) -> MetricSink:
    from .visdom import VisdomLogger  # deferred: visdom (and requests) only when the run plots live

    return VisdomLogger(cfg.visdom_server, cfg.visdom_port, visdom_env(name), cfg.visdom_timeout, warn=warn)


def _tensorboard(cfg, name: str, warn: Callable[[str], None], run_dir=None, start_step: int = 0) -> MetricSink | None:
    log_dir = cfg.tensorboard_dir or run_dir
    if not log_dir:  # write_nothing and no folder named: nothing may be written
        warn("use_tensorboard: no tensorboard_dir and no run directory (write_nothing); TensorBoard logging is off")
        return None
    from .tensorboard import TensorBoardSink  # deferred: tensorboard loads only when asked for

    return TensorBoardSink(log_dir, purge_step=start_step + 1 if start_step else None, warn=warn)


def _visdom_sink(cfg, name, warn, run_dir=None, start_step=0):
    return _visdom(cfg, name, warn)


# config switch -> constructor(cfg, run name, warn, run directory, first step - 1)
_SINKS: dict[str, Callable] = {"use_visdom": _visdom_sink, "use_tensorboard": _tensorboard}


def build_sinks(cfg, name: str, warn: Callable[[str], None], run_dir=None, start_step: int = 0) -> Sinks:
    """The sinks `cfg` switches on, each labelling the run `name` (visdom: the environment); `run_dir` is where
    file sinks write by default, `start_step` the iteration a resumed run continues from."""
    made = [make(cfg, name, warn, run_dir, start_step) for switch, make in _SINKS.items() if getattr(cfg, switch)]
    return Sinks([s for s in made if s is not None])
