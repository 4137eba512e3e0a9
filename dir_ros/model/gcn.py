"""Skeleton graph convolution (per-node weights, softmax-normalised learnable adjacency)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dir_ros.hand_model import BONE_PARENTS, NUM_KEYPOINTS

# Value given to non-edges before the row softmax (release constant).
MASKED_LOGIT = -9e15
# Xavier gain of the per-node weights (sqrt(2), as in semantic graph convolutions).
WEIGHT_GAIN = 1.414


def skeleton_masks(parents: Sequence[int] = BONE_PARENTS,
                   num_nodes: int = NUM_KEYPOINTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (N,N) masks: self loops (identity) and one-hop bone edges (both directions).

    parents[i] is the parent of node i + 1 (node 0 is the root).
    """
    self_mask = torch.eye(num_nodes, dtype=torch.bool)
    edge_mask = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    for child, parent in enumerate(parents, start=1):
        edge_mask[child, parent] = True
        edge_mask[parent, child] = True
    return self_mask, edge_mask


def mask_positions(mask: torch.Tensor) -> torch.Tensor:
    """(E,) int64 flat row-major positions of mask's True entries (computed once at init,
    so that the forward has no data-dependent count)."""
    return mask.reshape(-1).nonzero().reshape(-1)


def masked_softmax_adjacency(values: torch.Tensor, mask: torch.Tensor,
                             positions: torch.Tensor | None = None) -> torch.Tensor:
    """Place values (1,E) at mask's True entries in row-major order, others MASKED_LOGIT,
    then softmax each row -> (N,N) float32 row-stochastic matrix.

    positions: mask_positions(mask), precomputed (a scatter at fixed positions exports
    cleanly, where masked_scatter's count depends on the mask's data)."""
    if positions is None:
        positions = mask_positions(mask)
    logits = torch.full((mask.numel(),), MASKED_LOGIT, dtype=torch.float32,
                        device=values.device)
    logits = logits.scatter(0, positions, values.float().reshape(-1)).reshape(mask.shape)
    return torch.softmax(logits, dim=1)


class SkeletonGraphConv(nn.Module):
    """out_i = sum_j A0_ij x_j W0_j + sum_j A1_ij x_j W1_j + bias, x (B,N,Cin) -> (B,N,Cout).

    A0 = softmax over the self loop only (always the identity, so e_0 has no effect;
    kept because the release checkpoint carries it), A1 = softmax over bone neighbours.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 parents: Sequence[int] = BONE_PARENTS) -> None:
        super().__init__()
        self_mask, edge_mask = skeleton_masks(parents, len(parents) + 1)
        n = self_mask.shape[0]
        self.register_buffer("self_mask", self_mask, persistent=False)
        self.register_buffer("edge_mask", edge_mask, persistent=False)
        self.register_buffer("self_positions", mask_positions(self_mask), persistent=False)
        self.register_buffer("edge_positions", mask_positions(edge_mask), persistent=False)
        bound = WEIGHT_GAIN * math.sqrt(6.0 / (in_channels + out_channels))
        self.W = nn.Parameter(torch.empty(2, n, in_channels, out_channels).uniform_(-bound, bound))
        self.e_0 = nn.Parameter(torch.ones(1, int(self_mask.sum())))
        self.e_1 = nn.Parameter(torch.ones(1, int(edge_mask.sum())))
        stdv = 1.0 / math.sqrt(out_channels)
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-stdv, stdv))

    def adjacencies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A0, A1), each (N,N) float32, rows summing to 1."""
        return (masked_softmax_adjacency(self.e_0, self.self_mask, self.self_positions),
                masked_softmax_adjacency(self.e_1, self.edge_mask, self.edge_positions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,Cin) -> (B,N,Cout)."""
        w = self.W
        h0 = torch.einsum("bnc,ncd->bnd", x, w[0])
        h1 = torch.einsum("bnc,ncd->bnd", x, w[1])
        a0, a1 = self.adjacencies()
        return (torch.matmul(a0.to(h0.dtype), h0) + torch.matmul(a1.to(h1.dtype), h1)
                + self.bias.to(h0.dtype))


class GCNLayer(nn.Module):
    """Graph conv + BatchNorm1d + ReLU (keys gconv, bn)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gconv = SkeletonGraphConv(channels, channels)
        self.bn = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,C) -> (B,N,C)."""
        return torch.relu(self.bn(self.gconv(x).transpose(1, 2)).transpose(1, 2))


class SkeletonGCN(nn.Module):
    """Stack of GCN layers without residuals (key gconv_layers.i)."""

    def __init__(self, channels: int, num_layers: int = 4) -> None:
        super().__init__()
        self.gconv_layers = nn.ModuleList(GCNLayer(channels) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,C) -> (B,N,C)."""
        for layer in self.gconv_layers:
            x = layer(x)
        return x
