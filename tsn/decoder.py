"""The paper's U-Net decoder, one class for every architecture (the norm is an argument).

O5 = A(F5);  O_j = A([u(O_{j+1}), A(F_j)]) for j = 4..1;  out = A(u(O1)) at full resolution.
u is bilinear upsampling with align_corners=True (a matrix-product fast path on CPU, tsn/cpu_kernels.py); the concatenation order is [upsampled, skip].
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .cpu_kernels import bilinear_resize
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
    def scaled(cls, multiplier: float) -> DecoderWidths:
        """The paper's widths times ``multiplier`` (1.0 = the paper)."""
        if multiplier <= 0:
            raise ValueError(f"decoder width multiplier must be > 0, got {multiplier}")

        def scale(c: int) -> int:
            return max(1, round(c * multiplier))

        return cls(tuple(map(scale, PAPER_SKIP_WIDTHS)), tuple(map(scale, PAPER_UP_WIDTHS)), scale(PAPER_OUT_WIDTH))


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return bilinear_resize(x, like.shape[-2:])


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
        out = bilinear_resize(out, out_size)
        return self.full(out, ctx)
