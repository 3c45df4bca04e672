"""ArcFace (Deng et al., CVPR 2019, https://arxiv.org/abs/1801.07698): target logit s*cos(theta + m).

Sub-center ArcFace (Deng et al., ECCV 2020): K centres per class, a class scored by its closest centre, so noisy
images gather on non-dominant sub-centres instead of pulling the main one.
"""
from __future__ import annotations

import math

import torch

from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["ArcFace", "SubCenterArcFace", "cos_plus_margin"]

# Keeps d sqrt(1 - c^2) / dc finite at c = +-1 (an exact-match embedding) while changing the value by < 1e-6.
_SIN_EPS = 1e-12


def cos_plus_margin(cos: torch.Tensor, m: float) -> torch.Tensor:
    """cos(theta + m) from cos(theta), via the angle-sum identity (no acos, whose gradient is infinite at +-1)."""
    sin = torch.sqrt(((1.0 - cos) * (1.0 + cos)).clamp_min(0.0) + _SIN_EPS)
    return cos * math.cos(m) - sin * math.sin(m)


@register_head("ArcFace")
class ArcFace(MarginHead):
    """Additive angular margin.

    Where theta + m would pass pi, cos(theta + m) stops decreasing in theta; there the target logit becomes
    cos(theta) - m*sin(m) (insightface's fallback, keeping it monotonic). With `easy_margin` the margin applies only
    where cos(theta) > 0.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 easy_margin: bool = False, centres_per_class: int = 1):
        super().__init__(embedding_size, num_classes, scale, centres_per_class)
        self.m = float(margin)
        self.easy_margin = easy_margin
        self.threshold = math.cos(math.pi - self.m)  # cos(theta) above this <=> theta + m <= pi
        self.fallback = math.sin(math.pi - self.m) * self.m

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, margin=cfg.margin, easy_margin=cfg.easy_margin)

    def margin(self, cos, labels, norms):
        phi = cos_plus_margin(cos, self.m)
        if self.easy_margin:
            phi = torch.where(cos > 0, phi, cos)
        else:
            phi = torch.where(cos > self.threshold, phi, cos - self.fallback)
        return self.scale * torch.where(target_mask(cos, labels), phi, cos)


@register_head("SubCenterArcFace")
class SubCenterArcFace(ArcFace):
    """ArcFace over K sub-centres per class (K = `subcenters`, 3 in the paper)."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 easy_margin: bool = False, subcenters: int = 3):
        super().__init__(embedding_size, num_classes, scale, margin, easy_margin, centres_per_class=subcenters)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(super().config_kwargs(cfg), subcenters=cfg.subcenters)
