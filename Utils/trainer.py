"""The training loop: one optimizer step (`train_step`), one epoch (`train_one_epoch`), evaluation (`evaluate`).

Train.py builds the pieces (`Components`) and decides what happens between steps (logging, evaluation, saving);
this module only moves data through the model and the optimizer.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from Heads.base import HeadOutput

from .distributed import DistContext, unwrap
from .train_state import TrainState

__all__ = ["FaceModel", "Components", "StepResult", "StepHooks", "autocast", "forward_loss", "train_step",
           "train_one_epoch", "evaluate"]


class FaceModel(nn.Module):
    """Backbone + head as one module, so that DDP averages the gradients of both."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        return self.head(self.backbone(images), labels)


@dataclass
class Components:
    """Everything a run trains with. `backbone`/`head` are the plain modules (state_dicts, evaluation);
    `model` is what the step calls: FaceModel (possibly DDP-wrapped), or the wrapped backbone under Partial-FC."""
    cfg: Any
    ctx: DistContext
    backbone: nn.Module
    head: nn.Module
    model: nn.Module
    partial_fc: bool
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    dataset: Any
    sampler: Any
    loader: torch.utils.data.DataLoader
    loader_generator: torch.Generator
    num_classes: int
    embedding_size: int
    per_rank_batch: int
    iters_per_epoch: int
    amp_dtype: torch.dtype | None  # None: full precision

    @property
    def total_iters(self) -> int:
        return self.iters_per_epoch * self.cfg.epochs

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all ranks and micro-batches."""
        return self.per_rank_batch * self.ctx.world_size * self.cfg.grad_accum_steps


@dataclass
class StepResult:
    loss: float  # mean over the step's micro-batches (this rank; Partial-FC: global batch)
    correct: int  # rows whose highest cosine is their own class
    count: int  # rows `correct` refers to
    bad_files: int  # corrupt images the dataset skipped for this step (this rank)
    finite: bool  # False: the step was skipped
    seconds: float


class StepHooks(Protocol):
    def after_step(self, state: TrainState, result: StepResult) -> None: ...


def autocast(comp: Components):
    """torch.amp autocast for the configured dtype, or a no-op in full precision."""
    if comp.amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=comp.ctx.device.type, dtype=comp.amp_dtype)


def forward_loss(comp: Components, images: torch.Tensor, labels: torch.Tensor):
    """(loss, correct, count) of one micro-batch; train accuracy from the margin-free cosine's argmax."""
    if comp.partial_fc:
        embeddings = comp.model(images)
        loss, correct = comp.head(embeddings, labels)
        return loss, correct, labels.numel() * comp.ctx.world_size
    out = comp.model(images, labels)
    loss = F.cross_entropy(out.logits, labels)
    correct = (out.cosine.argmax(dim=1) == labels).sum()
    return loss, correct, labels.numel()


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, corrupt files skipped); datasets without the third field count none."""
    images, labels = batch[0], batch[1]
    bad = int(batch[2].sum()) if len(batch) > 2 else 0
    return images, labels, bad


def _any_nonfinite(loss_sum: torch.Tensor, comp: Components) -> bool:
    flag = (~torch.isfinite(loss_sum)).float()
    if comp.ctx.distributed and not comp.partial_fc:  # every rank must skip together, or DDP deadlocks
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def train_step(comp: Components, state: TrainState, micro_batches: list) -> StepResult:
    """Forward/backward over the micro-batches, then one optimizer step unless the loss is not finite."""
    cfg, device = comp.cfg, comp.ctx.device
    t0 = time.perf_counter()
    comp.model.train()
    comp.head.train()
    comp.optimizer.zero_grad(set_to_none=True)
    accum = len(micro_batches)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = bad_files = 0
    for k, batch in enumerate(micro_batches):
        images, labels, bad = _unpack(batch)
        bad_files += bad
        images = images.to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True).long()
        last = k == accum - 1
        # DDP all-reduces on every backward; between micro-batches the gradients only need to accumulate locally
        sync = contextlib.nullcontext() if last or not hasattr(comp.model, "no_sync") else comp.model.no_sync()
        with sync:
            with autocast(comp):
                loss, corr, n = forward_loss(comp, images, labels)
            # each micro-batch loss is a mean over its rows: dividing by accum makes the sum the mean of the step
            comp.scaler.scale(loss / accum).backward()
        loss_sum += loss.detach().float()
        correct += corr.detach()
        count += n
    finite = not _any_nonfinite(loss_sum, comp)
    if finite:
        if cfg.grad_clip > 0:
            comp.scaler.unscale_(comp.optimizer)
            params = [p for g in comp.optimizer.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            if not comp.scaler.is_enabled() and not torch.isfinite(norm):
                finite = False  # fp16's scaler skips such steps by itself; in fp32/bf16 it is a bad step
        if finite:
            comp.scaler.step(comp.optimizer)
            comp.scaler.update()
    if not finite:
        comp.optimizer.zero_grad(set_to_none=True)
        state.skipped_steps += 1
        state.bad_in_row += 1
    else:
        state.bad_in_row = 0
    # the schedule follows the data: a skipped step still moves on, so a resumed run keeps the same LR
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*before.*optimizer.step", category=UserWarning)
        comp.scheduler.step()
    state.iteration += 1
    state.epoch_iteration += 1
    state.images += comp.global_batch
    seconds = time.perf_counter() - t0
    return StepResult(float(loss_sum) / accum, int(correct), count, bad_files, finite, seconds)


def train_one_epoch(comp: Components, state: TrainState, hooks: StepHooks, bar=None) -> str:
    """Run the rest of `state.epoch`. Returns "" at the epoch end, or why the run must stop:
    "max_iterations" (cfg.max_iterations reached) or "bad_steps" (cfg.max_bad_steps non-finite steps in a row)."""
    cfg = comp.cfg
    accum = cfg.grad_accum_steps
    comp.sampler.set_epoch(state.epoch, state.epoch_iteration * accum * comp.per_rank_batch)
    # worker seeds derive from this generator: reseeding per epoch keeps a resumed epoch's seeds unchanged
    comp.loader_generator.manual_seed(cfg.seed * 100_003 + state.epoch)
    batches = iter(comp.loader)
    while state.epoch_iteration < comp.iters_per_epoch:
        micro = [next(batches) for _ in range(accum)]
        result = train_step(comp, state, micro)
        if bar is not None:
            bar.update(1)
        hooks.after_step(state, result)
        if state.bad_in_row >= cfg.max_bad_steps:
            return "bad_steps"
        if cfg.max_iterations and state.iteration >= cfg.max_iterations:
            return "max_iterations"
    return ""


def evaluate(comp: Components, val_sets: list, verify_fn: Callable | None = None) -> dict[str, dict]:
    """Verification accuracy of the current backbone on each loaded set (main process only)."""
    if verify_fn is None:
        from Utils.evaluation import verify as verify_fn
    backbone = unwrap(comp.backbone)
    was_training = backbone.training
    backbone.eval()
    results = {}
    try:
        for vset in val_sets:
            results[vset.name] = verify_fn(backbone, vset, protocol=comp.cfg.eval_protocol,
                                           batch_size=comp.cfg.eval_batch_size, device=comp.ctx.device,
                                           amp_dtype=comp.amp_dtype)
    finally:
        backbone.train(was_training)
    return results
