"""Any timm image model as a face backbone (`backbone=timm:<name>`, e.g. timm:convnext_atto, timm:vit_tiny_patch16_224):
timm's feature extractor, randomly initialised, under the face embedding head (BN-dropout-FC-BN over the whole
feature map, as the IR nets: no global pooling). timm is imported only when such a backbone is built.
"""
from __future__ import annotations

import difflib
import math

import torch
import torch.nn as nn

from .registry import register_backbone_family

__all__ = ["TimmFaceNet", "check_timm_name"]


def check_timm_name(name: str) -> None:
    """ValueError naming the closest timm model when `name` is not one."""
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=1, cutoff=0.6)
        hint = f" (did you mean 'timm:{close[0]}'?)" if close else ""
        raise ValueError(f"unknown timm model '{name}'{hint}; see timm.list_models()")


def _create(name: str, input_size: tuple[int, int]) -> nn.Module:
    import timm

    # transformers take the input size at construction (position embeddings); convnets refuse the argument
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="", img_size=tuple(input_size))
    except TypeError:
        return timm.create_model(name, pretrained=False, num_classes=0, global_pool="")


class TimmFaceNet(nn.Module):
    """timm `name`'s forward_features, then BN - dropout - flatten - FC - BN1d to `embedding_size`.

    Args:
        name: a timm model name (timm.list_models()).
        embedding_size: output dimension.
        input_size: (H, W) the network is built and sized for.
        dropout: dropout before the FC.
    """

    def __init__(self, name: str, embedding_size: int = 512, input_size: tuple[int, int] = (112, 112),
                 dropout: float = 0.0):
        super().__init__()
        check_timm_name(name)
        self.body = _create(name, input_size)
        was_training = self.body.training
        with torch.no_grad():  # the feature layout this input size gives: (C, h, w) maps or (T, C) tokens
            shape = self.body.eval().forward_features(torch.zeros(1, 3, *input_size)).shape[1:]
        self.body.train(was_training)
        self.tokens = len(shape) == 2
        # maps: BatchNorm2d over channels (the IR nets' bn2); tokens come already normalised from timm's last norm
        self.norm = nn.Identity() if self.tokens else nn.BatchNorm2d(shape[0])
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(math.prod(shape), embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        self.embedding_size = embedding_size
        # no activation_checkpointing attribute: timm's own per-stage checkpointing would update the BatchNorm
        # statistics a second time in the recomputation (measured: running means differ from a plain step), so a
        # config asking for it is refused rather than silently changing the statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.body.forward_features(x))
        return self.features(self.fc(self.dropout(x).flatten(1)))


@register_backbone_family("timm")
def build_timm(model_name: str, embedding_size: int = 0, input_size=(112, 112), dropout: float = 0.0) -> TimmFaceNet:
    return TimmFaceNet(model_name, embedding_size or 512, tuple(input_size), dropout)
