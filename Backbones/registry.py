"""Backbone registry: constructors by name, built only when asked for."""
from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

__all__ = ["register_backbone", "get_backbone", "list_backbones", "build_backbone"]

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable:
    """Decorator registering `fn(embedding_size, input_size, dropout) -> nn.Module` under `name`."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' is already registered")
        _BACKBONES[name] = fn
        return fn
    return wrap


def list_backbones() -> list[str]:
    return list(_BACKBONES)


def get_backbone(name: str, embedding_size: int = 0, input_size: tuple[int, int] = (112, 112),
                 dropout: float = 0.0) -> nn.Module:
    """Build backbone `name`; `embedding_size=0` keeps the network's default (MobileFaceNet 128, IR 512)."""
    if name not in _BACKBONES:
        close = difflib.get_close_matches(name, _BACKBONES, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown backbone '{name}'{hint}; choose from: {', '.join(_BACKBONES)}")
    return _BACKBONES[name](embedding_size=embedding_size, input_size=tuple(input_size), dropout=dropout)


def build_backbone(cfg) -> nn.Module:
    """The backbone a Config asks for."""
    return get_backbone(cfg.backbone, cfg.embedding_size, cfg.input_hw, cfg.dropout)
