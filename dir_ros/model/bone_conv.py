"""The first projection-fusion conv over the multi-plane bone features, without building
the planes.

Every bone plane is rank-structured: plane[b, (h,k,c), p] = sum_e w[b,h,k,e,p] f[b,h,k,e,c]
(hand h, bone k, end e in [parent, child], feature channel c, cell p; see projection.py).
A conv over those H*K*C planes therefore equals a conv over the H*K*2 scalar weight maps
with per-sample kernels G[b,o,(h,k,e),dy,dx] = sum_c W[o,(h,k,c),dy,dx] f[b,h,k,e,c]:
the same sums in another order. For the release (2560 planes -> 256 channels, 3x3, at
32x32) that is ~0.2 GMAC instead of ~6 GMAC, and the 10 MB plane tensor is never built.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .gemm_conv import capturing_graph


def shifted_columns(maps: torch.Tensor, kernel: tuple[int, int], padding: tuple[int, int]
                    ) -> torch.Tensor:
    """im2col of a stride-1 conv with zero padding, from slices (exports to plain ONNX ops).

    maps (B,M,H,W) -> (B, M*kh*kw, H'*W') ordered (map, dy, dx) like a conv weight's
    flattened (in, kh, kw) axes, H' = H + 2*ph - kh + 1 (likewise W')."""
    (kh, kw), (ph, pw) = kernel, padding
    if kh == kw == 1 and ph == pw == 0:
        return maps.flatten(2)
    padded = F.pad(maps, (pw, pw, ph, ph))
    out_h = maps.shape[2] + 2 * ph - kh + 1
    out_w = maps.shape[3] + 2 * pw - kw + 1
    cols = torch.stack([padded[:, :, dy:dy + out_h, dx:dx + out_w]
                        for dy in range(kh) for dx in range(kw)], dim=2)  # (B,M,kh*kw,H',W')
    return cols.flatten(1, 2).flatten(2)


def bone_plane_conv(end_weights: torch.Tensor, end_feats: torch.Tensor,
                    weight: torch.Tensor, bias: torch.Tensor | None,
                    padding: tuple[int, int], bone_blocks: int | None = None
                    ) -> torch.Tensor:
    """conv2d(planes, weight, bias, stride 1, zero padding) without building the planes.

    end_weights (B,H,K,2,S1,S2): per hand, bone and end, the scalar map of that end's
        weight (bone_end_weights reshaped to the grid);
    end_feats (B,H,K,2,C): the matching end features (bone_end_features);
    weight (O, H*K*C, kh, kw), bias (O,) | None: the dense conv, input channels ordered
        (hand, bone, channel) as the materialised planes are;
    bone_blocks: H*K as a plain int (from the caller's constants), for graph capture:
        the weight's block layout is then sized from constants alone, so exporters fold it
        into the graph instead of re-laying out the 6 M weights on every call;
    -> (B,O,S1',S2') in end_feats' dtype (the dense conv's output size for this padding).
    """
    _, hands, bones, ends, chans = end_feats.shape
    out_ch, in_ch, kh, kw = weight.shape
    if in_ch != hands * bones * chans:
        raise ValueError(f"conv weight has {in_ch} input channels, the planes have "
                         f"{hands}*{bones}*{chans} = {hands * bones * chans}")
    if bone_blocks is not None and bone_blocks != hands * bones:
        raise ValueError(f"bone_blocks {bone_blocks} != {hands}*{bones} (hands*bones)")
    if end_weights.shape[:4] != end_feats.shape[:4]:
        raise ValueError(f"end weights {tuple(end_weights.shape)} and end features "
                         f"{tuple(end_feats.shape)} disagree on (B,H,K,2)")
    # Per-sample kernels over the H*K*2 weight maps, ~12 M MAC: for each (h, k) that bone's
    # (B*2, C) end features times the (C, O*kh*kw) block of the weight.
    e = end_feats.permute(1, 2, 0, 3, 4).flatten(0, 1).flatten(1, 2)    # (H*K, B*2, C)
    if capturing_graph() and bone_blocks is not None:
        # One batched matmul over H*K on the weight laid out (H*K, C, O*kh*kw), sized from
        # the weight's own shape and the constant H*K so that the layout is folded into the
        # exported graph: OpenVINO runs the 40 products ~2x (fp32) to ~3x (bf16) faster than
        # the 10240 (O, H*K) broadcast products below, ONNX Runtime ~1.6x.
        per = in_ch // bone_blocks
        blocks = weight.to(end_feats.dtype).reshape(out_ch, bone_blocks, per, kh * kw)
        blocks = blocks.permute(1, 2, 0, 3).reshape(bone_blocks, per, out_ch * kh * kw)
        kernels = torch.matmul(e, blocks).unflatten(2, (out_ch, kh * kw))
        kernels = kernels.permute(2, 0, 1, 3)                           # (O,H*K,B*2,kh*kw)
    else:
        # Eagerly the weight is read in its own layout (a view; permuting its 6 M entries
        # on every call costs more than the products), the end features broadcast over o.
        w4 = weight.to(end_feats.dtype).reshape(out_ch, hands * bones, chans, kh * kw)
        kernels = torch.matmul(e.unsqueeze(0), w4)                      # (O,H*K,B*2,kh*kw)
    kernels = kernels.unflatten(2, (-1, ends)).permute(2, 0, 1, 3, 4).flatten(2)
    maps = end_weights.flatten(1, 3).to(kernels.dtype)                  # (B,H*K*2,S1,S2)
    cols = shifted_columns(maps, (kh, kw), padding)                     # (B,H*K*2*kh*kw,P)
    out = torch.matmul(kernels, cols.to(kernels.dtype))                 # (B,O,P)
    if bias is not None:
        out = out + bias.to(out.dtype)[:, None]
    out_h = maps.shape[2] + 2 * padding[0] - kh + 1
    out_w = maps.shape[3] + 2 * padding[1] - kw + 1
    return out.unflatten(2, (out_h, out_w))
