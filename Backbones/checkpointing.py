"""Activation checkpointing per block (torch.utils.checkpoint, non-reentrant): a block's activations are dropped
after its forward and recomputed in the backward pass, trading ~one extra forward for memory.

The recomputation must not count as a second training step for BatchNorm: it would apply the running-statistics
update twice. During recomputation every BatchNorm of the block runs with momentum 0 (statistics unchanged) and its
batch counter is restored, so a checkpointed step leaves the same buffers as a plain one. Dropout and the other
random ops draw the same numbers again (checkpoint's preserve_rng_state).
"""
from __future__ import annotations

import contextlib
from typing import Iterable

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

__all__ = ["run_blocks"]


@contextlib.contextmanager
def _frozen_batchnorm_stats(block: nn.Module):
    bns = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def run_blocks(blocks: Iterable[nn.Module], x: torch.Tensor, enabled: bool) -> torch.Tensor:
    """x through `blocks` in order, each checkpointed when `enabled` and gradients are being recorded."""
    use = enabled and torch.is_grad_enabled()
    compiling = torch.compiler.is_compiling()
    for block in blocks:
        if use and compiling:
            # under torch.compile the recomputation is part of the traced graph, where the statistics update is a
            # functional output of the forward alone, so it is not repeated (tested); a context_fn is not traceable
            x = checkpoint(block, x, use_reentrant=False)
        elif use:
            x = checkpoint(block, x, use_reentrant=False,
                           context_fn=lambda b=block: (contextlib.nullcontext(), _frozen_batchnorm_stats(b)))
        else:
            x = block(x)
    return x
