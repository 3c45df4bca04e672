"""ElasticFace (Boutros et al., CVPRW 2022, https://arxiv.org/abs/2109.09416): a margin drawn per sample and step.

ElasticFace-Arc's target logit is s cos(theta + m_i), ElasticFace-Cos's s (cos(theta) - m_i), with m_i ~ N(m, sigma)
drawn anew at each training step, so the decision boundary is not one fixed line but a band. The "+" variants sort
the drawn margins by the samples' target cosines: the hardest sample (lowest cosine) gets the largest margin.
In eval mode the margin is m itself, so a validation loss is deterministic.
"""
from __future__ import annotations

import torch

from .arcface import _SIN_EPS
from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["ElasticArcFace", "ElasticCosFace", "ElasticArcFacePlus", "ElasticCosFacePlus", "elastic_margins"]


def elastic_margins(target_cos: torch.Tensor, m: float, sigma: float, by_difficulty: bool) -> torch.Tensor:
    """(N, 1) margins ~ N(m, sigma) from torch's generator; `by_difficulty` hands the k-th largest to the k-th
    lowest target cosine."""
    margins = torch.normal(m, sigma, size=target_cos.shape, device=target_cos.device)
    if by_difficulty:
        order = target_cos.detach().flatten().argsort()  # hardest first
        ranked = torch.empty_like(margins).flatten()
        ranked[order] = margins.flatten().sort(descending=True).values
        margins = ranked.view_as(margins)
    return margins


class _Elastic(MarginHead):
    by_difficulty = False

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.5,
                 sigma: float = 0.05):
        super().__init__(embedding_size, num_classes, scale)
        self.m, self.sigma = float(margin), float(sigma)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale, margin=cfg.margin, sigma=cfg.elastic_sigma)

    def row_margins(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target = cos.gather(1, labels[:, None])
        if not self.training:
            return torch.full_like(target, self.m)
        return elastic_margins(target, self.m, self.sigma, self.by_difficulty)

    def margin(self, cos, labels, norms):
        phi = self.target_logit(cos, self.row_margins(cos, labels))
        return self.scale * torch.where(target_mask(cos, labels), phi, cos)

    def target_logit(self, cos: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_head("ElasticArcFace")
class ElasticArcFace(_Elastic):
    """cos(theta + m_i), by the angle-sum identity (finite gradients at cos = +-1); no fallback, as the paper."""

    def target_logit(self, cos, m):
        sin = torch.sqrt(((1.0 - cos) * (1.0 + cos)).clamp_min(0.0) + _SIN_EPS)
        return cos * torch.cos(m) - sin * torch.sin(m)


@register_head("ElasticCosFace")
class ElasticCosFace(_Elastic):
    """cos(theta) - m_i (the paper: m = 0.35)."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0, margin: float = 0.35,
                 sigma: float = 0.05):
        super().__init__(embedding_size, num_classes, scale, margin, sigma)

    def target_logit(self, cos, m):
        return cos - m


@register_head("ElasticArcFacePlus")
class ElasticArcFacePlus(ElasticArcFace):
    by_difficulty = True


@register_head("ElasticCosFacePlus")
class ElasticCosFacePlus(ElasticCosFace):
    by_difficulty = True
