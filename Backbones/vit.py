"""A face Vision Transformer at insightface's published sizes (arcface_torch's vit_t / vit_s / vit_b; Dosovitskiy et
al., ICLR 2021, https://arxiv.org/abs/2010.11929, applied to 112x112 crops with 9x9 patches).

Unlike the classification ViT there is no class token and no pooling: the normalised tokens of all 144 patches are
flattened into a bias-free FC (the face nets' "option E" head: the layout of the face matters), then
BN-FC-BN to the embedding. During training a random 10% of the patch tokens skip the encoder and come back as a
learned mask token before the FC (insightface's recipe, a regulariser against relying on any one region).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpointing import run_blocks
from .registry import register_backbone

__all__ = ["FaceViT", "VIT_SIZES"]

# name: (embed dim, depth, heads), arcface_torch's get_model; all use patch 9, MLP ratio 4, drop path 0.1
VIT_SIZES: dict[str, tuple[int, int, int]] = {"vit_t": (256, 12, 8), "vit_s": (512, 12, 8), "vit_b": (512, 24, 8)}


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability p (rescaled by 1 / (1 - p))."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


class Block(nn.Module):
    """Pre-norm encoder block: x + attn(LN(x)), then x + MLP(LN(x)); bias-free QKV and ReLU6 as insightface."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU6(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        x = x + self.drop_path(self.proj(attn))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class FaceViT(nn.Module):
    """ViT face backbone.

    Args:
        dim, depth, heads: transformer width, blocks and attention heads (VIT_SIZES).
        embedding_size: output dimension (512 as insightface).
        input_size: (H, W); the patch grid is (H // patch, W // patch) (112 -> 12: the last 4 pixels unused).
        patch: patch side (9).
        mlp_ratio: MLP hidden width / dim (4).
        drop_path: stochastic-depth rate of the last block (linear from 0).
        mask_ratio: fraction of patch tokens masked during training (0.1).
        dropout: dropout before the embedding FC (the config's `dropout`, as for the IR nets).
    """

    def __init__(self, dim: int, depth: int, heads: int, embedding_size: int = 512,
                 input_size: tuple[int, int] = (112, 112), patch: int = 9, mlp_ratio: float = 4.0,
                 drop_path: float = 0.1, mask_ratio: float = 0.1, dropout: float = 0.0):
        super().__init__()
        gh, gw = input_size[0] // patch, input_size[1] // patch
        if gh < 1 or gw < 1:
            raise ValueError(f"FaceViT: input_size {tuple(input_size)} is smaller than one {patch}x{patch} patch")
        self.num_patches = gh * gw
        self.mask_ratio = float(mask_ratio)
        self.patch_embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        rates = [drop_path * i / max(1, depth - 1) for i in range(depth)]  # python: builds on the meta device too
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(dim)
        self.features = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim * self.num_patches, dim, bias=False),
                                      nn.BatchNorm1d(dim, eps=2e-5), nn.Linear(dim, embedding_size, bias=False),
                                      nn.BatchNorm1d(embedding_size, eps=2e-5))
        self.embedding_size = embedding_size
        self.activation_checkpointing = False  # per block; Backbones.build_backbone sets it from the config
        self._init()

    def _init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed  # (N, T, D)
        n, t, d = x.shape
        keep = None
        if self.training and self.mask_ratio > 0:
            # per sample, a random subset of tokens goes through the encoder; the rest return as mask tokens
            n_keep = max(1, int(t * (1 - self.mask_ratio)))
            keep = torch.rand(n, t, device=x.device).argsort(dim=1)[:, :n_keep]
            x = x.gather(1, keep[:, :, None].expand(-1, -1, d))
        x = self.norm(run_blocks(self.blocks, x, self.activation_checkpointing))
        if keep is not None:
            full = self.mask_token.to(x.dtype).expand(n, t, d).clone()
            x = full.scatter(1, keep[:, :, None].expand(-1, -1, d), x)
        return self.features(x.reshape(n, t * d))


def _register(name: str) -> None:
    dim, depth, heads = VIT_SIZES[name]

    @register_backbone(name, activation_checkpointing=True)
    def build(embedding_size: int = 0, input_size=(112, 112), dropout: float = 0.0) -> FaceViT:
        return FaceViT(dim, depth, heads, embedding_size or 512, input_size, dropout=dropout)


for _name in VIT_SIZES:
    _register(_name)
