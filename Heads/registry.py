"""Head registry: margin heads by name."""
from __future__ import annotations

import difflib
from typing import Callable

import torch.nn as nn

__all__ = ["register_head", "get_head", "list_heads", "build_head"]

_HEADS: dict[str, type] = {}


def register_head(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        if name in _HEADS:
            raise ValueError(f"head '{name}' is already registered")
        _HEADS[name] = cls
        return cls
    return wrap


def list_heads() -> list[str]:
    return list(_HEADS)


def _lookup(name: str) -> type:
    if name not in _HEADS:
        close = difflib.get_close_matches(name, _HEADS, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown head '{name}'{hint}; choose from: {', '.join(_HEADS)}")
    return _HEADS[name]


def get_head(name: str, embedding_size: int, num_classes: int, **kwargs) -> nn.Module:
    """Build head `name` with its own keyword arguments (scale, margin, ...)."""
    return _lookup(name)(embedding_size, num_classes, **kwargs)


def build_head(cfg, embedding_size: int, num_classes: int) -> nn.Module:
    """The head a Config asks for; each head class maps the config fields it uses in `config_kwargs`."""
    cls = _lookup(cfg.head)
    return cls(embedding_size, num_classes, **cls.config_kwargs(cfg))
