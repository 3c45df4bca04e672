"""Plain softmax classifier: inner product of the raw embedding with unnormalised centres, plus a bias."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import HeadOutput, check_labels
from .registry import register_head

__all__ = ["Softmax"]


@register_head("Softmax")
class Softmax(nn.Module):
    """logits = x W^T + b. The baseline the margin heads improve on; no normalisation, no scale."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        nn.init.normal_(self.weight, std=0.01)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        check_labels(labels, self.num_classes)
        logits = F.linear(embeddings, self.weight.to(embeddings.dtype), self.bias.to(embeddings.dtype)).float()
        return HeadOutput(logits, logits.detach())
