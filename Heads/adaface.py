"""AdaFace (Kim et al., CVPR 2022, https://arxiv.org/abs/2204.00964): a margin adapted to image quality.

The embedding norm is the quality proxy. Its batch-normalised value z = clip(h * (||x|| - mu) / (sigma + eps), -1, 1)
(mu, sigma: EMAs of the batch statistics) moves the margin between angular (g_angle = -m z) and additive
(g_add = m + m z): high-quality images get an ArcFace-like margin, low-quality ones a CosFace-like one.
"""
from __future__ import annotations

import math

import torch

from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["AdaFace"]

_EPS = 1e-3  # the paper's: clamps for acos and the angle, and the std denominator


@register_head("AdaFace")
class AdaFace(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.4,
                 h: float = 0.333, t_alpha: float = 0.01):
        super().__init__(embedding_size, num_classes, scale)
        self.m, self.h, self.t_alpha = float(margin), float(h), float(t_alpha)
        # initial statistics from the authors' code: a wide prior that the EMA narrows in the first iterations
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, margin=cfg.margin, h=cfg.adaface_h, t_alpha=cfg.adaface_t_alpha)

    def margin(self, cos, labels, norms):
        safe_norms = norms.clamp(0.001, 100).detach()
        if self.training and safe_norms.shape[0] > 1:  # one sample has no std
            with torch.no_grad():
                self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * safe_norms.mean())
                self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * safe_norms.std())
        z = ((safe_norms - self.batch_mean) / (self.batch_std + _EPS) * self.h).clamp(-1, 1)
        mask = target_mask(cos, labels)
        g_angle = torch.where(mask, -self.m * z, torch.zeros_like(cos))
        theta = torch.acos(cos.clamp(-1 + _EPS, 1 - _EPS))
        cos_m = torch.cos((theta + g_angle).clamp(_EPS, math.pi - _EPS))
        g_add = torch.where(mask, self.m + self.m * z, torch.zeros_like(cos))
        return self.scale * (cos_m - g_add)
