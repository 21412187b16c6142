"""The paper's U-Net decoder, one class for every architecture (the norm is an argument).

O5 = A(F5);  O_j = A([u(O_{j+1}), A(F_j)]) for j = 4..1;  out = A(u(O1)) at full resolution.
u is bilinear upsampling with align_corners=True; the concatenation order is [upsampled, skip].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConditionedBlock, TaskContext

# The paper's widths (ResNet-18): skip outputs for F1..F5, then O1..O4, then the full-resolution block.
PAPER_SKIP_WIDTHS = (64, 64, 128, 256, 512)
PAPER_UP_WIDTHS = (128, 256, 256, 512)
PAPER_OUT_WIDTH = 64


@dataclass(frozen=True)
class DecoderWidths:
    skip: tuple[int, ...]  # A(F_j) output channels, j = 1..5 (skip5 is O5)
    up: tuple[int, ...]  # O_j output channels, j = 1..4
    out: int  # the full-resolution block

    @classmethod
    def scaled(cls, multiplier: float) -> "DecoderWidths":
        """The paper's widths times ``multiplier`` (1.0 = the paper)."""
        if multiplier <= 0:
            raise ValueError(f"decoder width multiplier must be > 0, got {multiplier}")

        def scale(c: int) -> int:
            return max(1, round(c * multiplier))

        return cls(
            tuple(map(scale, PAPER_SKIP_WIDTHS)), tuple(map(scale, PAPER_UP_WIDTHS)), scale(PAPER_OUT_WIDTH)
        )


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


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with align_corners=True.

    On CPU it runs as two small matrix products (bilinear is separable), which is 1.5-4x faster than
    ``F.interpolate``'s NCHW kernel there (that one converts to channels-last and back) and equal to it within
    float rounding (tests/test_bench.py); elsewhere (CUDA, meta for FLOP counting) it is ``F.interpolate``.
    """
    size = (int(size[0]), int(size[1]))
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or torch.is_autocast_enabled("cpu"):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    rows = interpolation_matrix(x.shape[-2], size[0], x.dtype)
    cols = interpolation_matrix(x.shape[-1], size[1], x.dtype)
    return torch.matmul(rows, torch.matmul(x, cols.T))


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return upsample(x, like.shape[-2:])


class Decoder(nn.Module):
    """Maps encoder features F1..F5 to a full-resolution feature map of ``widths.out`` channels."""

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        widths: DecoderWidths,
        norm: str,
        num_tasks: int,
        embedding_dim: int = 0,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()

        def block(cin: int, cout: int, kernel: int) -> ConditionedBlock:
            return ConditionedBlock(cin, cout, kernel, norm, num_tasks, embedding_dim, activation)

        self.skips = nn.ModuleList(block(c, w, 1) for c, w in zip(encoder_channels, widths.skip))
        # ups[j] produces O_{j+1} from [u(O_{j+2}), A(F_{j+1})]; O5 is skips[4].
        above = (*widths.up[1:], widths.skip[4])
        self.ups = nn.ModuleList(block(a + s, w, 3) for a, s, w in zip(above, widths.skip[:4], widths.up))
        self.full = block(widths.up[0], widths.out, 3)
        self.out_channels = widths.out

    def forward(self, features: list[torch.Tensor], ctx: TaskContext, out_size: tuple[int, int]) -> torch.Tensor:
        out = self.skips[4](features[4], ctx)
        for j in range(3, -1, -1):
            skip = self.skips[j](features[j], ctx)
            out = self.ups[j](torch.cat([upsample_to(out, skip), skip], dim=1), ctx)
        out = upsample(out, out_size)
        return self.full(out, ctx)
