"""The augmentation ops by name: each builder takes (probability, strength, input (H, W)) and returns a callable on a
uint8 (3, H, W) tensor that draws its randomness from torch's global generator (seeded per sample by the pipeline).

torchvision.transforms.v2 does the work; it is imported when an op is built, so listing the names stays cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from Utils.registry import Registry

__all__ = ["AugmentOp", "register_op", "list_ops", "get_op", "build_op", "OP_HELP"]

Op = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AugmentOp:
    """A registered op: its builder, the strength used when a spec gives none, and what strength means."""
    build: Callable[[float, float, tuple[int, int]], Op]
    default_strength: float
    help: str


_OPS: Registry[AugmentOp] = Registry("augment op")
OP_HELP: dict[str, str] = {}


def register_op(name: str, default_strength: float, help: str) -> Callable:
    def wrap(build: Callable[[float, float, tuple[int, int]], Op]) -> Callable:
        _OPS.add(name, AugmentOp(build, default_strength, help))
        OP_HELP[name] = help
        return build
    return wrap


def list_ops() -> list[str]:
    return _OPS.names()


def get_op(name: str) -> AugmentOp:
    return _OPS.get(name)


def build_op(name: str, p: float, strength: float, input_hw: tuple[int, int]) -> Op:
    return _OPS.get(name).build(p, strength, input_hw)


def _with_probability(p: float, op: Op) -> Op:
    # one draw decides, then the op draws its own parameters: the same order of draws whatever p is
    def apply(img: torch.Tensor) -> torch.Tensor:
        return op(img) if float(torch.rand(())) < p else img
    return apply


@register_op("flip", 0.0, "horizontal mirror (strength unused); the only op before augment existed")
def _flip(p, strength, input_hw):
    from torchvision.transforms.v2 import functional as TF
    return _with_probability(p, TF.horizontal_flip)


@register_op("crop", 0.2, "random resized crop keeping 1 - strength .. 1 of the area, aspect 3/4 .. 4/3")
def _crop(p, strength, input_hw):
    from torchvision.transforms import v2
    scale = (max(0.05, 1.0 - strength), 1.0)
    return _with_probability(p, v2.RandomResizedCrop(input_hw, scale=scale, ratio=(3 / 4, 4 / 3), antialias=True))


@register_op("jitter", 0.3, "colour jitter: brightness, contrast and saturation by +-strength, hue by +-strength/4")
def _jitter(p, strength, input_hw):
    from torchvision.transforms import v2
    return _with_probability(p, v2.ColorJitter(strength, strength, strength, min(0.5, strength / 4)))


@register_op("grey", 0.0, "greyscale, kept as 3 channels (strength unused)")
def _grey(p, strength, input_hw):
    from torchvision.transforms.v2 import functional as TF
    return _with_probability(p, lambda img: TF.rgb_to_grayscale(img, num_output_channels=3))


@register_op("blur", 0.5, "Gaussian blur, sigma drawn in 0.1 .. 0.1 + 3 * strength pixels")
def _blur(p, strength, input_hw):
    from torchvision.transforms import v2
    sigma_max = 0.1 + 3.0 * strength
    kernel = 2 * math.ceil(3 * sigma_max) + 1  # covers +-3 sigma of the widest blur
    return _with_probability(p, v2.GaussianBlur(kernel, sigma=(0.1, sigma_max)))


@register_op("lowres", 0.8, "AdaFace's low-resolution step: down to a side ratio in 1 - strength .. 1 (nearest, "
                            "bilinear or bicubic, drawn), then back up")
def _lowres(p, strength, input_hw):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF
    modes = (InterpolationMode.NEAREST, InterpolationMode.BILINEAR, InterpolationMode.BICUBIC)
    low = max(0.05, 1.0 - strength)

    def down_up(img: torch.Tensor) -> torch.Tensor:
        ratio = low + (1.0 - low) * float(torch.rand(()))
        mode = modes[int(torch.randint(len(modes), ()))]
        h, w = img.shape[-2:]
        small = TF.resize(img, [max(1, round(h * ratio)), max(1, round(w * ratio))], interpolation=mode,
                          antialias=mode != InterpolationMode.NEAREST)
        return TF.resize(small, [h, w], interpolation=mode, antialias=False)
    return _with_probability(p, down_up)


@register_op("erase", 0.2, "random erasing: a black occlusion patch of 2% .. strength of the area")
def _erase(p, strength, input_hw):
    from torchvision.transforms import v2
    # RandomErasing's own probability stays 1: p is applied like every other op's
    return _with_probability(p, v2.RandomErasing(p=1.0, scale=(0.02, max(0.02, strength)), value=0))
