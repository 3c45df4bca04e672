"""Train a face-recognition model: backbone + margin head, evaluated on verification sets while it trains.

    python Train.py                                           # defaults: MobileFaceNet + ArcFace on the synthetic set
    python Train.py --backbone=ResNet50_IR --head=CosFace --lr=0.05 --use_amp=true
    python Train.py --preset=casia --train_root=/data/faces_webface_112x112 --val_sets=/data/lfw.bin
    python Train.py --resume=runs/MobileFaceNet_ArcFace_20240101-120000      # continue, mid-epoch if need be
    torchrun --nproc_per_node=8 Train.py --partial_fc=true --partial_fc_sample_rate=0.2 ...

Every setting is a field of Config/config.py, overridable as --key=value. A run writes its directory under
output_dir (config.json, train.log, history.jsonl, curves.png, last.pt, best.pt) unless para_adj_mode is on.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from Config import ConfigError, help_text, parse_config
from Utils.distributed import (DistContext, broadcast_object, cleanup_distributed, convert_sync_bn,
                               setup_distributed, wrap_backbone, wrap_module)
from Utils.optim import build_optimizer, build_scheduler
from Utils.partial_fc import PartialFC, class_shard
from Utils.run_dir import make_run_dir, run_dir_of_checkpoint, save_config
from Utils.sampler import ResumableSampler
from Utils.train_log import RunLogger
from Utils.train_run import TrainRun, load_sidecar
from Utils.train_state import TrainState, config_differences, restore_checkpoint, seed_everything
from Utils.trainer import Components, FaceModel, train_one_epoch

__all__ = ["build_components", "setup", "run", "train", "main", "RunResult"]


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds python's and torch's RNG per worker but not numpy's: every worker would draw the same numbers
    import numpy as np

    np.random.seed(torch.initial_seed() % (2 ** 32))


def _fast_low_precision(device: torch.device) -> torch.dtype | None:
    """The autocast dtype that is fast on `device`: bf16 where the hardware has it (Ampere+ GPUs; CPUs with
    AVX512-BF16 or AMX, where oneDNN runs bf16 convolutions natively), fp16 on older GPUs, none on other CPUs
    (emulated bf16 would be slower than float32)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def _amp_dtype(cfg, device: torch.device) -> torch.dtype | None:
    if not cfg.use_amp:
        return None
    if cfg.amp_dtype == "auto":
        return _fast_low_precision(device)
    if cfg.amp_dtype == "float16" and device.type != "cuda":
        raise ConfigError("amp_dtype: float16 autocast needs CUDA (GradScaler); use --amp_dtype=bfloat16 on CPU")
    if cfg.amp_dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("amp_dtype: this GPU has no bfloat16; use --amp_dtype=float16")
    return torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16


def _maybe_compile(backbone: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """torch.compile the backbone when the machine can: inductor builds C++ kernels on CPU and Triton ones on GPU.
    Without a compiler the run goes on eagerly with a warning instead of failing at its first step."""
    import shutil
    import warnings

    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")) and not shutil.which("c++"):
        warnings.warn("compile: no C++ compiler found (inductor needs one on CPU); training eagerly", stacklevel=2)
        return backbone
    return torch.compile(backbone)


def build_components(cfg, dataset=None, ctx: DistContext | None = None) -> Components:
    """Dataset, sampler, loader, backbone, head, wrappers, optimizer, scheduler and scaler for `cfg`.

    `dataset` replaces Datasets.build_train_dataset(cfg) (any Dataset of (image, label[, n_bad]) with .num_classes).
    """
    ctx = ctx or setup_distributed(cfg)
    device = ctx.device
    amp_dtype = _amp_dtype(cfg, device)
    if cfg.batch_size % ctx.world_size:
        raise ConfigError(f"batch_size: {cfg.batch_size} is the global batch; it must divide evenly over "
                          f"{ctx.world_size} processes")
    seed_everything(cfg.seed)
    if dataset is None:
        from Datasets import build_train_dataset

        dataset = build_train_dataset(cfg)
    num_classes = int(dataset.num_classes)

    from Backbones import build_backbone
    from Heads import build_head

    backbone = build_backbone(cfg)
    embedding_size = int(backbone.embedding_size)
    if cfg.sync_bn and ctx.distributed:
        backbone = convert_sync_bn(backbone, device)
    backbone = backbone.to(device)
    if cfg.channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    if cfg.partial_fc:
        start, end = class_shard(num_classes, ctx.rank, ctx.world_size)
        head = PartialFC(build_head(cfg, embedding_size, end - start), num_classes, cfg.partial_fc_sample_rate,
                         ctx.rank, ctx.world_size)
        head.init_centres(cfg.seed)
    else:
        head = build_head(cfg, embedding_size, num_classes)
    head = head.to(device)
    optimizer = build_optimizer(cfg, [backbone, head])

    train_backbone = _maybe_compile(backbone, device) if cfg.compile else backbone
    train_backbone = wrap_backbone(train_backbone, ctx)
    model = wrap_module(train_backbone if cfg.partial_fc else FaceModel(train_backbone, head), ctx)

    per_rank_batch = cfg.batch_size // ctx.world_size
    sampler = ResumableSampler(len(dataset), seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    iters_per_epoch = sampler.per_rank // per_rank_batch // cfg.grad_accum_steps
    if iters_per_epoch < 1:
        raise ConfigError(f"batch_size: {cfg.batch_size} x grad_accum_steps {cfg.grad_accum_steps} exceeds the "
                          f"{len(dataset)} training images")
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    generator = torch.Generator()
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=per_rank_batch, sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
        pin_memory=device.type == "cuda", generator=generator, worker_init_fn=_seed_worker,
        persistent_workers=False)
    if ctx.distributed:
        torch.manual_seed(cfg.seed + 1000 * ctx.rank)  # different dropout masks / flips on each rank
    return Components(cfg, ctx, backbone, head, model, cfg.partial_fc, optimizer, scheduler, scaler, dataset,
                      sampler, loader, generator, num_classes, embedding_size, per_rank_batch, iters_per_epoch,
                      amp_dtype)


@dataclass
class RunResult:
    state: TrainState
    components: Components
    run_dir: Path | None
    stop_reason: str  # "" (all epochs done), "max_iterations", "bad_steps"
    summary: str
    history: list


def _load_val_sets(cfg, ctx: DistContext) -> list:
    if not ctx.is_main or not cfg.val_sets:
        return []
    from Datasets import load_verification_set

    return [load_verification_set(spec, cfg) for spec in cfg.val_sets]


def _default_verify(model, vset, **kw):
    from Utils.evaluation import verify

    return verify(model, vset, **kw)  # with its own progress bar: a large set takes minutes on CPU


def setup(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> TrainRun:
    """Everything before the first step: components, run directory, resume, verification sets, visdom."""
    comp = build_components(cfg, dataset, ctx)
    ctx = comp.ctx
    run_dir = None
    if not cfg.para_adj_mode:
        if ctx.is_main:
            run_dir = run_dir_of_checkpoint(cfg.resume) if cfg.resume else make_run_dir(cfg)
        run_dir = Path(broadcast_object(str(run_dir) if run_dir else "", ctx) or ".")
    logger = RunLogger(run_dir / "train.log" if run_dir else None, enabled=ctx.is_main)
    state = TrainState()
    if cfg.resume:
        from Utils.checkpoint import load_checkpoint

        ckpt = load_checkpoint(cfg.resume)
        sidecar = load_sidecar(run_dir_of_checkpoint(cfg.resume), ctx.rank) if ctx.rank > 0 else None
        if ctx.rank > 0 and cfg.partial_fc and sidecar is None:
            raise ValueError(f"resume: {run_dir_of_checkpoint(cfg.resume)} has no last.rank{ctx.rank}.pt "
                             f"(this rank's Partial-FC shard)")
        state = restore_checkpoint(comp, ckpt, sidecar)
        logger.info(f"resumed from {cfg.resume}: epoch {state.epoch + 1}, iteration {state.iteration}")
        for diff in config_differences(ckpt.get("config", {}), cfg):
            logger.warn(f"setting changed since the checkpoint: {diff}")
    elif run_dir is not None and ctx.is_main:
        save_config(cfg, run_dir)
    if val_sets is None:
        val_sets = _load_val_sets(cfg, ctx)
    visdom = None
    if cfg.use_visdom and ctx.is_main:
        from Utils.visdom_logger import VisdomLogger

        env = (run_dir.name if run_dir else f"{cfg.backbone}_{cfg.head}_para_adj").replace("-", "_")
        visdom = VisdomLogger(cfg.visdom_server, cfg.visdom_port, env, cfg.visdom_timeout, warn=logger.warn)
    return TrainRun(comp, state, run_dir, logger, val_sets, verify_fn or _default_verify, visdom)


def _describe(tr: TrainRun) -> str:
    comp, cfg = tr.comp, tr.cfg
    precision = f"autocast {str(comp.amp_dtype).replace('torch.', '')}" if comp.amp_dtype is not None else "float32"
    where = f"{comp.ctx.device}"
    if comp.ctx.distributed:
        where += f" x {comp.ctx.world_size} processes (DDP)"
    elif comp.ctx.data_parallel_gpus and len(comp.ctx.data_parallel_gpus) > 1:
        where += f" DataParallel over GPUs {list(comp.ctx.data_parallel_gpus)}"
    head = f"{cfg.head}" + (f" (Partial-FC, sample rate {cfg.partial_fc_sample_rate:g})" if comp.partial_fc else "")
    return (f"{cfg.backbone} ({comp.embedding_size}-d) + {head}: {len(comp.dataset)} images, {comp.num_classes} "
            f"classes | {where}, {precision} | batch {comp.global_batch}, {comp.iters_per_epoch} iterations/epoch, "
            f"{comp.total_iters} in all | run dir: {tr.run_dir or '(para_adj_mode: nothing written)'}")


def run(tr: TrainRun) -> RunResult:
    """The epochs, then the summary table and the curves PNG."""
    from tqdm import tqdm

    comp, cfg, state = tr.comp, tr.cfg, tr.state
    tr.logger.info(_describe(tr))
    stop = ""
    with tqdm(total=comp.total_iters, initial=state.iteration, disable=not comp.ctx.is_main, dynamic_ncols=True,
              unit="it", desc="train") as bar:
        tr.bar = bar
        if cfg.eval_at_start and state.iteration == 0:
            tr.run_evaluation(state)
        tr.start_clock()
        while state.epoch < cfg.epochs:
            bar.set_description(f"epoch {state.epoch + 1}/{cfg.epochs}")
            stop = train_one_epoch(comp, state, tr, bar)
            if stop:
                break
            state.epoch += 1
            state.epoch_iteration = 0
            tr.epoch_end(state)
        tr.bar = None
    if stop:
        tr.flush(state)
        path = tr.save_last(state)
        saved = f"; saved {path}" if path else ""
        if stop == "bad_steps":
            tr.logger.info(f"error: {cfg.max_bad_steps} non-finite losses in a row at iteration {state.iteration} "
                           f"(lr {comp.optimizer.param_groups[0]['lr']:.3e}){saved}. Lower --lr, set --grad_clip, "
                           f"or use bfloat16 instead of float16; then --resume")
        else:
            tr.logger.info(f"stopped at max_iterations={cfg.max_iterations}{saved}"
                           + (f"; continue with --resume={path}" if path else ""))
    status = {"": "finished", "max_iterations": "stopped (max_iterations)",
              "bad_steps": "stopped (non-finite losses)"}[stop]
    summary = tr.summary(state, status) if comp.ctx.is_main else ""
    tr.logger.info(summary)
    png = tr.plot()
    if png is not None:
        tr.logger.info(f"curves: {png}")
    if tr.visdom is not None:
        tr.visdom.close()
    return RunResult(state, comp, tr.run_dir, stop, summary, tr.history)


def train(cfg, dataset=None, val_sets: list | None = None, verify_fn: Callable | None = None,
          ctx: DistContext | None = None) -> RunResult:
    """setup + run; the entry point for tests and notebooks (inject a dataset, loaded sets, a verify function)."""
    return run(setup(cfg, dataset, val_sets, verify_fn, ctx))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip() + "\n\n" + help_text())
        return 0
    try:
        cfg, _ = parse_config(argv)
        tr = setup(cfg)
    except (ConfigError, ValueError, FileNotFoundError) as exc:  # bad settings or data: one line, exit code 2
        print(f"error: {exc}", file=sys.stderr)
        cleanup_distributed()
        return 2
    try:
        result = run(tr)
    except KeyboardInterrupt:
        print(f"\ninterrupted; the last checkpoint is in {tr.run_dir}" if tr.run_dir else "\ninterrupted",
              file=sys.stderr)
        return 130
    finally:
        cleanup_distributed()
    return 1 if result.stop_reason == "bad_steps" else 0


if __name__ == "__main__":
    sys.exit(main())
