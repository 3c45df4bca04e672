"""Shared pieces of the training tests: a small class-separable image set and a fast Config."""
from __future__ import annotations

import socket

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from Backbones import list_backbones, register_backbone

from Config import Config, apply_overrides, validate


class PatternFaces(Dataset):
    """`classes` fixed random patterns, each sample its class pattern plus noise; items (image, label, n_bad)."""

    def __init__(self, classes: int = 8, per_class: int = 8, hw: tuple[int, int] = (32, 32), noise: float = 0.3,
                 seed: int = 0, bad_every: int = 0):
        g = torch.Generator().manual_seed(seed)
        protos = torch.randn(classes, 3, *hw, generator=g)
        self.labels = torch.arange(classes).repeat_interleave(per_class)
        self.images = protos[self.labels] + noise * torch.randn(len(self.labels), 3, *hw, generator=g)
        self.num_classes = classes
        self.bad_every = bad_every

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        bad = int(self.bad_every > 0 and i % self.bad_every == 0)
        return self.images[i], int(self.labels[i]), bad


def tiny_config(tmp_path, **overrides) -> Config:
    """MobileFaceNet at 32x32 (its smallest input), no evaluation, no workers: a few seconds per epoch on 2 cores.
    float32 NCHW unless a test asks otherwise: the equivalence tests compare runs within float32 tolerance."""
    base = dict(use_amp=False, channels_last=False, compile=False, eval_at_start=False, backbone="MobileFaceNet", head="ArcFace", input_size=[32, 32], embedding_size=32, batch_size=16,
                epochs=2, lr=0.05, warmup_epochs=0.0, milestones=[100], num_workers=0, val_sets=[],
                output_dir=str(tmp_path / "runs"), log_every=1, random_flip=False, scale=16.0, margin=0.2)
    base.update(overrides)
    return validate(apply_overrides(Config(), base, source="test"))


class TinyTestNet(nn.Module):
    """Two strided convs with BN/PReLU, FC, BN1d (the IR networks' layer types), ~100x cheaper than MobileFaceNet."""

    def __init__(self, embedding_size: int = 16, input_size=(32, 32), dropout: float = 0.0, norm: bool = True):
        super().__init__()
        h, w = input_size
        bn2 = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), bn2(8), nn.PReLU(8),
                                  nn.Conv2d(8, 16, 3, 2, 1, bias=False), bn2(16), nn.PReLU(16))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(16 * (h // 4) * (w // 4), embedding_size)
        self.features = nn.BatchNorm1d(embedding_size) if norm else nn.Identity()
        self.embedding_size = embedding_size

    def forward(self, x):
        return self.features(self.fc(self.dropout(self.body(x)).flatten(1)))


if "TinyTestNet" not in list_backbones():
    register_backbone("TinyTestNet")(
        lambda embedding_size=0, input_size=(32, 32), dropout=0.0: TinyTestNet(embedding_size or 16, input_size,
                                                                               dropout))
    register_backbone("TinyTestNetNoBN")(
        lambda embedding_size=0, input_size=(32, 32), dropout=0.0: TinyTestNet(embedding_size or 16, input_size,
                                                                               dropout, norm=False))


def free_port() -> int:
    """A TCP port nobody listens on now (for a gloo rendezvous or a visdom server in a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
