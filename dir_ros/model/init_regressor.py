"""Initial regressor: per-hand attention pooling of c4 -> 64 hand parameters, plus offset."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dir_ros.hand_model import NUM_PARAMS

from .gemm_conv import conv2d_gemm, eager_cpu
from .outputs import LevelOutput, hand_prediction

# Added to the attention normaliser (release value) so an all-zero map cannot divide by 0.
ATTENTION_EPS = 1e-8
# Std of the release's Linear-weight initialisation.
LINEAR_INIT_STD = 1e-3


def _attention_head(channels: int) -> nn.Sequential:
    """conv3x3 C->C/2, BN, ReLU, conv1x1 C/2->1, sigmoid (keys 0, 1, 3)."""
    hidden = channels // 2
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1), nn.Sigmoid())


def release_init_(module: nn.Module) -> None:
    """Release init: conv N(0, sqrt(2/(k*k*out))), Linear N(0, 1e-3) bias 0, BN 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, LINEAR_INIT_STD)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class InitRegressor(nn.Module):
    """c4 (B,C,h,w) -> LevelOutput 0 (parameters, mesh, joints, projections, offset).

    gemm_attention: in eager CPU runs, compute the attention heads' first convs as GEMMs
    (same result; False = plain convs, the release's computation and speed baseline)."""

    def __init__(self, in_channels: int, hand_layers: dict[str, nn.Module],
                 gemm_attention: bool = True) -> None:
        super().__init__()
        self.gemm_attention = bool(gemm_attention)
        # Registration order fixes the state-dict order of the release checkpoint.
        self.mano_layer_right = hand_layers["right"]
        self.mano_layer_left = hand_layers["left"]
        self.attention_left = _attention_head(in_channels)
        self.attention_right = _attention_head(in_channels)
        self.offset = nn.Linear(in_channels, 3)
        self.mano_left = nn.Linear(in_channels, NUM_PARAMS)
        self.mano_right = nn.Linear(in_channels, NUM_PARAMS)
        for m in (self.attention_left, self.attention_right, self.offset, self.mano_left,
                  self.mano_right):
            release_init_(m)

    @staticmethod
    def _pool(feat: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Attention-weighted spatial mean: feat (B,C,h,w), attn (B,1,h,w) -> (B,C).

        Computed in float32 (1e-8 underflows in fp16), returned in feat's dtype."""
        f, a = feat.float(), attn.float()
        return ((f * a).sum((2, 3)) / (a.sum((2, 3)) + ATTENTION_EPS)).to(feat.dtype)

    def attention_maps(self, c4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """c4 (B,C,h,w) -> (left, right) attention (B,1,h,w) in [0,1]. In eager CPU runs
        the heads' first convs share one im2col and run as GEMMs (gemm_conv.py: ~2x faster
        for these 2048 -> 1024 3x3 convs at 8x8 under glibc's default allocator, slower when
        the process keeps freed blocks); elsewhere the plain heads."""
        heads = (self.attention_left, self.attention_right)
        if not (self.gemm_attention and eager_cpu(c4)):
            return heads[0](c4), heads[1](c4)
        first = heads[0][0]
        columns = F.unfold(c4, first.kernel_size, padding=first.padding)
        maps = []
        for head in heads:
            x = conv2d_gemm(c4, head[0], columns)
            for layer in list(head)[1:]:
                x = layer(x)
            maps.append(x)
        return maps[0], maps[1]

    def forward(self, c4: torch.Tensor) -> LevelOutput:
        """c4 (B,C,h,w) -> initial LevelOutput."""
        attn_left, attn_right = self.attention_maps(c4)
        f_left = self._pool(c4, attn_left)
        f_right = self._pool(c4, attn_right)
        offset = self.offset(c4.mean((2, 3)))
        left = hand_prediction(self.mano_layer_left, self.mano_left(f_left))
        right = hand_prediction(self.mano_layer_right, self.mano_right(f_right))
        return LevelOutput(left=left, right=right, offset=offset)
