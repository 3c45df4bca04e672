"""The training loop, top to bottom: epochs, steps, the counters, when to log / evaluate / save, and why it stops.

    run(session) -> RunResult
        evaluate the untrained network (eval_at_start)
        for each epoch:  for each step:  train_step -> counters -> log / eval / save on their cadence -> stop?
                         at the epoch end: evaluate (eval_every = 0, or the last epoch) and save last.pt
        on a stop (max_iterations, non-finite losses, SIGTERM/SIGINT between steps): save a resumable last.pt and
        say how to continue; then the summary and the curves

This file owns every counter of `TrainState` that moves with the steps and every cadence decision; what logging,
evaluating and saving *do* is the session's policy (Utils/training/policy.py), called from here.
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from Heads.base import check_labels

from ..device import autocast
from .build import Components
from .signals import StopSignals
from .grads import clip_to_norm_, global_grad_norm
from .state import TrainState
from .watch import watch_lines

__all__ = ["StopReason", "StepResult", "RunResult", "forward_loss", "train_step", "run"]


class StopReason(Enum):
    """Why the loop ended; the value is the status the summary prints."""
    FINISHED = "finished"  # every epoch done
    MAX_ITERATIONS = "stopped (max_iterations)"
    BAD_STEPS = "stopped (non-finite losses)"
    INTERRUPTED = "interrupted (signal; resumable)"  # SIGTERM / SIGINT: the step finished, last.pt saved


@dataclass
class StepResult:
    loss: float  # mean over the step's micro-batches (this rank; Partial-FC: global batch)
    correct: int  # rows whose highest cosine is their own class
    count: int  # rows `correct` refers to
    bad_files: int  # corrupt images the dataset skipped for this step (this rank)
    finite: bool  # False: the step was skipped
    seconds: float


@dataclass
class RunResult:
    state: TrainState
    components: Components
    run_dir: Path | None
    stop_reason: StopReason
    summary: str
    history: list


def forward_loss(comp: Components, images: torch.Tensor, labels: torch.Tensor):
    """(loss, correct, count) of one micro-batch; train accuracy from the margin-free cosine's argmax."""
    if comp.partial_fc:
        embeddings = comp.model(images)
        loss, correct = comp.head(embeddings, labels)
        return loss, correct, labels.numel() * comp.ctx.world_size
    out = comp.model(images, labels)
    loss = F.cross_entropy(out.logits, labels)
    if out.regulariser is not None:  # MagFace's g(a)
        loss = loss + out.regulariser
    correct = (out.cosine.argmax(dim=1) == labels).sum()
    return loss, correct, labels.numel()


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(images, labels, corrupt files skipped); datasets without the third field count none. The count is read
    on the CPU batch (numpy: a view, not a device transfer)."""
    images, labels = batch[0], batch[1]
    if len(batch) < 3:
        return images, labels, 0
    counts = torch.as_tensor(batch[2])
    return images, labels, int(counts.numpy().sum() if counts.device.type == "cpu" else counts.sum())


def _clip(comp: Components) -> torch.Tensor:
    """Clip to cfg.grad_clip by the norm of all gradients; under Partial-FC on several ranks the class-centre
    shards' part is summed over ranks, so every rank scales its shared backbone gradient alike (grads.py)."""
    comp.scaler.unscale_(comp.optimizer)  # the sharded scaler's inf flags are the MAX over ranks
    shard = comp.partial_fc and comp.ctx.distributed
    head_params = list(comp.head.parameters())
    norm = global_grad_norm(comp.backbone.parameters() if shard else
                            [p for g in comp.optimizer.param_groups for p in g["params"]],
                            head_params if shard else (), distributed_shard=shard)
    clip_to_norm_([p for g in comp.optimizer.param_groups for p in g["params"]], comp.cfg.grad_clip, norm)
    return norm


def train_step(comp: Components, micro_batches: list) -> StepResult:
    """Forward/backward over the micro-batches, then one optimizer step unless the loss is not finite; the LR
    schedule steps either way (it follows the data, so a resumed run keeps the same LR).

    One device-to-host read per step (loss, correct and the finite flag together; fp16's GradScaler reads its inf
    flag once more): labels are checked on the CPU batch before it is moved, and every flag that decides the step is
    reduced over the ranks before that read, so all ranks take the same decision."""
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
        if comp.decode is not None:  # gpu_decode: the batch holds encoded images
            images = comp.decode(batch)
        bad_files += bad
        labels = labels.long()
        check_labels(labels, comp.num_classes)  # here, on the host: in the head it would sync the GPU
        images = images.to(device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        last = k == accum - 1
        # DDP all-reduces on every backward; between micro-batches the gradients only need to accumulate locally
        sync = contextlib.nullcontext() if last or not hasattr(comp.model, "no_sync") else comp.model.no_sync()
        with sync:
            with autocast(device, comp.amp_dtype):
                loss, corr, n = forward_loss(comp, images, labels)
            # each micro-batch loss is a mean over its rows: dividing by accum makes the sum the mean of the step
            comp.scaler.scale(loss / accum).backward()
        loss_sum += loss.detach().float()
        correct += corr.detach()
        count += n
    bad_flag = (~torch.isfinite(loss_sum)).float()
    if comp.ctx.distributed and not comp.partial_fc:  # every rank must skip together, or DDP deadlocks
        dist.all_reduce(bad_flag, op=dist.ReduceOp.MAX)  # (under Partial-FC the loss is the global one already)
    if cfg.grad_clip > 0:
        norm = _clip(comp)
        if not comp.scaler.is_enabled():  # fp16's scaler skips such steps by itself; in fp32/bf16 it is a bad step
            bad_flag = torch.maximum(bad_flag, (~torch.isfinite(norm)).float())
    loss_value, correct_value, bad_value = torch.stack(
        [loss_sum.double(), correct.double(), bad_flag.double()]).tolist()  # the step's one host read
    finite = not bad_value
    if finite:
        comp.scaler.step(comp.optimizer)
        comp.scaler.update()
    else:
        if cfg.grad_clip > 0:
            comp.scaler.update()  # closes the unscale_ above (fp16: lowers the scale on an overflow)
        comp.optimizer.zero_grad(set_to_none=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*before.*optimizer.step", category=UserWarning)
        comp.scheduler.step()
    seconds = time.perf_counter() - t0
    return StepResult(loss_value / accum, int(correct_value), count, bad_files, finite, seconds)


def _count(state: TrainState, comp: Components, result: StepResult) -> None:
    """Move the counters past one optimizer step."""
    if result.finite:
        state.bad_in_row = 0
    else:
        state.skipped_steps += 1
        state.bad_in_row += 1
    state.iteration += 1
    state.epoch_iteration += 1
    state.images += comp.global_batch


def _after_step(session, state: TrainState) -> StopReason | None:
    """The per-step cadence: log every log_every steps (and at the last), evaluate every eval_every, save every
    save_every; then whether the run must stop."""
    cfg, policy, it = session.cfg, session.policy, state.iteration
    if it % policy.log_every == 0 or it == session.comp.total_iters:
        policy.flush(state)
    if cfg.eval_every and it % cfg.eval_every == 0:
        policy.flush(state)
        policy.evaluate(state)
    if cfg.save_every and it % cfg.save_every == 0:
        policy.flush(state)
        policy.save_last(state)
    if state.bad_in_row >= cfg.max_bad_steps:
        return StopReason.BAD_STEPS
    if cfg.max_iterations and it >= cfg.max_iterations:
        return StopReason.MAX_ITERATIONS
    return None


def _run_epoch(session, state: TrainState, bar, signals: StopSignals) -> StopReason | None:
    """The rest of `state.epoch`; a StopReason when the run must end inside it."""
    comp, cfg = session.comp, session.cfg
    accum = cfg.grad_accum_steps
    comp.sampler.set_epoch(state.epoch, state.epoch_iteration * accum * comp.per_rank_batch)
    # worker seeds derive from this generator: reseeding per epoch keeps a resumed epoch's seeds unchanged
    comp.loader_generator.manual_seed(cfg.seed * 100_003 + state.epoch)
    batches = iter(comp.loader)
    while state.epoch_iteration < comp.iters_per_epoch:
        result = train_step(comp, [next(batches) for _ in range(accum)])
        _count(state, comp, result)
        bar.update(1)
        if session.policy.compiling:  # the first step has compiled the backbone: the bar is an epoch bar again
            session.policy.compiling = False
            bar.set_description(f"epoch {state.epoch + 1}/{cfg.epochs}")
        session.policy.record(state, result)
        stop = _after_step(session, state)
        if stop is not None:
            return stop
        if signals.requested(comp.ctx):  # checked between steps: a checkpoint taken here resumes exactly
            return StopReason.INTERRUPTED
    return None


def _epoch_end(session, state: TrainState) -> None:
    """Evaluate (every epoch when eval_every is 0, else after the last one unless a step just did) and save."""
    cfg, policy = session.cfg, session.policy
    policy.flush(state)
    just_evaluated = bool(cfg.eval_every) and state.iteration % cfg.eval_every == 0
    if (not cfg.eval_every or state.epoch == cfg.epochs) and not just_evaluated:
        policy.evaluate(state)
    policy.save_last(state)


def _on_stop(session, state: TrainState, stop: StopReason, signal_name: str = "") -> None:
    """A run stopped early keeps a resumable checkpoint and says how to go on."""
    cfg, policy = session.cfg, session.policy
    policy.flush(state)
    path = policy.save_last(state)
    saved = f"; saved {path}" if path else ""
    if stop is StopReason.BAD_STEPS:
        policy.logger.info(f"error: {cfg.max_bad_steps} non-finite losses in a row at iteration {state.iteration} "
                           f"(lr {session.comp.optimizer.param_groups[0]['lr']:.3e}){saved}. Lower --lr, set "
                           f"--grad_clip, or use bfloat16 instead of float16; then --resume")
    elif stop is StopReason.INTERRUPTED:
        policy.logger.info(f"{signal_name or 'signal'} received: stopped after iteration {state.iteration}{saved}"
                           + (f"; continue with --resume={path}" if path else " (write_nothing: nothing saved)"))
    else:
        policy.logger.info(f"stopped at max_iterations={cfg.max_iterations}{saved}"
                           + (f"; continue with --resume={path}" if path else ""))


_COMPILING = "compiling the backbone (torch.compile), ~1-2 min on CPU"


def _is_compiled(model) -> bool:
    return any(type(m).__name__ == "OptimizedModule" for m in model.modules())


def run(session) -> RunResult:
    """Train `session` (Utils.training.session.setup) to its end or its stop; then summary, curves, sinks closed."""
    comp, cfg, state, policy = session.comp, session.cfg, session.state, session.policy
    policy.logger.info(policy.describe())
    for line in watch_lines(cfg, policy.run_dir, policy.run_name):
        policy.logger.info(line)
    if policy.log_every != cfg.log_every:
        policy.logger.info(f"log_every {cfg.log_every} >= the run's {comp.total_iters} iterations: logging every "
                           f"{policy.log_every}")
    stop = None
    with StopSignals() as signals, tqdm(total=comp.total_iters, initial=state.iteration,
                                        disable=not comp.ctx.is_main, dynamic_ncols=True, unit="it",
                                        desc="train") as bar:
        policy.bar = bar
        if cfg.eval_at_start and state.iteration == 0:
            policy.evaluate(state)
        policy.compiling = _is_compiled(comp.model) and comp.ctx.is_main
        if policy.compiling:
            policy.logger.info(f"{_COMPILING}: the first step builds the kernels, then the bar moves (a rerun with "
                               f"the same shapes reuses them)")
        policy.start_clock()
        while state.epoch < cfg.epochs:
            bar.set_description(f"epoch {state.epoch + 1}/{cfg.epochs}")
            if policy.compiling:
                bar.set_description(_COMPILING)
            stop = _run_epoch(session, state, bar, signals)
            if stop is not None:
                break
            state.epoch += 1
            state.epoch_iteration = 0
            _epoch_end(session, state)
        policy.bar = None
        if stop is not None:  # still inside StopSignals: a signal during the save must not cut it short
            _on_stop(session, state, stop, signals.name)
    stop = stop or StopReason.FINISHED
    summary = policy.finish(state, stop.value)
    return RunResult(state, comp, policy.run_dir, stop, summary, policy.history)
