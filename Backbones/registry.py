"""Backbone registry: constructors by name, built only when asked for; families of external models by prefix
(`timm:<model>`)."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from Utils.registry import Registry

__all__ = ["register_backbone", "register_backbone_family", "get_backbone", "list_backbones", "build_backbone",
           "check_backbone_name", "supports_activation_checkpointing"]

_BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")
_FAMILIES: Registry[Callable[..., nn.Module]] = Registry("backbone family")


def register_backbone(name: str, activation_checkpointing: bool = False) -> Callable:
    """Decorator registering `fn(embedding_size, input_size, dropout) -> nn.Module` under `name`;
    `activation_checkpointing`: the network has an `activation_checkpointing` switch (per block)."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fn.activation_checkpointing = activation_checkpointing
        return _BACKBONES.add(name, fn)
    return wrap


def supports_activation_checkpointing(name: str) -> bool:
    """Whether backbone `name` can recompute its blocks in the backward pass (known without building it)."""
    return ":" not in name and name in _BACKBONES and _BACKBONES.get(name).activation_checkpointing


def register_backbone_family(prefix: str) -> Callable:
    """Decorator registering `fn(model_name, embedding_size, input_size, dropout)` for names `<prefix>:<model>`."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        return _FAMILIES.add(prefix, fn)
    return wrap


def check_backbone_name(name: str) -> None:
    """ValueError (naming the choices) unless `name` is a registered backbone or a known `<family>:<model>`."""
    if ":" in name:
        prefix, model = name.split(":", 1)
        _FAMILIES.get(prefix)
        if prefix == "timm":
            from .timm_backbone import check_timm_name  # deferred: timm only when a timm name is asked for
            check_timm_name(model)
    else:
        _BACKBONES.get(name)


def list_backbones() -> list[str]:
    return _BACKBONES.names()


def get_backbone(name: str, embedding_size: int = 0, input_size: tuple[int, int] = (112, 112),
                 dropout: float = 0.0) -> nn.Module:
    """Build backbone `name` (or `<family>:<model>`); `embedding_size=0` keeps the network's default
    (MobileFaceNet 128, IR and ViT 512)."""
    if ":" in name:
        prefix, model = name.split(":", 1)
        return _FAMILIES.get(prefix)(model, embedding_size=embedding_size, input_size=tuple(input_size),
                                     dropout=dropout)
    return _BACKBONES.get(name)(embedding_size=embedding_size, input_size=tuple(input_size), dropout=dropout)


def build_backbone(cfg) -> nn.Module:
    """The backbone a Config asks for, with activation checkpointing where the config turns it on."""
    if getattr(cfg, "activation_checkpointing", False) and not supports_activation_checkpointing(cfg.backbone):
        raise ValueError(f"activation_checkpointing: backbone '{cfg.backbone}' does not support it (the IR "
                         f"nets and the ViTs do)")
    model = get_backbone(cfg.backbone, cfg.embedding_size, cfg.input_hw, cfg.dropout)
    if getattr(cfg, "activation_checkpointing", False):
        model.activation_checkpointing = True
    return model
