"""Eager CPU convolution as im2col + one GEMM, for convs whose weight dwarfs their input.

The init regressor's attention heads open with 3x3 convs 2048 -> 1024 on an 8x8 map: 75 MB
of weights for 64 output positions. Eager oneDNN (mkldnn) re-lays such a weight out on
every call into a fresh 75 MB buffer. With glibc's default allocator that buffer comes from
fresh mmap and page-faults on every call (~30 ms per conv on the 2-core AMD EPYC, where
im2col + a BLAS GEMM on the weight as it lies takes ~14 ms, and needs no such buffer). When
the process keeps freed blocks (dir_ros.common.machine.reuse_freed_memory, as the benchmarks do) the
plain convs are faster instead: 24.9 ms for both against 42.1 ms as GEMMs
(benchmarks/benchmark_stages.py). Exporters and compilers pre-pack weights once, so they keep
the plain conv: this path is for eager CPU runs only.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def capturing_graph() -> bool:
    """True while the ONNX exporter, torch.export or torch.compile records the forward: a
    graph whose constant weights are laid out once (folded), not on every call."""
    return (torch.jit.is_tracing() or torch.compiler.is_compiling()
            or torch.compiler.is_exporting())


def eager_cpu(x: torch.Tensor) -> bool:
    """True when x is on the CPU and the code runs eagerly (no graph capture), i.e. where
    conv2d_gemm pays off."""
    return x.device.type == "cpu" and not capturing_graph()


def conv2d_gemm(x: torch.Tensor, conv: nn.Conv2d,
                columns: torch.Tensor | None = None) -> torch.Tensor:
    """conv(x) for a stride-1, undilated, ungrouped, zero-padded conv, as W (O, I*kh*kw)
    times the im2col columns of x: x (B,I,H,W) -> (B,O,H',W'), the same sums in another
    order. columns: F.unfold(x, kernel, padding=...) when already computed (several convs
    sharing one input, e.g. the two attention heads)."""
    plain = (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
             and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))
    if not plain:
        raise ValueError(f"conv2d_gemm needs a stride-1, undilated, ungrouped conv with zero "
                         f"padding, got {conv}")
    kh, kw = conv.kernel_size
    (ph, pw), (h, w) = conv.padding, x.shape[-2:]
    if columns is None:
        columns = F.unfold(x, (kh, kw), padding=(ph, pw))               # (B, I*kh*kw, H'*W')
    out = torch.matmul(conv.weight.flatten(1), columns)                 # (B, O, H'*W')
    if conv.bias is not None:
        out = out + conv.bias.to(out.dtype)[:, None]
    return out.unflatten(2, (h + 2 * ph - kh + 1, w + 2 * pw - kw + 1))
