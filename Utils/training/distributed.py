"""Where the run executes: one device, DataParallel over several GPUs, or DistributedDataParallel under torchrun.

`torchrun --nproc_per_node=N Train.py ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `setup_distributed` reads them and
joins the process group (nccl on GPU, gloo on CPU). Without them the run is a single process, optionally with
DataParallel (`use_multi_gpus`, the original project's option). Only rank 0 logs, plots and saves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
import torch.nn as nn

from ..device import prepare_device, resolve_device

__all__ = ["DistContext", "setup_distributed", "cleanup_distributed", "barrier",
           "all_reduce_sum", "broadcast_object", "AutocastModule", "wrap_backbone", "wrap_module", "unwrap",
           "convert_sync_bn", "AllReduceBatchNorm"]


@dataclass
class DistContext:
    """The process's place in the run."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    data_parallel_gpus: tuple[int, ...] = ()  # DataParallel device ids (single process, several GPUs)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(cfg) -> DistContext:
    """Join the torchrun process group if this process was started by torchrun; pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1:
        rank = int(os.environ["RANK"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = resolve_device(cfg.device, local_rank)
        if cfg.use_multi_gpus:
            raise ValueError("use_multi_gpus: DataParallel cannot be combined with torchrun (DDP already uses "
                             "one process per GPU); drop --use_multi_gpus")
        prepare_device(device)
        backend = cfg.dist_backend
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ValueError("dist_backend: nccl needs CUDA devices; use gloo on CPU")
        if not dist.is_initialized():
            kwargs = {"device_id": device} if backend == "nccl" else {}
            # a long timeout: rank 0 evaluates and saves while the others wait at a barrier
            dist.init_process_group(backend=backend, timeout=timedelta(minutes=60), **kwargs)
        return DistContext(rank, world_size, local_rank, device)
    device = resolve_device(cfg.device)
    gpus: tuple[int, ...] = ()
    if cfg.use_multi_gpus:
        if device.type != "cuda":
            raise ValueError("use_multi_gpus: DataParallel needs CUDA GPUs (set --device=cuda or drop the flag)")
        available = torch.cuda.device_count()
        bad = [g for g in cfg.gpus if g < 0 or g >= available]
        if bad or not cfg.gpus:
            raise ValueError(f"gpus: {cfg.gpus} is not a list of GPU ids in 0..{available - 1}")
        gpus = tuple(cfg.gpus)
        device = torch.device("cuda", gpus[0])  # DataParallel gathers outputs on the first listed GPU
    prepare_device(device)
    return DistContext(0, 1, 0, device, gpus)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few Python numbers over ranks (logging counters); a no-op in a single process."""
    if not ctx.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, ctx: DistContext):
    """Rank 0's value of `obj` on every rank (e.g. a flag that the run must stop)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class AutocastModule(nn.Module):
    """Runs `module` under autocast with the configured dtype, whichever thread calls it.

    DataParallel's replica threads re-enter autocast with `enabled` only, and autocast's dtype is per thread with
    float16 as CUDA's default: a bf16 run would train its replicas in fp16 without the GradScaler (which is on for
    float16 runs only). Opening autocast inside the replica's forward keeps the run's dtype."""

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype):
        super().__init__()
        self.module = module
        self.device_type, self.dtype = device_type, dtype

    def forward(self, *args, **kwargs):
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return self.module(*args, **kwargs)


def wrap_backbone(backbone: nn.Module, ctx: DistContext, amp_dtype: torch.dtype | None = None) -> nn.Module:
    """DataParallel when several GPUs in one process, each replica under autocast with `amp_dtype` (None: full
    precision); the margin head stays on the first GPU (as in the original project)."""
    if ctx.data_parallel_gpus and len(ctx.data_parallel_gpus) > 1:
        if amp_dtype is not None:
            backbone = AutocastModule(backbone, ctx.device.type, amp_dtype)
        return nn.DataParallel(backbone, device_ids=list(ctx.data_parallel_gpus))
    return backbone


def wrap_module(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DistributedDataParallel under torchrun (gradients averaged over ranks), else the module itself."""
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DataParallel / DDP / torch.compile wrappers (for state_dicts and evaluation)."""
    while True:
        if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel, AutocastModule)):
            module = module.module
        elif hasattr(module, "_orig_mod"):  # torch.compile's OptimizedModule
            module = module._orig_mod
        else:
            return module


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the global batch of all ranks, on any device.

    torch's SyncBatchNorm runs on GPUs only. Here the per-channel sums and sums of squares are all-reduced with an
    autograd-aware collective, so the backward pass sums the statistic gradients over ranks exactly as
    SyncBatchNorm does; parameter and buffer names are those of BatchNorm (checkpoints stay interchangeable).
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        xf = x.float()  # sums of squares in the input dtype would lose the variance under bf16
        count = torch.tensor([x.numel() / c], dtype=torch.float32, device=x.device)
        stats = dist_fn.all_reduce(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1).clamp_min(1.0))
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> SyncBatchNorm on GPU, -> AllReduceBatchNorm elsewhere (gloo on CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, AllReduceBatchNorm):
        out = AllReduceBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        out.load_state_dict(module.state_dict())
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, convert_sync_bn(child, device))
    return out
