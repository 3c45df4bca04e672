"""ResNet-IR and SE-ResNet-IR (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
CVPR 2019, https://arxiv.org/abs/1801.07698, Sec. 3 and Fig. 7 "improved residual unit").

The IR unit is BN-conv3x3-BN-PReLU-conv3x3-BN with the stride in the second convolution; the output layer is
BN-dropout-FC-BN ("option E" of the paper), keeping the spatial layout in the FC instead of global pooling.
SE-ResNet-IR is the same network with a squeeze-and-excitation gate (Hu et al. 2018) at the end of each unit.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .checkpointing import run_blocks
from .layers import init_weights
from .registry import register_backbone

__all__ = ["IResNet", "IRBlock", "SEModule", "IRESNET_DEPTHS"]

# Units per stage (channels 64, 128, 256, 512), as in insightface's iresnet / InsightFace_Pytorch.
IRESNET_DEPTHS: dict[int, list[int]] = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 14, 3],
    100: [3, 13, 30, 3],
    152: [3, 8, 36, 3],
    200: [6, 26, 60, 6],  # insightface's iresnet200
}


class SEModule(nn.Module):
    """Squeeze-and-excitation: channel gates from globally pooled features (reduction 16)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


class IRBlock(nn.Module):
    """Improved residual unit: BN-conv-BN-PReLU-conv(stride)-BN [-SE], plus a 1x1 projection when shapes change."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, use_se: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = SEModule(out_ch) if use_se else None
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        if self.se is not None:
            out = self.se(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """ResNet-IR / SE-ResNet-IR.

    Args:
        depth: a key of IRESNET_DEPTHS (18, 34, 50, 100, 152, 200).
        use_se: add a squeeze-and-excitation gate to every unit (SE-ResNet-IR).
        embedding_size: output dimension (512 in the papers).
        input_size: (height, width), multiples of 16; the FC sees a 512 x H/16 x W/16 map.
        dropout: dropout probability before the FC (insightface: 0 for large sets, 0.4 for CASIA-sized ones).
    """

    default_embedding_size = 512

    def __init__(self, depth: int, use_se: bool = False, embedding_size: int = 512,
                 input_size: tuple[int, int] = (112, 112), dropout: float = 0.0):
        super().__init__()
        if depth not in IRESNET_DEPTHS:
            raise ValueError(f"IResNet depth must be one of {sorted(IRESNET_DEPTHS)}, got {depth}")
        h, w = input_size
        if h % 16 or w % 16:
            raise ValueError(f"IResNet input_size must be multiples of 16, got {input_size}")
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU(64)
        in_ch = 64
        for i, (units, out_ch) in enumerate(zip(IRESNET_DEPTHS[depth], (64, 128, 256, 512)), start=1):
            layer = [IRBlock(in_ch if j == 0 else out_ch, out_ch, 2 if j == 0 else 1, use_se) for j in range(units)]
            self.add_module(f"layer{i}", nn.Sequential(*layer))
            in_ch = out_ch
        self.bn2 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(512 * (h // 16) * (w // 16), embedding_size)
        self.features = nn.BatchNorm1d(embedding_size)
        self.embedding_size = embedding_size
        self.activation_checkpointing = False  # per unit; Backbones.build_backbone sets it from the config
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        units = [unit for layer in (self.layer1, self.layer2, self.layer3, self.layer4) for unit in layer]
        x = run_blocks(units, x, self.activation_checkpointing)
        x = self.dropout(self.bn2(x)).flatten(1)
        return self.features(self.fc(x))


def _register(name: str, depth: int, use_se: bool) -> None:
    @register_backbone(name, activation_checkpointing=True)
    def build(embedding_size: int = 0, input_size=(112, 112), dropout: float = 0.0) -> IResNet:
        return IResNet(depth, use_se, embedding_size or IResNet.default_embedding_size, input_size, dropout)


for _depth in (18, 34, 50, 100, 152, 200):
    _register(f"ResNet{_depth}_IR", _depth, use_se=False)
for _depth in (50, 100, 152):
    _register(f"SEResNet{_depth}_IR", _depth, use_se=True)
