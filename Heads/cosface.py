"""CosFace / LMCL (Wang et al., CVPR 2018, https://arxiv.org/abs/1801.09414): target logit s*(cos(theta) - m)."""
from __future__ import annotations

import torch

from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["CosFace"]


@register_head("CosFace")
class CosFace(MarginHead):
    """Additive cosine margin (the paper uses s = 64, m = 0.35)."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.35):
        super().__init__(embedding_size, num_classes, scale)
        self.m = float(margin)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, margin=cfg.margin)

    def margin(self, cos, labels, norms):
        return self.scale * torch.where(target_mask(cos, labels), cos - self.m, cos)
