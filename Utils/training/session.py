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
from .log import RunLogger, format_table
from .loop import RunResult, run
from .policy import RunPolicy, load_sidecar
from .preflight import preflight
from .reshard import reshard_partial_fc
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


def _training_data_notes(dataset) -> list[str]:
    """Per-set images and classes when the run trains on several sets; what the readers noted (a float32 header)."""
    notes = [format_table(dataset.summary_rows(), "training sets")] if hasattr(dataset, "summary_rows") else []
    return notes + list(getattr(dataset, "notes", []))


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
    preflight(cfg, train=dataset is None, val=val_sets is None)  # before the data is built or generated
    comp = build_components(cfg, dataset, ctx)
    ctx = comp.ctx
    if val_sets is None:  # read before the run directory exists: a bad file leaves nothing behind
        val_sets = _load_val_sets(cfg, ctx)
    run_dir = None
    if not cfg.write_nothing:
        if ctx.is_main:
            run_dir = run_dir_of_checkpoint(cfg.resume) if cfg.resume else plan_run_dir(cfg)
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else "", ctx) or ".")
    state = TrainState()
    notes += _training_data_notes(comp.dataset)
    warnings: list[str] = []
    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume, trust=cfg.trust_checkpoint)
        ckpt_dir = run_dir_of_checkpoint(cfg.resume)
        saved_world = int(ckpt.get("world_size", 1))
        same_world = saved_world == ctx.world_size
        # a sidecar of an earlier session on another number of ranks may lie beside last.pt: only this one's counts
        sidecar = load_sidecar(ckpt_dir, ctx.rank, cfg.trust_checkpoint) if ctx.rank > 0 and same_world else None
        if sidecar is not None and sidecar.get("iteration", ckpt["iteration"]) != ckpt["iteration"]:
            raise ValueError(f"resume: {ckpt_dir}/last.rank{ctx.rank}.pt is from iteration {sidecar['iteration']}, "
                             f"last.pt from {ckpt['iteration']} (a stale shard)")
        if ctx.rank > 0 and cfg.partial_fc and same_world and sidecar is None:
            raise ValueError(f"resume: {ckpt_dir} has no last.rank{ctx.rank}.pt (this rank's Partial-FC shard)")
        resharded = (reshard_partial_fc(comp, ckpt, ckpt_dir, cfg.trust_checkpoint)
                     if cfg.partial_fc and not same_world else None)
        state = restore_checkpoint(comp, ckpt, sidecar, resharded)
        notes.append(f"resumed from {cfg.resume}: epoch {state.epoch + 1}, iteration {state.iteration}")
        if not same_world:
            notes.append(f"resumed on {ctx.world_size} processes from a run on {saved_world}: the sampler goes on at "
                         f"global sample {state.epoch_iteration * comp.global_batch} of epoch {state.epoch + 1}"
                         + (", Partial-FC class centres re-sharded" if cfg.partial_fc else ""))
        if ckpt.get("iters_per_epoch", comp.iters_per_epoch) != comp.iters_per_epoch:
            warnings.append(f"iterations per epoch: {ckpt['iters_per_epoch']} in the checkpoint, "
                            f"{comp.iters_per_epoch} now (the last partial batch splits differently over "
                            f"{ctx.world_size} processes)")
        warnings += [f"setting changed since the checkpoint: {diff}"
                     for diff in config_differences(ckpt.get("config", {}), cfg)]
    # every check has passed: only now is anything written (a failed start leaves no run directory behind)
    if run_dir is not None and ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir)  # on resume too: config.json holds the settings the run goes on with
    logger = RunLogger(run_dir / "train.log" if run_dir else None, enabled=ctx.is_main)
    for note in notes:
        logger.info(note)
    for warning in warnings:
        logger.warn(warning)
    sinks = None
    if ctx.is_main:
        name = run_dir.name if run_dir else f"{cfg.backbone}_{cfg.head}_write_nothing"
        sinks = build_sinks(cfg, name, logger.warn, run_dir, state.iteration)
    return Session(comp, state, RunPolicy(comp, state, run_dir, logger, val_sets, verify_fn, sinks))


def train(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> RunResult:
    """setup + run: train `cfg` to its end (or its stop) and return the outcome."""
    return run(setup(cfg, dataset, val_sets, verify_fn, ctx))
