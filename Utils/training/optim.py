"""Optimizer and per-iteration learning-rate schedule.

Weight decay pulls weights towards zero; on BatchNorm/PReLU parameters and biases it only shrinks scales and
offsets the network needs (the "bag of tricks" finding, insightface's practice), so those get none. The schedule is
a factor of the peak LR stepped every iteration: a linear warmup, then multi-step (the original project's recipes,
milestones in epochs), cosine or polynomial decay.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn as nn

__all__ = ["param_groups", "build_optimizer", "LRFactor", "build_scheduler"]

_NO_DECAY_TYPES = (nn.modules.batchnorm._BatchNorm, nn.PReLU, nn.LayerNorm, nn.GroupNorm)


def param_groups(modules: Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights and class centres with `weight_decay`; norm/PReLU params and biases without."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for sub in module.modules():
            for name, p in sub.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                if isinstance(sub, _NO_DECAY_TYPES) or name == "bias" or p.ndim <= 1:
                    no_decay.append(p)
                else:
                    decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(cfg, modules: Iterable[nn.Module]) -> torch.optim.Optimizer:
    groups = param_groups(modules, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ValueError(f"optimizer: '{cfg.optimizer}' is not one of: sgd, adamw")


class LRFactor:
    """Multiplier of the peak LR at iteration `step` (0-based, counted in optimizer steps).

    Args:
        kind: "multistep" | "cosine" | "poly".
        iters_per_epoch: optimizer steps in one epoch (milestones and warmup are given in epochs).
        total_iters: optimizer steps of the whole run.
        warmup_iters: linear ramp length; the first step uses 1/warmup_iters of the peak, not zero.
    """

    def __init__(self, kind: str, iters_per_epoch: int, total_iters: int, warmup_iters: int = 0,
                 milestones: Iterable[int] = (), gamma: float = 0.1, power: float = 2.0):
        self.kind = kind
        self.iters_per_epoch = max(1, int(iters_per_epoch))
        self.total_iters = max(1, int(total_iters))
        self.warmup_iters = int(warmup_iters)
        self.milestone_iters = [int(m) * self.iters_per_epoch for m in milestones]
        self.gamma = float(gamma)
        self.power = float(power)

    def __call__(self, step: int) -> float:
        if step < self.warmup_iters:
            warm = (step + 1) / self.warmup_iters
        else:
            warm = 1.0
        if self.kind == "multistep":
            return warm * self.gamma ** sum(step >= m for m in self.milestone_iters)
        span = max(1, self.total_iters - self.warmup_iters)
        progress = min(1.0, max(0.0, (step - self.warmup_iters) / span))
        if self.kind == "cosine":
            return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "poly":
            return warm * (1.0 - progress) ** self.power
        raise ValueError(f"lr_schedule: '{self.kind}' is not one of: multistep, cosine, poly")


def build_scheduler(cfg, optimizer: torch.optim.Optimizer, iters_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over LRFactor; call `.step()` after every optimizer step."""
    factor = LRFactor(cfg.lr_schedule, iters_per_epoch, iters_per_epoch * cfg.epochs,
                      round(cfg.warmup_epochs * iters_per_epoch), cfg.milestones, cfg.lr_gamma, cfg.poly_power)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
