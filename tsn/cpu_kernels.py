"""CPU fast paths for two decoder ops, each equal to its reference op within float rounding.

On CPU, PyTorch's NCHW bilinear-resize kernel and oneDNN's 1x1 convolution with few output channels at full
resolution are far from what plain matrix products reach (BENCHMARKS.md). Both ops are matrix products in
disguise, so on CPU they run as such:

- bilinear resize with ``align_corners=True`` is separable: two small matrix products (1.5-2.7x faster for
  inputs up to 32 pixels a side). The interpolation matrices are dense, so the work per output pixel grows with
  the input side while the reference kernel's does not: from 64 pixels a side the reference is as fast or faster
  (0.3x at 256), so larger inputs take the reference op;
- a 1x1 convolution is ``W @ x`` per image: one batched matrix product (1.3-2.7x faster for the heads).

Elsewhere (CUDA, the meta device, CPU autocast, integer dtypes) the reference op runs. ``reference_ops()``
switches the fast paths off, for the equality tests and for FLOP counting (``torch.utils.flop_counter`` counts
the reference ops' math).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import torch
import torch.nn.functional as F

_FAST_DTYPES = (torch.float32, torch.float64)
MAX_MATMUL_RESIZE_SIDE = 48  # measured crossover: 32 px a side 1.6-2.7x faster, 64 px even (BENCHMARKS.md §7)
_enabled = True


@contextlib.contextmanager
def reference_ops() -> Iterator[None]:
    """Run the reference ops (``F.interpolate``, ``F.conv2d``) inside the block."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def _fast(x: torch.Tensor) -> bool:
    return _enabled and x.device.type == "cpu" and x.dtype in _FAST_DTYPES and not torch.is_autocast_enabled("cpu")


@lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n_out, n_in] weights of 1-D linear interpolation with align_corners=True (two non-zeros per row)."""
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    if n_in == 1 or n_out == 1:
        matrix[:, 0] = 1.0
        return matrix.to(dtype)
    src = torch.arange(n_out, dtype=torch.float64) * ((n_in - 1) / (n_out - 1))
    low = src.floor().long().clamp(max=n_in - 2)
    rows = torch.arange(n_out)
    matrix[rows, low] = 1.0 - (src - low)
    matrix[rows, low + 1] += src - low
    return matrix.to(dtype)


def bilinear_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``[B, C, H, W]`` to ``size`` with align_corners=True."""
    size = (int(size[0]), int(size[1]))
    if not _fast(x) or max(x.shape[-2:]) > MAX_MATMUL_RESIZE_SIDE:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    rows = interpolation_matrix(x.shape[-2], size[0], x.dtype)
    cols = interpolation_matrix(x.shape[-1], size[1], x.dtype)
    return torch.matmul(rows, torch.matmul(x, cols.T))


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1x1 ``weight`` of shape ``[K, C, 1, 1]``."""
    if not _fast(x) or weight.dtype != x.dtype:
        return F.conv2d(x, weight, bias)
    batch, channels, height, width = x.shape
    kernel = weight.view(1, weight.shape[0], channels).expand(batch, -1, -1)
    flat = x.reshape(batch, channels, height * width)
    if bias is None:
        out = torch.bmm(kernel, flat)
    else:
        out = torch.baddbmm(bias.view(1, -1, 1).expand(batch, -1, height * width), kernel, flat)
    return out.view(batch, weight.shape[0], height, width)
