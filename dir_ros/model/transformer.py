"""Interaction transformer over the 42 joint tokens (left hand then right hand)."""
from __future__ import annotations

import torch
from torch import nn

# LayerNorm eps of the blocks and of spatial_norm (release; the head keeps torch's 1e-5).
BLOCK_LN_EPS = 1e-6
# Std of the learnable token position embedding at init (ViT convention).
POS_EMBED_INIT_STD = 0.02


class Attention(nn.Module):
    """Multi-head self-attention with qkv bias, scale head_dim ** -0.5 (keys qkv, proj)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"token dim {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,D) -> (B,N,D)."""
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # scaled_dot_product_attention uses the same default scale, head_dim ** -0.5.
        out = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    """fc1, GELU, fc2 (keys fc1, fc2)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,D) -> (B,N,D)."""
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (keys norm1, attn, norm2, mlp)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,D) -> (B,N,D)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Interaction(nn.Module):
    """Tokens (B,N,D) -> features (B,N,Dout).

    enabled: position embedding + blocks[skip_first:] each followed by the shared
    spatial_norm, then head (LayerNorm + Linear). The release declares depth 4 and skips
    block 0 (its weights exist in the checkpoint but are never run): skip_first = 1.
    disabled (ablation): only the head, i.e. a per-token projection without interaction.
    """

    def __init__(self, num_tokens: int, dim: int, out_dim: int, enabled: bool = True,
                 depth: int = 4, skip_first: int = 1, num_heads: int = 4,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.enabled = enabled
        self.skip_first = skip_first
        if enabled:
            self.spatial_pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
            nn.init.trunc_normal_(self.spatial_pos_embed, std=POS_EMBED_INIT_STD)
            self.STEblocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio)
                                           for _ in range(depth))
            self.spatial_norm = nn.LayerNorm(dim, eps=BLOCK_LN_EPS)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B,N,D) -> (B,N,Dout)."""
        if self.enabled:
            x = x + self.spatial_pos_embed
            for blk in self.STEblocks[self.skip_first:]:
                x = self.spatial_norm(blk(x))
        return self.head(x)
