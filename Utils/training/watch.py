"""What a run tells its user about where to look: at the start the live pages (visdom, and whatever else registers
a hint here: the TensorBoard command once that sink exists; the run directory is on the first line already); at the
end the command that evaluates its best.pt. Lines only, printed through the run's logger (console and train.log)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .sinks import visdom_env

__all__ = ["WATCH_HINTS", "register_watch_hint", "watch_lines", "evaluation_command", "effective_log_every"]

# (cfg, run_dir or None, run name) -> a line, or None when the hint does not apply to this run
WATCH_HINTS: list[Callable] = []


def register_watch_hint(hint: Callable) -> Callable:
    """Add a start-of-run hint (decorator); e.g. the TensorBoard sink registers its `tensorboard --logdir` line."""
    WATCH_HINTS.append(hint)
    return hint


@register_watch_hint
def _visdom_hint(cfg, run_dir, name: str) -> str:
    url = f"{cfg.visdom_server.rstrip('/')}:{cfg.visdom_port}/env/{visdom_env(name)}"
    if cfg.use_visdom:
        return f"live curves: {url} (server: python -m Utils.tools.visdom_server)"
    return f"live curves: off (--use_visdom=true, with python -m Utils.tools.visdom_server, shows them at {url})"


@register_watch_hint
def _tensorboard_hint(cfg, run_dir, name: str) -> str:
    log_dir = cfg.tensorboard_dir or run_dir
    if not cfg.use_tensorboard or not log_dir:
        return ""
    return f"TensorBoard: tensorboard --logdir {log_dir} (then http://localhost:6006)"


def watch_lines(cfg, run_dir: Path | None, name: str) -> list[str]:
    """The hints' lines (the run directory is on the run's first line already)."""
    return [line for hint in WATCH_HINTS if (line := hint(cfg, run_dir, name))]


def evaluation_command(cfg, run_dir: Path | None) -> str:
    """The command that evaluates the run's best.pt on what it validated on ("" when there is no best.pt)."""
    if run_dir is None or not (run_dir / "best.pt").is_file():
        return ""
    bins = [s for s in cfg.val_sets if s.endswith(".bin") and "::" not in s]
    data = "synthetic" if "synthetic" in cfg.val_sets else (bins[0] if bins else "/path/to/lfw.bin")
    return f"python LFW_Evaluation.py --checkpoint={run_dir / 'best.pt'} --data={data}"


def effective_log_every(log_every: int, total_iters: int) -> int:
    """log_every, or ~10 points over a run shorter than it (a curve of one point shows nothing)."""
    if log_every < total_iters:
        return log_every
    return max(1, total_iters // 10)
