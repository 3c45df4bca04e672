"""The run directory: one folder per training run holding its config, log, curves and checkpoints.

    runs/<run_name>/config.json     the full Config of the run (JSON)
                    train.log       every log line (also on the console)
                    history.jsonl   one JSON object per logged iteration / evaluation (curves are drawn from it)
                    curves.png      loss, train accuracy, LR and verification accuracy at the end of the run
                    last.pt         resumable checkpoint (every save_every iterations and each epoch end)
                    best.pt         weights of the best mean verification accuracy so far
"""
from __future__ import annotations

import json
import re
import time
import warnings
from pathlib import Path

__all__ = ["plan_run_dir", "make_run_dir", "run_dir_of_checkpoint", "save_config", "append_history", "read_history", "write_history"]


def _default_name(cfg) -> str:
    return f"{cfg.backbone}_{cfg.head}_{time.strftime('%Y%m%d-%H%M%S')}"


def plan_run_dir(cfg) -> Path:
    """The run directory output_dir/<run_name> a fresh run will create (a new timestamped name when run_name is
    empty; never a non-empty one), checked but not created: a run whose later checks fail leaves nothing behind."""
    name = cfg.run_name or _default_name(cfg)
    if not re.fullmatch(r"[\w.\-]+", name):
        raise ValueError(f"run_name: '{name}' may hold only letters, digits, '_', '-' and '.'")
    path = Path(cfg.output_dir) / name
    if path.exists() and any(path.iterdir()):
        if cfg.run_name:
            raise ValueError(f"run_name: {path} already holds a run; choose another name or continue it with "
                             f"--resume={path}")
        for i in range(1, 1000):  # two runs started within the same second
            candidate = path.with_name(f"{name}-{i}")
            if not candidate.exists():
                path = candidate
                break
    return path


def make_run_dir(cfg) -> Path:
    """plan_run_dir, created."""
    path = plan_run_dir(cfg)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir_of_checkpoint(resume: str) -> Path:
    """The run directory a --resume path belongs to (the folder itself, or the checkpoint's folder)."""
    p = Path(resume)
    return p if p.is_dir() else p.parent


def save_config(cfg, run_dir: Path) -> Path:
    path = run_dir / "config.json"
    path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return path


def append_history(run_dir: Path, record: dict) -> None:
    with open(run_dir / "history.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def read_history(run_dir: Path, until_iteration: int | None = None) -> list[dict]:
    """Logged records; with `until_iteration`, those a resumed run will log again are dropped."""
    path = run_dir / "history.jsonl"
    if not path.is_file():
        return []
    lines = [(n, line) for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise ValueError(f"{path}:{n}: not a JSON record (the history is damaged before its last line)") \
                    from None
            # a crash mid-write leaves half a record as the last line: the run it belongs to is the one resuming
            warnings.warn(f"{path}:{n}: dropped a torn last line (the previous run stopped while writing it)",
                          stacklevel=2)
    if until_iteration is not None:
        records = [r for r in records if r.get("iteration", 0) <= until_iteration]
    return records


def write_history(run_dir: Path, records: list[dict]) -> None:
    """Replace the history (a resumed run first drops what was logged after its checkpoint)."""
    tmp = run_dir / "history.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(run_dir / "history.jsonl")
