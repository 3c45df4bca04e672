"""What a training checkpoint holds and how a run is put back exactly where it stopped.

A resumable checkpoint is taken between optimizer steps. It stores the models, optimizer, LR scheduler, GradScaler,
the progress counters and every RNG (python, numpy, torch CPU, CUDA), so that a resumed run on CPU with
num_workers=0 repeats bit for bit what the uninterrupted run would have done. The sampler needs nothing of its own:
its order is a function of (seed, epoch), and its position is the epoch's step count times the per-rank batch.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..checkpoint import backbone_meta
from .distributed import unwrap

__all__ = ["TrainState", "rng_state", "set_rng_state", "seed_everything", "head_state", "make_checkpoint",
           "rank_sidecar", "config_differences", "restore_checkpoint"]


@dataclass
class TrainState:
    """Progress counters; `epoch` / `epoch_iteration` name the next step to run."""
    epoch: int = 0
    iteration: int = 0  # optimizer steps done in all
    epoch_iteration: int = 0  # optimizer steps done in `epoch`
    skipped_steps: int = 0  # non-finite steps skipped in all
    bad_in_row: int = 0  # consecutive non-finite steps (reset by a good one)
    skipped_files: int = 0  # corrupt training images replaced by the dataset
    images: int = 0  # training images processed (all ranks)
    train_seconds: float = 0.0  # wall time spent in training steps (all sessions of a resumed run)
    best: dict[str, float] = field(default_factory=dict)  # best verification accuracy per set
    best_mean: float = -1.0  # mean accuracy of the checkpoint kept as best.pt
    last_eval: dict[str, float] = field(default_factory=dict)
    last_loss: float = float("nan")
    last_accuracy: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG as tensors and plain types (a weights_only load reads it): numpy's MT19937 key as an int64 tensor
    (torch.uint32 has few kernels; int64 holds every uint32), its counters as ints."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    saved = state["numpy"]
    if isinstance(saved, dict):
        saved = (saved["kind"], saved["key"].numpy().astype(np.uint32), saved["pos"], saved["has_gauss"],
                 saved["cached_gaussian"])
    np.random.set_state(saved)  # a tuple: a checkpoint written before the tensor form
    torch.set_rng_state(state["torch"].cpu() if hasattr(state["torch"], "cpu") else state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# Settings that may differ between a run and its resumption without changing what is trained.
_RESUME_FREE_KEYS = {"resume", "max_iterations", "run_name", "output_dir", "use_visdom", "visdom_server",
                     "visdom_port", "visdom_timeout", "num_workers", "log_every", "eval_every", "save_every",
                     "val_sets", "eval_batch_size", "device", "write_nothing", "max_bad_steps", "data_root",
                     "train_root", "train_list", "trust_checkpoint"}
_RESUME_FREE_KEYS |= {"use_tensorboard", "tensorboard_dir"}  # where the curves also go


def head_state(comp) -> dict:
    """The head's state_dict; under Partial-FC this rank's shard (the whole matrix in a single process)."""
    return comp.head.head.state_dict() if comp.partial_fc else comp.head.state_dict()


def make_checkpoint(comp, state: TrainState) -> dict[str, Any]:
    """Everything a resumed run needs, plus the metadata evaluation scripts read (Utils.checkpoint)."""
    cfg = comp.cfg
    return {
        "backbone": unwrap(comp.backbone).state_dict(),
        "head": head_state(comp),
        "optimizer": comp.optimizer.state_dict(),
        "scheduler": comp.scheduler.state_dict(),
        "scaler": comp.scaler.state_dict(),
        "epoch": state.epoch,
        "iteration": state.iteration,
        "rng": rng_state(),
        "train_state": state.to_dict(),
        "num_classes": comp.num_classes,
        "world_size": comp.ctx.world_size,
        "partial_fc": comp.partial_fc,
        "head_range": _head_range(comp),
        "iters_per_epoch": comp.iters_per_epoch,
        "config": cfg.to_dict(),
        "meta": backbone_meta(cfg.backbone, comp.embedding_size, cfg.input_hw, cfg.color_order),
    }


def _head_range(comp) -> list[int] | None:
    """[start, end) of the classes this rank's head shard holds (Partial-FC), for re-sharding on resume."""
    return [int(comp.head.start), int(comp.head.end)] if comp.partial_fc else None


def rank_sidecar(comp, state: TrainState | None = None) -> dict[str, Any]:
    """What a rank > 0 must keep of its own: its RNGs and, under Partial-FC, its head shard and optimizer state."""
    side = {"rank": comp.ctx.rank, "rng": rng_state(), "iteration": state.iteration if state else None}
    if comp.partial_fc:
        side.update(head=head_state(comp), optimizer=comp.optimizer.state_dict(), head_range=_head_range(comp))
    return side


def config_differences(saved: dict[str, Any], cfg) -> list[str]:
    """'key: saved -> now' for settings that change the training itself."""
    now = cfg.to_dict()
    return [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now
            if k in saved and k not in _RESUME_FREE_KEYS and saved[k] != now[k]]


def restore_checkpoint(comp, ckpt: dict[str, Any], sidecar: dict[str, Any] | None = None,
                       resharded: dict[str, Any] | None = None) -> TrainState:
    """Load models, optimizer, scheduler, scaler and RNGs from `ckpt` (rank > 0: its `sidecar` too). On another
    number of ranks, `resharded` holds this rank's Partial-FC head and optimizer state (Utils/training/reshard.py);
    the sampler needs nothing: its position follows from the optimizer steps and the global batch."""
    if ckpt.get("num_classes", comp.num_classes) != comp.num_classes:
        raise ValueError(f"resume: checkpoint has {ckpt['num_classes']} classes, the training set "
                         f"{comp.num_classes}")
    state = TrainState.from_dict(ckpt.get("train_state") or {"epoch": ckpt["epoch"], "iteration": ckpt["iteration"]})
    saved_world = ckpt.get("world_size", 1)
    if saved_world != comp.ctx.world_size and comp.partial_fc and resharded is None:
        raise ValueError(f"resume: Partial-FC class shards were saved by {saved_world} processes and not re-sharded "
                         f"for {comp.ctx.world_size}")
    unwrap(comp.backbone).load_state_dict(ckpt["backbone"])
    own = resharded or (sidecar if (sidecar is not None and comp.partial_fc) else ckpt)
    head = comp.head.head if comp.partial_fc else comp.head
    head.load_state_dict(own["head"])
    comp.optimizer.load_state_dict(own["optimizer"])
    comp.scheduler.load_state_dict(ckpt["scheduler"])
    if comp.scaler.is_enabled() and ckpt.get("scaler"):
        comp.scaler.load_state_dict(ckpt["scaler"])
    set_rng_state((sidecar or ckpt)["rng"])
    return state
