"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification on Mobile
Devices", 2018, https://arxiv.org/abs/1804.07573), in the layout of the original project (Pytorch_Face_Recognition,
after Face_Pytorch).

Input (N, 3, H, W) with H, W multiples of 16 (112x112, or 112x96 for SphereFace-style crops); output (N, D).
The global depthwise convolution (GDC) covers the whole final (H/16, W/16) map instead of average pooling, so that
each spatial position gets its own weight - the paper's argument for face crops, where the centre matters more.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvBN, init_weights
from .registry import register_backbone

__all__ = ["MobileFaceNet", "Bottleneck"]

# Inverted-residual stages of the paper's Table 1: (expansion t, output channels c, repeats n, first stride s).
MOBILEFACENET_STAGES = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand, 3x3 depthwise (carries the stride), linear 1x1 project."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int):
        super().__init__()
        hidden = in_ch * expansion
        self.residual = stride == 1 and in_ch == out_ch
        self.expand = ConvBN(in_ch, hidden, 1)
        self.depthwise = ConvBN(hidden, hidden, 3, stride, 1, groups=hidden)
        self.project = ConvBN(hidden, out_ch, 1, linear=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class MobileFaceNet(nn.Module):
    """MobileFaceNet.

    Args:
        embedding_size: output dimension (the original project's default 128; 512 as in insightface's variant).
        input_size: (height, width) of the input; sets the global depthwise kernel to (H/16, W/16).
    """

    default_embedding_size = 128

    def __init__(self, embedding_size: int = 128, input_size: tuple[int, int] = (112, 112)):
        super().__init__()
        h, w = input_size
        if h % 16 or w % 16:
            raise ValueError(f"MobileFaceNet input_size must be multiples of 16, got {input_size}")
        self.conv1 = ConvBN(3, 64, 3, 2, 1)
        self.conv2_dw = ConvBN(64, 64, 3, 1, 1, groups=64)
        blocks, in_ch = [], 64
        for t, c, n, s in MOBILEFACENET_STAGES:
            for i in range(n):
                blocks.append(Bottleneck(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        self.blocks = nn.Sequential(*blocks)
        self.conv_expand = ConvBN(in_ch, 512, 1)
        self.gdc = ConvBN(512, 512, (h // 16, w // 16), groups=512, linear=True)
        self.embedding = ConvBN(512, embedding_size, 1, linear=True)
        self.embedding_size = embedding_size
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv2_dw(self.conv1(x)))
        x = self.embedding(self.gdc(self.conv_expand(x)))
        return x.flatten(1)


@register_backbone("MobileFaceNet")
def mobilefacenet(embedding_size: int = 0, input_size=(112, 112), dropout: float = 0.0) -> MobileFaceNet:
    return MobileFaceNet(embedding_size or MobileFaceNet.default_embedding_size, input_size)
