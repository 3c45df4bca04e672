"""Head registry: margin heads by name."""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

from Utils.registry import Registry

__all__ = ["register_head", "get_head", "list_heads", "build_head"]

_HEADS: Registry[type] = Registry("head")


def register_head(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        return _HEADS.add(name, cls)
    return wrap


def list_heads() -> list[str]:
    return _HEADS.names()


def get_head(name: str, embedding_size: int, num_classes: int, **kwargs) -> nn.Module:
    """Build head `name` with its own keyword arguments (scale, margin, ...)."""
    return _HEADS.get(name)(embedding_size, num_classes, **kwargs)


def build_head(cfg, embedding_size: int, num_classes: int) -> nn.Module:
    """The head a Config asks for; each head class maps the config fields it uses in `config_kwargs`."""
    cls = _HEADS.get(cfg.head)
    return cls(embedding_size, num_classes, **cls.config_kwargs(cfg))
