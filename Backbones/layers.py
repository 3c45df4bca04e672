"""Small building blocks shared by the backbones."""
from __future__ import annotations

from collections import OrderedDict

import torch.nn as nn

__all__ = ["ConvBN", "init_weights"]


class ConvBN(nn.Sequential):
    """Conv (no bias) + BatchNorm, followed by PReLU unless `linear` (MobileNetV2's linear bottleneck output)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, linear: bool = False):
        layers = [("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False)),
                  ("bn", nn.BatchNorm2d(out_ch))]
        if not linear:
            layers.append(("prelu", nn.PReLU(out_ch)))
        super().__init__(OrderedDict(layers))


def init_weights(model: nn.Module) -> None:
    """He init for convolutions and linears (fan_out, as in torchvision's ResNet), unit BN."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
