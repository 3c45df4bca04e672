"""SphereFace / A-Softmax (Liu et al., CVPR 2017, https://arxiv.org/abs/1704.08063): multiplicative angular margin.

psi(theta) = (-1)^k cos(m theta) - 2k for theta in [k pi/m, (k+1) pi/m] keeps the target logit monotonic in theta.
Training starts close to softmax and anneals towards the margin: the target logit is (lambda cos + psi)/(1 + lambda)
with lambda = max(lambda_min, base * (1 + gamma * iteration)^-power), as in the authors' Caffe layer. As in the
other heads (and unlike the original, which multiplies by ||x||), logits are scaled by s on normalised features.
"""
from __future__ import annotations

import math

import torch

from .base import MarginHead, target_mask
from .registry import register_head

__all__ = ["SphereFace", "chebyshev_cos_m"]

_ACOS_EPS = 1e-7


def chebyshev_cos_m(cos: torch.Tensor, m: int) -> torch.Tensor:
    """cos(m theta) as the Chebyshev polynomial T_m(cos theta): exact and finite-gradient at cos = +-1."""
    t_prev, t = torch.ones_like(cos), cos
    if m == 0:
        return t_prev
    for _ in range(m - 1):
        t_prev, t = t, 2 * cos * t - t_prev
    return t


@register_head("SphereFace")
class SphereFace(MarginHead):
    def __init__(self, embedding_size: int, num_classes: int, scale: float = 32.0, m: int = 4,
                 lambda_base: float = 1000.0, lambda_min: float = 5.0, gamma: float = 0.12, power: float = 1.0):
        super().__init__(embedding_size, num_classes, scale)
        self.m = int(m)
        self.lambda_base, self.lambda_min, self.gamma, self.power = lambda_base, lambda_min, gamma, power
        # the annealing clock is part of the state: a resumed run continues the schedule where it stopped
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        # the same count as a Python int: reading the buffer every step would be a host sync on a GPU. It is read
        # again only when the buffer changed behind our back (load_state_dict, .to(), a direct write): the tensor
        # and its in-place version counter are what we last saw.
        self._iteration, self._seen = 0, self._stamp()

    def _stamp(self) -> tuple[int, int]:
        return id(self.iteration), self.iteration._version

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        base, lam_min, gamma, power = cfg.sphereface_lambda
        return dict(scale=cfg.scale, m=cfg.sphereface_m, lambda_base=base, lambda_min=lam_min, gamma=gamma,
                    power=power)

    def _steps(self) -> int:
        if self._seen != self._stamp():
            self._iteration, self._seen = int(self.iteration), self._stamp()
        return self._iteration

    def current_lambda(self) -> float:
        return max(self.lambda_min, self.lambda_base * (1.0 + self.gamma * self._steps()) ** (-self.power))

    def margin(self, cos, labels, norms):
        lam = self.current_lambda()
        if self.training:
            steps = self._steps()
            self.iteration += 1  # on the device, no sync; the Python count follows
            self._iteration, self._seen = steps + 1, self._stamp()
        # k only selects the branch; it carries no gradient, so acos's infinite slope at +-1 never reaches backward
        theta = torch.acos(cos.detach().clamp(-1 + _ACOS_EPS, 1 - _ACOS_EPS))
        k = torch.floor(self.m * theta / math.pi)
        sign = 1.0 - 2.0 * torch.remainder(k, 2)
        psi = sign * chebyshev_cos_m(cos, self.m) - 2.0 * k
        target = (lam * cos + psi) / (1.0 + lam)
        return self.scale * torch.where(target_mask(cos, labels), target, cos)
