"""`--resume=runs/<run>` starts from the run's own settings, not the defaults.

The settings come from the run directory's config.json (rewritten at every resume, so it tracks the run), or from
the checkpoint's own "config" when a lone .pt file is given. Flags given with --resume may change only what does not
change the training itself (RESUME_OVERRIDABLE: length, cadence, logging, where the data lives); any other flag
whose value differs from the run's is refused in one line naming every such key.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["RESUME_OVERRIDABLE", "SESSION_KEYS", "saved_run_settings", "resume_conflicts"]

# Flags a resumed run may change: how long it goes on, how often it evaluates/saves/logs, where it reads its data
# and shows its curves. `epochs` only under the multistep schedule: cosine/poly spread their decay over all epochs.
RESUME_OVERRIDABLE = frozenset({
    "resume", "epochs", "max_iterations", "log_every", "eval_every", "eval_at_start", "save_every",
    "eval_batch_size", "val_sets", "use_visdom", "visdom_server", "visdom_port", "visdom_timeout", "num_workers",
    "device", "max_bad_steps", "data_root", "train_root", "train_list", "write_nothing", "compile",
})

# Settings of one session, not of the run: a resume starts them afresh (max_iterations stopped the previous
# session; the new one goes on to the end unless it is given again).
SESSION_KEYS = {"resume": "", "max_iterations": 0}


def _run_dir(resume: str) -> Path:
    p = Path(resume)
    return p if p.is_dir() else p.parent


def saved_run_settings(resume: str, trust: bool = False) -> dict[str, Any]:
    """The settings the run at `resume` (a run directory or a checkpoint file) was trained with; a lone checkpoint
    is read weights_only unless `trust` (--trust_checkpoint), as every other checkpoint."""
    p = Path(resume)
    if not p.exists():
        raise FileNotFoundError(f"resume: no such run directory or checkpoint: {resume}")
    config_json = _run_dir(resume) / "config.json"
    if config_json.is_file():
        try:
            saved = json.loads(config_json.read_text())
        except ValueError as exc:
            raise ValueError(f"resume: {config_json} is not valid JSON ({exc})") from None
    else:
        ckpt_path = p / "last.pt" if p.is_dir() else p
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"resume: {resume} holds neither config.json nor last.pt")
        from Utils.checkpoint import read_torch_file  # deferred: torch is needed only for a lone checkpoint file

        saved = read_torch_file(ckpt_path, trust)
        saved = saved.get("config") if isinstance(saved, dict) else None
        if not saved:
            raise ValueError(f"resume: {ckpt_path} holds no config and there is no config.json beside it")
    if not isinstance(saved, dict):
        raise ValueError(f"resume: the saved settings of {resume} are not a mapping")
    return {**saved, **SESSION_KEYS}


def resume_conflicts(saved: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """'key: run has X, flag says Y' for each flag that would change the training of a resumed run."""
    bad = []
    for key, value in given.items():
        if key not in saved or saved[key] == value:
            continue
        if key == "epochs" and saved.get("lr_schedule", "multistep") != "multistep":
            bad.append(f"epochs ({saved['lr_schedule']} schedule spreads over all epochs): run has {saved[key]!r}, "
                       f"flag says {value!r}")
        elif key not in RESUME_OVERRIDABLE:
            bad.append(f"{key}: run has {saved[key]!r}, flag says {value!r}")
    return bad
