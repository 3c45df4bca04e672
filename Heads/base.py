"""The shared part of every normalised margin head (insightface's partial_fc / losses split).

`MarginHead` owns the class-centre matrix and the cosine between normalised embeddings and centres; a subclass
only says how the cosine becomes a logit (`margin`). The cosine matrix may be computed under autocast (it is the
large matmul), but it is cast to float32 and the margin math runs with autocast off: acos/sqrt near +-1 and the
subtraction of margins lose everything in bf16.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["HeadOutput", "MarginHead", "check_labels"]


class HeadOutput(NamedTuple):
    logits: torch.Tensor  # (N, C) float32, margin applied and scaled: feed to cross-entropy
    cosine: torch.Tensor  # (N, C) float32 margin-free score: its argmax is the prediction (train accuracy)
    regulariser: torch.Tensor | None = None  # scalar added to the cross-entropy (MagFace's g(a)); None: nothing


def check_labels(labels: torch.Tensor, num_classes: int) -> None:
    """int64 labels in [0, num_classes). The range is checked on CPU tensors only, through numpy (a view, no
    transfer): on a GPU it would cost two host synchronisations per micro-batch, so the training loop checks the
    CPU batch before moving it (Utils/training/loop.py) and a GPU tensor here is taken as checked."""
    if labels.dtype != torch.int64:
        raise TypeError(f"labels must be int64 (torch.long), got {labels.dtype}")
    if labels.numel() and labels.device.type == "cpu":
        values = labels.detach().numpy()
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got min {low} max {high}")


def _no_autocast(device_type: str):
    return torch.autocast(device_type=device_type, enabled=False)


class MarginHead(nn.Module):
    """Class centres W (C x D) and s * margin(cos(theta)).

    Args:
        embedding_size: D, the backbone's output size.
        num_classes: C, identities in the training set.
        scale: s, the radius of the hypersphere the logits live on.
        centres_per_class: K > 1 keeps K sub-centres per class and scores a class by its closest one.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 32.0, centres_per_class: int = 1):
        super().__init__()
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.scale = float(scale)
        self.centres_per_class = centres_per_class
        self.weight = nn.Parameter(torch.empty(num_classes * centres_per_class, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    @classmethod
    def config_kwargs(cls, cfg) -> dict:
        return dict(scale=cfg.scale)

    def cosine(self, embeddings: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        """cos(theta) between embeddings and class centres, (N, C), float32, clamped to [-1, 1].

        `centres` replaces the whole matrix by some of its rows (Partial-FC's sampled classes, K rows per class).
        """
        emb = F.normalize(embeddings, dim=1)
        w = F.normalize(self.weight if centres is None else centres, dim=1)
        cos = F.linear(emb, w.to(emb.dtype)).float()
        if self.centres_per_class > 1:
            cos = cos.view(cos.shape[0], -1, self.centres_per_class).amax(dim=2)
        return cos.clamp(-1.0, 1.0)

    def margin(self, cos: torch.Tensor, labels: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """Turn float32 cosines into logits (scale included). `norms` are the embedding norms, (N, 1)."""
        raise NotImplementedError

    def regulariser(self, norms: torch.Tensor) -> torch.Tensor | None:
        """A loss term of the embedding norms (N, 1) added to the cross-entropy, or None (most heads)."""
        return None

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        check_labels(labels, self.num_classes)
        cos = self.cosine(embeddings)
        with _no_autocast(cos.device.type):
            norms = embeddings.float().norm(dim=1, keepdim=True)
            logits = self.margin(cos, labels, norms)
            regulariser = self.regulariser(norms)
        return HeadOutput(logits, cos.detach(), regulariser)


def target_mask(cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Boolean (N, C) mask of each sample's own class, scattered straight into bool: a one-hot would build an
    int64 (N, C) matrix (8x the memory) on every margin call."""
    return torch.zeros_like(cos, dtype=torch.bool).scatter_(1, labels[:, None], True)
