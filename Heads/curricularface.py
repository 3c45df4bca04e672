"""CurricularFace (Huang et al., CVPR 2020, https://arxiv.org/abs/2004.00288).

The target gets ArcFace's margin; a non-target cosine that beats the margined target ("hard") is re-weighted to
cos * (t + cos), where t is an EMA of the mean target cosine: easy samples dominate early (t small), hard ones later.
"""
from __future__ import annotations

import math

import torch

from .arcface import cos_plus_margin
from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["CurricularFace"]


@register_head("CurricularFace")
class CurricularFace(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 t_alpha: float = 0.01):
        super().__init__(embedding_size, num_classes, scale)
        self.m = float(margin)
        self.t_alpha = float(t_alpha)
        self.threshold = math.cos(math.pi - self.m)
        self.fallback = math.sin(math.pi - self.m) * self.m
        self.register_buffer("t", torch.zeros(()))

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, margin=cfg.margin)

    def margin(self, cos, labels, norms):
        mask = target_mask(cos, labels)
        target = cos.gather(1, labels[:, None])  # (N, 1)
        cos_m = cos_plus_margin(target, self.m)
        final_target = torch.where(target > self.threshold, cos_m, target - self.fallback)
        if self.training:
            with torch.no_grad():
                self.t.mul_(1 - self.t_alpha).add_(self.t_alpha * target.mean())
        hard = cos > cos_m
        out = torch.where(hard, cos * (self.t + cos), cos)
        return self.scale * torch.where(mask, final_target, out)
