"""Input normalisation of the DIR network (ImageNet statistics, as in the release)."""
from __future__ import annotations

import torch

# ImageNet channel statistics (RGB, for values in [0, 1]); the release normalises with these.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# 8-bit colour range.
UINT8_MAX = 255.0


def normalize_image(rgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Turn RGB images (B,H,W,3) or (B,3,H,W), uint8 0..255 or float 0..255, into the
    network input: float (B,3,H,W), /255 then ImageNet mean/std.

    The layout is detected from the channel axis (last axis of size 3 -> channels-last).
    """
    if rgb.dim() == 3:
        rgb = rgb.unsqueeze(0)
    if rgb.dim() != 4:
        raise ValueError(f"expected (B,H,W,3) or (B,3,H,W), got shape {tuple(rgb.shape)}")
    if rgb.shape[-1] == 3 and rgb.shape[1] != 3:
        rgb = rgb.permute(0, 3, 1, 2)
    elif rgb.shape[1] != 3:
        raise ValueError(f"no RGB channel axis of size 3 in shape {tuple(rgb.shape)}")
    x = rgb.to(dtype) / UINT8_MAX
    mean = torch.tensor(IMAGENET_MEAN, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=dtype, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()
