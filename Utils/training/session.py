"""Everything before the first step: components, run directory, resume, verification sets, sinks (`setup`), and
`train` = setup + the loop, the entry point for tests and notebooks."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..checkpoint import load_checkpoint
from .build import Components, build_components
from .distributed import DistContext, broadcast_object
from .log import RunLogger
from .loop import RunResult, run
from .policy import RunPolicy, load_sidecar
from .run_dir import plan_run_dir, run_dir_of_checkpoint, save_config
from .sinks import build_sinks
from .state import TrainState, config_differences, restore_checkpoint

__all__ = ["Session", "setup", "train"]


@dataclass
class Session:
    """A run ready to go: what it trains with, where it stands, and what it does between steps."""
    comp: Components
    state: TrainState
    policy: RunPolicy

    @property
    def cfg(self):
        return self.comp.cfg


def _load_val_sets(cfg, ctx: DistContext) -> list:
    if not ctx.is_main or not cfg.val_sets:
        return []
    from Datasets import load_verification_set  # deferred: only the evaluating rank reads the sets

    return [load_verification_set(spec, cfg) for spec in cfg.val_sets]


def _resolve_val_sets(cfg, loaded: list | None) -> tuple:
    """cfg with val_sets "auto" expanded (every rank, so all agree whether the run evaluates), and what it chose;
    the expanded list is what config.json records."""
    if loaded is not None or "auto" not in cfg.val_sets:
        return cfg, []
    from Datasets import resolve_val_sets  # deferred, as in _load_val_sets

    specs, note = resolve_val_sets(cfg)
    return dataclasses.replace(cfg, val_sets=specs), [note] if note else []


def setup(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> Session:
    """Build the run for `cfg`. `dataset`, `val_sets` (loaded sets) and `verify_fn` replace what the config names
    (tests and notebooks inject their own); `ctx` replaces the torchrun environment."""
    cfg, notes = _resolve_val_sets(cfg, val_sets)
    comp = build_components(cfg, dataset, ctx)
    ctx = comp.ctx
    run_dir = None
    if not cfg.write_nothing:
        if ctx.is_main:
            run_dir = run_dir_of_checkpoint(cfg.resume) if cfg.resume else plan_run_dir(cfg)
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else "", ctx) or ".")
    state = TrainState()
    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume)
        sidecar = load_sidecar(run_dir_of_checkpoint(cfg.resume), ctx.rank) if ctx.rank > 0 else None
        if ctx.rank > 0 and cfg.partial_fc and sidecar is None:
            raise ValueError(f"resume: {run_dir_of_checkpoint(cfg.resume)} has no last.rank{ctx.rank}.pt "
                             f"(this rank's Partial-FC shard)")
        state = restore_checkpoint(comp, ckpt, sidecar)
        notes.append(f"resumed from {cfg.resume}: epoch {state.epoch + 1}, iteration {state.iteration}")
        notes += [f"warning: setting changed since the checkpoint: {diff}"
                  for diff in config_differences(ckpt.get("config", {}), cfg)]
    if val_sets is None:
        val_sets = _load_val_sets(cfg, ctx)
    # every check has passed: only now is anything written (a failed start leaves no run directory behind)
    if run_dir is not None and ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir)  # on resume too: config.json holds the settings the run goes on with
    logger = RunLogger(run_dir / "train.log" if run_dir else None, enabled=ctx.is_main)
    for note in notes:
        logger.info(note)
    policy = RunPolicy(comp, state, run_dir, logger, val_sets, verify_fn)
    if ctx.is_main:  # the sinks label the run as the policy names it (visdom: its environment)
        policy.sinks = build_sinks(cfg, policy.run_name, logger.warn)
    return Session(comp, state, policy)


def train(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> RunResult:
    """setup + run: train `cfg` to its end (or its stop) and return the outcome."""
    return run(setup(cfg, dataset, val_sets, verify_fn, ctx))
