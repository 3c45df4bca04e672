"""MagFace (Meng et al., CVPR 2021, https://arxiv.org/abs/2103.06627): the embedding norm a = ||f|| measures quality.

The target logit is s cos(theta + m(a)), with m(a) rising linearly from l_m at a = l_a to u_m at a = u_a (a clipped
to [l_a, u_a]); the loss adds lambda_g g(a), g(a) = 1/a + a/u_a^2, which is convex with its minimum at u_a and so
pushes easy, high-quality samples to larger norms. Both terms carry a gradient into the norm.
"""
from __future__ import annotations

import math

import torch

from .arcface import _SIN_EPS
from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["MagFace"]


@register_head("MagFace")
class MagFace(MarginHead):
    """Magnitude-aware angular margin with the g(a) regulariser.

    Args:
        norm_range: [l_a, u_a], the norms between which the margin varies (the paper: 10, 110).
        margin_range: [l_m, u_m], the margins at l_a and u_a (the paper: 0.45, 0.8).
        lambda_g: weight of g(a) in the loss (the paper: 35).
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0,
                 norm_range: tuple[float, float] = (10.0, 110.0), margin_range: tuple[float, float] = (0.45, 0.8),
                 lambda_g: float = 35.0):
        super().__init__(embedding_size, num_classes, scale)
        self.l_a, self.u_a = float(norm_range[0]), float(norm_range[1])
        self.l_m, self.u_m = float(margin_range[0]), float(margin_range[1])
        if not 0 < self.l_a < self.u_a:
            raise ValueError(f"magface_norm_range: expected 0 < l_a < u_a, got {list(norm_range)}")
        self.lambda_g = float(lambda_g)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, norm_range=cfg.magface_norm_range, margin_range=cfg.magface_margin_range,
                    lambda_g=cfg.magface_lambda_g)

    def clipped_norm(self, norms: torch.Tensor) -> torch.Tensor:
        return norms.clamp(self.l_a, self.u_a)

    def margin_of(self, norms: torch.Tensor) -> torch.Tensor:
        """m(a), (N, 1)."""
        a = self.clipped_norm(norms)
        return self.l_m + (self.u_m - self.l_m) * (a - self.l_a) / (self.u_a - self.l_a)

    def margin(self, cos, labels, norms):
        m = self.margin_of(norms)  # (N, 1): one margin per row
        sin = torch.sqrt(((1.0 - cos) * (1.0 + cos)).clamp_min(0.0) + _SIN_EPS)
        phi = cos * torch.cos(m) - sin * torch.sin(m)
        # beyond theta + m = pi, ArcFace's monotonic fallback with the row's own margin (as the authors' code)
        phi = torch.where(cos > torch.cos(math.pi - m), phi, cos - torch.sin(math.pi - m) * m)
        return self.scale * torch.where(target_mask(cos, labels), phi, cos)

    def regulariser(self, norms):
        a = self.clipped_norm(norms)
        return self.lambda_g * (1.0 / a + a / self.u_a ** 2).mean()
