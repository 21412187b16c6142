"""Building blocks: equalised-lr linear, PixelNorm, the task-embedding network C, and the decoder's norms.

Every decoder normalisation takes ``(x, ctx)`` where ``ctx`` is a :class:`TaskContext`: the task index of every
sample in the batch and, for TSN, the task embeddings l_tau. This one signature lets a single decoder class serve
every architecture and lets one decoder batch mix tasks, each sample with its own conditioning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IN_EPS = 1e-5


@dataclass(frozen=True)
class TaskContext:
    """Per-batch conditioning of a batch made of contiguous single-task blocks.

    ``task_index[b]`` is sample b's task, ``blocks`` lists (task, start, stop) of each block, and
    ``embeddings[k]`` is l_k (TSN only). Knowing the blocks on the host lets task-specific BN slice its
    statistics without a device sync (and lets the model run on the meta device for FLOP counting).
    """

    task_index: torch.Tensor  # int64 [B]
    blocks: tuple[tuple[int, int, int], ...]
    embeddings: torch.Tensor | None = None  # [T, d]

    @classmethod
    def for_blocks(
        cls, task_ids: Sequence[int], block_size: int, device: torch.device, embeddings: torch.Tensor | None = None
    ) -> TaskContext:
        """A batch of ``len(task_ids)`` blocks of ``block_size`` samples, block i serving task ``task_ids[i]``."""
        ids = torch.tensor(list(task_ids), dtype=torch.long, device=device)
        blocks = tuple((t, i * block_size, (i + 1) * block_size) for i, t in enumerate(task_ids))
        return cls(ids.repeat_interleave(block_size), blocks, embeddings)


class EqualLinear(nn.Module):
    """StyleGAN's equalised-learning-rate linear layer: w ~ N(0, 1), scaled by sqrt(2 / fan_in) at run time."""

    def __init__(self, in_features: int, out_features: int, bias_init: float | torch.Tensor = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features) + bias_init)
        self.scale = math.sqrt(2.0 / in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) over the feature dimension: codes reach C at unit RMS."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)


class TaskEmbeddingNet(nn.Sequential):
    """C: PixelNorm, then ``n_fc`` x [EqualLinear(d, d) + LeakyReLU(0.2)]; l_tau = C(v_tau)."""

    def __init__(self, dim: int, n_fc: int = 8) -> None:
        layers: list[nn.Module] = [PixelNorm()]
        for _ in range(n_fc):
            layers += [EqualLinear(dim, dim), nn.LeakyReLU(0.2)]
        super().__init__(*layers)


class _PerSampleAffineNorm(nn.Module):
    """InstanceNorm without affine, then gamma * x_hat + beta with gamma, beta chosen per sample."""

    def affine(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        gamma, beta = self.affine(ctx)
        x_hat = F.instance_norm(x, eps=IN_EPS)
        return torch.addcmul(beta[:, :, None, None], x_hat, gamma[:, :, None, None])


class AdaIN(_PerSampleAffineNorm):
    """Module A's norm: [gamma, beta] = FC_A(l_tau), FC_A an EqualLinear(d, 2C) whose gamma bias starts at 1.

    FC_A runs once per task (on the T embeddings), and its output is gathered per sample, so a batch of B
    samples costs T, not B, linear layers.
    """

    def __init__(self, channels: int, num_tasks: int, embedding_dim: int) -> None:
        super().__init__()
        bias_init = torch.cat([torch.ones(channels), torch.zeros(channels)])
        self.fc = EqualLinear(embedding_dim, 2 * channels, bias_init=bias_init)
        self.channels = channels

    def affine(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        if ctx.embeddings is None:
            raise ValueError("AdaIN needs task embeddings in the TaskContext")
        style = self.fc(ctx.embeddings)[ctx.task_index]
        return style[:, : self.channels], style[:, self.channels :]


class TaskInstanceNorm(_PerSampleAffineNorm):
    """Task-specific INs: one learned (gamma, beta) pair per task, no embedding network."""

    def __init__(self, channels: int, num_tasks: int, embedding_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_tasks, channels))
        self.bias = nn.Parameter(torch.zeros(num_tasks, channels))

    def affine(self, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight[ctx.task_index], self.bias[ctx.task_index]


class TaskBatchNorm(nn.Module):
    """Task-specific BNs: per-task affine parameters and running statistics.

    Batch statistics are computed over each task's block separately, so a mixed-task batch normalises exactly
    as the same samples would in single-task batches.
    """

    def __init__(self, channels: int, num_tasks: int, embedding_dim: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_tasks, channels))
        self.bias = nn.Parameter(torch.zeros(num_tasks, channels))
        self.register_buffer("running_mean", torch.zeros(num_tasks, channels))
        self.register_buffer("running_var", torch.ones(num_tasks, channels))
        self.momentum = momentum

    def forward(self, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        outs = [
            F.batch_norm(
                x[start:stop],
                self.running_mean[task],
                self.running_var[task],
                self.weight[task],
                self.bias[task],
                training=self.training,
                momentum=self.momentum,
                eps=IN_EPS,
            )
            for task, start, stop in ctx.blocks
        ]
        return torch.cat(outs) if len(outs) > 1 else outs[0]


class AffineInstanceNorm(nn.InstanceNorm2d):
    """Plain InstanceNorm with affine parameters (single-task and multi-decoder baselines); ignores the task."""

    def __init__(self, channels: int, num_tasks: int, embedding_dim: int) -> None:
        super().__init__(channels, eps=IN_EPS, affine=True)

    def forward(self, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)


NormFactory = Callable[[int, int, int], nn.Module]
NORMS: dict[str, NormFactory] = {
    "adain": AdaIN,
    "task_in": TaskInstanceNorm,
    "task_bn": TaskBatchNorm,
    "in": AffineInstanceNorm,
}
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky_relu": lambda: nn.LeakyReLU(0.01),
    "relu": lambda: nn.ReLU(),
}


class ConditionedBlock(nn.Module):
    """Module A: Conv2d (with bias) -> task-conditioned norm -> activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        norm: str,
        num_tasks: int,
        embedding_dim: int,
        activation: str = "leaky_relu",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
        self.norm = NORMS[norm](out_channels, num_tasks, embedding_dim)
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor, ctx: TaskContext) -> torch.Tensor:
        return self.act(self.norm(self.conv(x), ctx))
