"""Gradient clipping and overflow checks that every rank decides alike, also when the head is sharded.

Under plain DDP every rank holds the same all-reduced gradients, so a norm or an inf check computed locally agrees
everywhere. Under Partial-FC each rank holds, besides the shared backbone gradient, the gradient of its own
class-centre shard only: a local clip norm would scale the shared backbone gradient by a different factor on each
rank (the replicas drift apart), and a local inf check lets one rank skip a step alone. Here the shard part is
all-reduced: the norm is sqrt(backbone squared norm + sum over ranks of the shard squared norms), and the
GradScaler's inf flags are all-reduced with MAX.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["sharded", "ShardedGradScaler", "global_grad_norm", "clip_to_norm_"]


def sharded() -> bool:
    """Whether this process is one of several ranks (the only case where local decisions can disagree)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class ShardedGradScaler(torch.amp.GradScaler):
    """torch's GradScaler whose found-inf flags are the MAX over ranks, so every rank skips the same fp16 step and
    updates its scale alike (a shard's overflow is seen by the ranks that do not hold it)."""

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        super().unscale_(optimizer)
        if self.is_enabled() and sharded():
            for found_inf in self._per_optimizer_states[id(optimizer)]["found_inf_per_device"].values():
                dist.all_reduce(found_inf, op=dist.ReduceOp.MAX)


def _grads(params) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


def global_grad_norm(shared_params, shard_params=(), distributed_shard: bool = False) -> torch.Tensor:
    """L2 norm of all gradients as one vector (a 0-d float32 tensor on the gradients' device, no host read).

    `shared_params` hold the same gradient on every rank (the DDP-averaged backbone); `shard_params` this rank's
    part of a sharded parameter, summed over ranks when `distributed_shard`."""
    shared, shard = _grads(shared_params), _grads(shard_params)
    if not shared and not shard:
        return torch.zeros(())
    if not distributed_shard:
        return torch.nn.utils.get_total_norm(shared + shard)
    device = (shared or shard)[0].device
    sq_shard = torch.nn.utils.get_total_norm(shard).float() ** 2 if shard else torch.zeros((), device=device)
    dist.all_reduce(sq_shard)
    sq_shared = torch.nn.utils.get_total_norm(shared).float() ** 2 if shared else torch.zeros((), device=device)
    return (sq_shared + sq_shard).sqrt()


def clip_to_norm_(params, max_norm: float, total_norm: torch.Tensor) -> None:
    """Scale the gradients by min(1, max_norm / (total_norm + 1e-6)), as clip_grad_norm_ does, without a host
    read (a non-finite norm makes the gradients non-finite; the step is then skipped)."""
    params = [p for p in params if p.grad is not None]
    if params:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total_norm)
