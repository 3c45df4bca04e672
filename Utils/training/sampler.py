"""A seeded, rank-sharded, resumable sampler: `resume` continues mid-epoch with the samples not yet seen.

Each epoch's order is a permutation drawn from (seed, epoch) alone, so it is the same in an interrupted run and in
an uninterrupted one. Under DDP the permutation is padded to a multiple of the world size and rank r takes every
world_size-th index starting at r (DistributedSampler's layout): the first local batches of all ranks together are
exactly the first global batch of a single process with the same global batch size.
"""
from __future__ import annotations

import math
from typing import Iterator

import torch
from torch.utils.data import Sampler

from Datasets.augment import EpochIndex

__all__ = ["ResumableSampler"]


class ResumableSampler(Sampler[int]):
    """Indices of this rank's shard of one epoch, skipping the first `position` of them after a resume.

    Args:
        length: number of samples in the dataset.
        seed: base seed; epoch e uses seed + e.
        rank, world_size: this process's shard.
        shuffle: random order (training) or 0..length-1.
    """

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if length < 1:
            raise ValueError("the training set is empty")
        self.length = length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0  # samples of this rank's shard already consumed in `epoch`
        self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, position: int = 0) -> None:
        """Start `epoch`, skipping its first `position` samples of this rank (those consumed before a resume)."""
        if not 0 <= position <= self.per_rank:
            raise ValueError(f"sampler position {position} outside 0..{self.per_rank}")
        self.epoch = epoch
        self.position = position

    def order(self) -> list[int]:
        """This rank's whole shard for the current epoch, before skipping."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            perm = torch.randperm(self.length, generator=g).tolist()
        else:
            perm = list(range(self.length))
        total = self.per_rank * self.world_size
        perm += perm[:total - len(perm)]  # pad by wrapping so every rank gets the same count
        return perm[self.rank:total:self.world_size]

    def __iter__(self) -> Iterator[int]:
        # EpochIndex: persistent loader workers learn the epoch (for the per-sample augmentation seed) from the index
        return (EpochIndex(i, self.epoch) for i in self.order()[self.position:])

    def __len__(self) -> int:
        return self.per_rank - self.position
