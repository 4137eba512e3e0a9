"""Decoder: coarse-to-fine refinement stages on the backbone pyramid + auxiliary heads."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .outputs import LevelOutput
from .refine import RefineBlock

# Output classes of the segmentation head: background, left hand, right hand.
SEG_CLASSES = 3
# Channels of the dense-correspondence colour head (RGB).
DENSE_CHANNELS = 3
# Hidden width of each auxiliary head (release: 128 for a 256-channel decoder).
AUX_HIDDEN_RATIO = 0.5
# Maximum number of refinement stages (one per backbone level c3, c2, c1).
MAX_STAGES = 3


class ConvBlock(nn.Module):
    """A biased conv under the key `conv` (the release wraps its convs this way)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in,H,W) -> (B,out,H,W)."""
        return self.conv(x)


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1(out/2)-BN-ReLU-3x3-BN-ReLU-1x1(out) + skip."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = out_ch // 2
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = ConvBlock(in_ch, mid, 1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = ConvBlock(mid, mid, 3)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = ConvBlock(mid, out_ch, 1)
        self.skip_layer = ConvBlock(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,in,H,W) -> (B,out,H,W)."""
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + (x if self.skip_layer is None else self.skip_layer(x))


def aux_head(in_ch: int, out_ch: int) -> nn.Sequential:
    """conv3x3 in->hidden, BN, ReLU, conv1x1 hidden->out (keys 0, 1, 3)."""
    hidden = int(in_ch * AUX_HIDDEN_RATIO)
    return nn.Sequential(nn.Conv2d(in_ch, hidden, 3, padding=1), nn.BatchNorm2d(hidden),
                         nn.ReLU(inplace=True), nn.Conv2d(hidden, out_ch, 1))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Bilinear x2 upsampling (torch default align_corners=False)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Decoder(nn.Module):
    """num_stages refinement stages; stage i (1-based) runs at input/2**(5-i) with the skip
    from c_(4-i) and is named with suffix 5-i (release: stage 1 `*4` at 16x16 with c3,
    stage 2 `*3` at 32x32 with c2; the optional stage 3 `*2` runs at 64x64 with c1).
    fusion_kernels[i]: kernel of stage i's projection fusion conv; the default 1x1 for the
    third stage keeps its 64x64 fusion of 2560 planes affordable when the planes are
    materialised (3x3 there alone would then cost ~48 GFLOPs, more than the whole release
    network; ~1.5 GFLOPs with the factorised conv of bone_conv.py)."""

    def __init__(self, backbone_channels: Sequence[int], input_size: int,
                 stage_hand_layers: Sequence[dict[str, nn.Module]], *, channels: int = 256,
                 aux_heads: bool = True, distance_per_cell: float = 1.0 / 16,
                 fusion_kernels: Sequence[int] = (3, 3, 1), **block_kwargs) -> None:
        super().__init__()
        self.num_stages = len(stage_hand_layers)
        if self.num_stages > MAX_STAGES:
            raise ValueError(f"at most {MAX_STAGES} refinement stages, got {self.num_stages}")
        self.suffixes = [str(5 - i) for i in range(1, self.num_stages + 1)]
        prev_ch = backbone_channels[3]
        for i, sfx in enumerate(self.suffixes, start=1):
            size = input_size // 2 ** (5 - i)
            setattr(self, f"skip_layer{sfx}", Residual(backbone_channels[3 - i], channels))
            setattr(self, f"fusion_layer{sfx}", Residual(prev_ch + channels, channels))
            block = RefineBlock(size, channels, stage_hand_layers[i - 1],
                                distance=size * distance_per_cell,
                                fusion_kernel=int(fusion_kernels[i - 1]), **block_kwargs)
            setattr(self, f"projecter_{sfx}", block)
            setattr(self, f"enhance_layer{sfx}", Residual(channels + block.out_channels,
                                                          channels))
            prev_ch = channels
        self.aux_heads = aux_heads and self.num_stages > 0
        if self.aux_heads:
            self.conv_final = nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
                nn.Conv2d(channels, channels, 1))
            self.seg = aux_head(channels, SEG_CLASSES)
            self.dense = aux_head(channels, DENSE_CHANNELS)

    def stage(self, i: int, x: torch.Tensor, skip_feat: torch.Tensor, level: LevelOutput
              ) -> tuple[torch.Tensor, LevelOutput]:
        """Refinement stage i (1-based): previous map x (B,C',s,s), backbone skip c_(4-i)
        (B,Ci,2s,2s), previous level -> (enhanced map (B,C,2s,2s), new level)."""
        sfx = self.suffixes[i - 1]
        skip = getattr(self, f"skip_layer{sfx}")(skip_feat)
        fused = getattr(self, f"fusion_layer{sfx}")(torch.cat([upsample2(x), skip], 1))
        level, projected = getattr(self, f"projecter_{sfx}")(fused, level)
        enh_in = fused if projected is None else torch.cat([fused, projected], 1)
        return getattr(self, f"enhance_layer{sfx}")(enh_in), level

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aux heads on the last stage's map x (B,C,h,w) -> (seg logits (B,3,h,w),
        dense (B,3,h,w)); only when aux_heads."""
        x = self.conv_final(x)
        return self.seg(x), self.dense(x)

    def forward(self, feats: Sequence[torch.Tensor], init: LevelOutput
                ) -> tuple[list[LevelOutput], torch.Tensor | None, torch.Tensor | None]:
        """feats [c1..c4], init level -> (stage levels, seg logits | None, dense | None)."""
        x, level, levels = feats[3], init, []
        for i in range(1, self.num_stages + 1):
            x, level = self.stage(i, x, feats[3 - i], level)
            levels.append(level)
        if not self.aux_heads:
            return levels, None, None
        return (levels, *self.heads(x))
