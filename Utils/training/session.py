"""Everything before the first step: components, run directory, resume, verification sets, sinks (`setup`), and
`train` = setup + the loop, the entry point for tests and notebooks."""
from __future__ import annotations

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
from .run_dir import make_run_dir, run_dir_of_checkpoint, save_config
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


def _log_training_data(dataset, logger: RunLogger) -> None:
    """Per-set images and classes when the run trains on several sets; what the readers noted (a float32 header)."""
    if hasattr(dataset, "summary_rows"):
        logger.info(format_table(dataset.summary_rows(), "training sets"))
    for note in getattr(dataset, "notes", []):
        logger.info(note)


def setup(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> Session:
    """Build the run for `cfg`. `dataset`, `val_sets` (loaded sets) and `verify_fn` replace what the config names
    (tests and notebooks inject their own); `ctx` replaces the torchrun environment."""
    preflight(cfg, train=dataset is None, val=val_sets is None)  # before the data is built or generated
    comp = build_components(cfg, dataset, ctx)
    ctx = comp.ctx
    run_dir = None
    if not cfg.write_nothing:
        if ctx.is_main:
            run_dir = run_dir_of_checkpoint(cfg.resume) if cfg.resume else make_run_dir(cfg)
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else "", ctx) or ".")
    logger = RunLogger(run_dir / "train.log" if run_dir else None, enabled=ctx.is_main)
    state = TrainState()
    _log_training_data(comp.dataset, logger)
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
        resharded = reshard_partial_fc(comp, ckpt, ckpt_dir, cfg.trust_checkpoint) if cfg.partial_fc and not same_world else None
        state = restore_checkpoint(comp, ckpt, sidecar, resharded)
        logger.info(f"resumed from {cfg.resume}: epoch {state.epoch + 1}, iteration {state.iteration}")
        if not same_world:
            logger.info(f"resumed on {ctx.world_size} processes from a run on {saved_world}: the sampler goes on at "
                        f"global sample {state.epoch_iteration * comp.global_batch} of epoch {state.epoch + 1}"
                        + (", Partial-FC class centres re-sharded" if cfg.partial_fc else ""))
        if ckpt.get("iters_per_epoch", comp.iters_per_epoch) != comp.iters_per_epoch:
            logger.warn(f"iterations per epoch: {ckpt['iters_per_epoch']} in the checkpoint, {comp.iters_per_epoch} "
                        f"now (the last partial batch splits differently over {ctx.world_size} processes)")
        for diff in config_differences(ckpt.get("config", {}), cfg):
            logger.warn(f"setting changed since the checkpoint: {diff}")
    elif run_dir is not None and ctx.is_main:
        save_config(cfg, run_dir)
    if val_sets is None:
        val_sets = _load_val_sets(cfg, ctx)
    sinks = None
    if ctx.is_main:
        name = run_dir.name if run_dir else f"{cfg.backbone}_{cfg.head}_write_nothing"
        sinks = build_sinks(cfg, name, logger.warn, run_dir, state.iteration)
    policy = RunPolicy(comp, state, run_dir, logger, val_sets, verify_fn, sinks)
    return Session(comp, state, policy)


def train(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> RunResult:
    """setup + run: train `cfg` to its end (or its stop) and return the outcome."""
    return run(setup(cfg, dataset, val_sets, verify_fn, ctx))
