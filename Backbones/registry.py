"""Backbone registry: constructors by name, built only when asked for."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from Utils.registry import Registry

__all__ = ["register_backbone", "get_backbone", "list_backbones", "build_backbone"]

_BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


def register_backbone(name: str) -> Callable:
    """Decorator registering `fn(embedding_size, input_size, dropout) -> nn.Module` under `name`."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        return _BACKBONES.add(name, fn)
    return wrap


def list_backbones() -> list[str]:
    return _BACKBONES.names()


def get_backbone(name: str, embedding_size: int = 0, input_size: tuple[int, int] = (112, 112),
                 dropout: float = 0.0) -> nn.Module:
    """Build backbone `name`; `embedding_size=0` keeps the network's default (MobileFaceNet 128, IR 512)."""
    return _BACKBONES.get(name)(embedding_size=embedding_size, input_size=tuple(input_size), dropout=dropout)


def build_backbone(cfg) -> nn.Module:
    """The backbone a Config asks for."""
    return get_backbone(cfg.backbone, cfg.embedding_size, cfg.input_hw, cfg.dropout)
