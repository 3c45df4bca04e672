"""An augmentation recipe (`augment` in Config: "name:p[:strength]" items, in order) and its per-sample seeding.

Each sample's randomness comes from a generator seeded by (run seed, epoch, sample index) alone, never from the
worker's RNG stream, so a resumed run - whatever worker a sample lands on - draws the same images as an
uninterrupted one. The epoch reaches the (possibly persistent) workers inside the index itself: the sampler yields
`EpochIndex`, an int that carries its epoch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .ops import build_op, get_op, list_ops

__all__ = ["AugmentSpec", "Augment", "EpochIndex", "parse_augment", "sample_seed"]


class EpochIndex(int):
    """A sample index that also says which epoch asked for it (survives pickling to loader workers)."""

    def __new__(cls, index: int, epoch: int = 0):
        obj = super().__new__(cls, index)
        obj.epoch = int(epoch)
        return obj

    def __reduce__(self):
        return EpochIndex, (int(self), self.epoch)


@dataclass(frozen=True)
class AugmentSpec:
    name: str
    p: float
    strength: float

    def __str__(self) -> str:
        return f"{self.name}:{self.p:g}:{self.strength:g}"


def parse_augment(items: list[str] | str) -> list[AugmentSpec]:
    """Parse "flip:0.5,lowres:0.2:0.5" (or its list form); ValueError names the item at fault."""
    if isinstance(items, str):
        items = [i for i in (p.strip() for p in items.split(",")) if i]
    specs = []
    for item in items:
        parts = str(item).strip().split(":")
        name = parts[0]
        if name not in list_ops():
            get_op(name)  # raises the registry's error: the choices and the closest name
        if not 2 <= len(parts) <= 3:
            raise ValueError(f"'{item}': expected name:probability[:strength]")
        try:
            p = float(parts[1])
            strength = float(parts[2]) if len(parts) == 3 else get_op(name).default_strength
        except ValueError:
            raise ValueError(f"'{item}': probability and strength must be numbers") from None
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"'{item}': probability must be in [0, 1], got {p:g}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"'{item}': strength must be in [0, 1], got {strength:g}")
        specs.append(AugmentSpec(name, p, strength))
    return specs


_MASK64 = (1 << 64) - 1


def _mix(z: int) -> int:
    """splitmix64's finaliser: every input bit flips about half the output bits (neighbouring indices unrelated)."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_seed(run_seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed from (run seed, epoch, index), each mixed in turn (a few microseconds, per sample)."""
    return _mix(_mix(_mix(int(run_seed) & _MASK64) ^ int(epoch)) ^ int(index)) >> 1


class Augment:
    """The ops of a recipe applied in order to a uint8 (3, H, W) tensor at the network's input size."""

    def __init__(self, specs: list[AugmentSpec] | list[str] | str, input_hw=(112, 112), seed: int = 0):
        parsed = not isinstance(specs, str) and all(isinstance(s, AugmentSpec) for s in specs)
        self.specs = list(specs) if parsed else parse_augment(specs)
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.seed = int(seed)
        self.ops = [build_op(s.name, s.p, s.strength, self.input_hw) for s in self.specs if s.p > 0]

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __getstate__(self) -> dict:
        # the ops are closures (not picklable); spawned loader workers and DDP ranks rebuild them from the recipe
        return {"specs": self.specs, "input_hw": self.input_hw, "seed": self.seed}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["specs"], state["input_hw"], state["seed"])

    def flip_only(self) -> bool:
        """True when the recipe holds nothing but flips (all a batch decoded on the GPU can be given)."""
        return all(s.name == "flip" for s in self.specs if s.p > 0)

    def flip_drawn(self, index: int, epoch: int | None = None) -> bool:
        """Whether a flip-only recipe mirrors sample `index`: the recipe run on a 1 x 2 probe image, so the draw is
        the very one __call__ makes for the full image."""
        probe = torch.arange(2, dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2).contiguous()
        return bool(self(probe, index, epoch)[0, 0, 0] == 1)

    def __call__(self, img: torch.Tensor, index: int, epoch: int | None = None) -> torch.Tensor:
        """`img` augmented with the draws of sample `index` in `epoch` (default: the epoch an EpochIndex carries)."""
        if epoch is None:
            epoch = getattr(index, "epoch", 0)
        # fork_rng: the ops draw from the global generator (torchvision's way), which is restored afterwards, so
        # augmenting in the main process (num_workers=0) leaves the training RNG (dropout, sampling) untouched
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, epoch, int(index)))
            for op in self.ops:
                img = op(img)
        return img
