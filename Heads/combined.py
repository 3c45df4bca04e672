"""Combined margin (insightface, "ArcFace" paper Sec. 3.3): target logit s*(cos(m1*theta + m2) - m3).

m1 = SphereFace's multiplicative, m2 = ArcFace's additive angular, m3 = CosFace's additive cosine margin; the
paper's best CASIA setting is (1.0, 0.3, 0.2). Where m1*theta + m2 passes pi the curve would turn back up; there the
target continues as cos(theta) - cos(theta_t) - 1 - m3, continuous at theta_t = (pi - m2)/m1 and decreasing in theta.
"""
from __future__ import annotations

import math

import torch

from .arcface import cos_plus_margin
from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["CombinedMargin"]

_ACOS_EPS = 1e-7  # acos' slope is infinite at +-1; the clamp zeroes the gradient exactly there instead


@register_head("CombinedMargin")
class CombinedMargin(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, m1: float = 1.0,
                 m2: float = 0.3, m3: float = 0.2):
        super().__init__(embedding_size, num_classes, scale)
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)
        self.theta_t = (math.pi - self.m2) / self.m1
        self.cos_theta_t = math.cos(min(self.theta_t, math.pi))

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        m1, m2, m3 = cfg.combined_margins
        return dict(scale=cfg.scale, m1=m1, m2=m2, m3=m3)

    def margin(self, cos, labels, norms):
        if self.m1 == 1.0:  # the angle-sum identity is exact and smooth at cos = +-1
            angular = cos_plus_margin(cos, self.m2)
        else:
            theta = torch.acos(cos.clamp(-1 + _ACOS_EPS, 1 - _ACOS_EPS))
            angular = torch.cos(self.m1 * theta + self.m2)
        inside = cos > self.cos_theta_t  # theta < theta_t <=> m1*theta + m2 < pi
        target = torch.where(inside, angular - self.m3, cos - self.cos_theta_t - 1.0 - self.m3)
        return self.scale * torch.where(target_mask(cos, labels), target, cos)
