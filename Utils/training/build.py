"""Everything a run trains with, built from a Config: data, sampler, loader, networks, wrappers, optimizer, LR
schedule and GradScaler (`build_components` -> `Components`)."""
from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from Backbones import build_backbone
from Heads import HeadOutput, build_head
from Heads.partial_fc import PartialFC, class_shard

from ..device import autocast_dtype, hide_cuda_probe_message
from .distributed import DistContext, convert_sync_bn, setup_distributed, wrap_backbone, wrap_module
from .grads import ShardedGradScaler
from .optim import build_optimizer, build_scheduler
from .sampler import ResumableSampler
from .signals import ignore_in_worker
from .state import seed_everything

__all__ = ["FaceModel", "Components", "build_components", "training_backbone", "make_loader"]


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
    sampler: ResumableSampler
    loader: torch.utils.data.DataLoader
    loader_generator: torch.Generator
    num_classes: int
    embedding_size: int
    per_rank_batch: int
    iters_per_epoch: int
    amp_dtype: torch.dtype | None  # None: full precision
    decode: Any = None  # gpu_decode: turns a loader batch of encoded images into the device batch; None: decoded

    @property
    def total_iters(self) -> int:
        return self.iters_per_epoch * self.cfg.epochs

    @property
    def global_batch(self) -> int:
        """Images per optimizer step over all ranks and micro-batches."""
        return self.per_rank_batch * self.ctx.world_size * self.cfg.grad_accum_steps


def _seed_worker(worker_id: int) -> None:
    # DataLoader seeds python's and torch's RNG per worker but not numpy's: every worker would draw the same numbers
    np.random.seed(torch.initial_seed() % (2 ** 32))
    ignore_in_worker()  # a stop signal is the main process's to honour (Utils/training/signals.py)


def _maybe_compile(backbone: nn.Module, device: torch.device) -> nn.Module:
    """torch.compile the backbone when the machine can: inductor builds C++ kernels on CPU and Triton ones on GPU.
    Without a compiler the run goes on eagerly with a warning instead of failing at its first step."""
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")) and not shutil.which("c++"):
        warnings.warn("compile: no C++ compiler found (inductor needs one on CPU); training eagerly", stacklevel=2)
        return backbone
    hide_cuda_probe_message()  # inductor imports torch.utils.cpp_extension, which logs it on CPU machines
    return torch.compile(backbone)


def training_backbone(backbone: nn.Module, cfg, ctx: DistContext, amp_dtype: torch.dtype | None) -> nn.Module:
    """The backbone the step calls: compiled when asked, DataParallel-wrapped over several GPUs.

    Not compiled under DataParallel: its replicas are built from the module's children and parameters, and the
    compiled wrapper forwards those writes to the original module, whose replicas then lose their layers
    ("'MobileFaceNet' object has no attribute 'blocks'")."""
    if cfg.compile and len(ctx.data_parallel_gpus) > 1:
        warnings.warn("compile: DataParallel cannot replicate a compiled backbone; training eagerly (use torchrun "
                      "for DDP, which compiles)", stacklevel=2)
    elif cfg.compile:
        backbone = _maybe_compile(backbone, ctx.device)
    return wrap_backbone(backbone, ctx, amp_dtype)


def make_loader(dataset, cfg, device: torch.device, batch_size: int, **kwargs) -> torch.utils.data.DataLoader:
    """A DataLoader feeding `device`: pinned host memory on CUDA (so that the step's non_blocking copies overlap the
    compute), workers kept alive across epochs and `prefetch_factor` batches queued per worker when there are
    workers. Other DataLoader arguments pass through."""
    workers = cfg.num_workers
    extra = dict(persistent_workers=cfg.persistent_workers, prefetch_factor=cfg.prefetch_factor) if workers else {}
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       pin_memory=device.type == "cuda", **extra, **kwargs)


def _decoding(dataset, cfg, device: torch.device):
    """(what the loader reads, the step's decode function or None, extra DataLoader arguments): with gpu_decode,
    .rec / folder (and synthetic, a folder) sets hand over encoded bytes and the step decodes them on its device
    (Datasets/device_decode.py)."""
    if not cfg.gpu_decode:
        return dataset, None, {}
    from Datasets.device_decode import EncodedTrainSet, collate_encoded, decode_batch
    from Datasets.train_sets import FaceTrainDataset

    if not isinstance(dataset, FaceTrainDataset):
        warnings.warn(f"gpu_decode: {type(dataset).__name__} holds no encoded images; decoding as usual",
                      stacklevel=3)
        return dataset, None, {}
    return EncodedTrainSet(dataset), partial(decode_batch, device=device, input_hw=cfg.input_hw,
                                             color_order=cfg.color_order), {"collate_fn": collate_encoded}


def build_components(cfg, dataset=None, ctx: DistContext | None = None) -> Components:
    """Dataset, sampler, loader, backbone, head, wrappers, optimizer, scheduler and scaler for `cfg`.

    `dataset` replaces Datasets.build_train_dataset(cfg) (any Dataset of (image, label[, n_bad]) with .num_classes).
    """
    ctx = ctx or setup_distributed(cfg)
    device = ctx.device
    amp_dtype = autocast_dtype(cfg.amp_dtype if cfg.use_amp else None, device, key="amp_dtype")
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size: {cfg.batch_size} is the global batch; it must divide evenly over "
                         f"{ctx.world_size} processes")
    seed_everything(cfg.seed)
    if dataset is None:
        from Datasets import build_train_dataset  # deferred: a run given its dataset never touches the readers

        dataset = build_train_dataset(cfg)
    num_classes = int(dataset.num_classes)

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

    train_backbone = training_backbone(backbone, cfg, ctx, amp_dtype)
    model = wrap_module(train_backbone if cfg.partial_fc else FaceModel(train_backbone, head), ctx)

    per_rank_batch = cfg.batch_size // ctx.world_size
    sampler = ResumableSampler(len(dataset), seed=cfg.seed, rank=ctx.rank, world_size=ctx.world_size)
    iters_per_epoch = sampler.per_rank // per_rank_batch // cfg.grad_accum_steps
    if iters_per_epoch < 1:
        raise ValueError(f"batch_size: {cfg.batch_size} x grad_accum_steps {cfg.grad_accum_steps} exceeds the "
                         f"{len(dataset)} training images")
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch)
    scaler = ShardedGradScaler(device.type, enabled=amp_dtype == torch.float16)
    generator = torch.Generator()
    loader_set, decode, extra = _decoding(dataset, cfg, device)
    loader = make_loader(loader_set, cfg, device, per_rank_batch, sampler=sampler, drop_last=True,
                         generator=generator, worker_init_fn=_seed_worker, **extra)
    if ctx.distributed:
        torch.manual_seed(cfg.seed + 1000 * ctx.rank)  # different dropout masks / flips on each rank
    return Components(cfg, ctx, backbone, head, model, cfg.partial_fc, optimizer, scheduler, scaler, dataset,
                      sampler, loader, generator, num_classes, embedding_size, per_rank_batch, iters_per_epoch,
                      amp_dtype, decode)
