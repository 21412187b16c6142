"""Output heads: the paper's single shared head, or one head per task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_kernels import pointwise_conv
from .tasks import TaskSpec


def pool_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Adaptive average pooling along the channel axis: [B, K, H, W] -> [B, channels, H, W]."""
    if x.shape[1] == channels:
        return x
    return F.adaptive_avg_pool3d(x.unsqueeze(1), (channels, *x.shape[-2:])).squeeze(1)


class SharedHead(nn.Module):
    """One 1x1 conv to K channels for all tasks; each task reads its channels by channel-average-pooling."""

    def __init__(self, in_channels: int, tasks: tuple[TaskSpec, ...]) -> None:
        super().__init__()
        self.task_channels = {t.name: t.channels for t in tasks}
        self.conv = nn.Conv2d(in_channels, max(self.task_channels.values()), 1)

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        return pool_channels(pointwise_conv(x, self.conv.weight, self.conv.bias), self.task_channels[task])


class PerTaskHeads(nn.Module):
    """One 1x1 conv per task, sized to the task's channels."""

    def __init__(self, in_channels: int, tasks: tuple[TaskSpec, ...]) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({t.name: nn.Conv2d(in_channels, t.channels, 1) for t in tasks})

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        conv = self.convs[task]
        return pointwise_conv(x, conv.weight, conv.bias)


HEADS = {"shared": SharedHead, "per_task": PerTaskHeads}


def build_head(kind: str, in_channels: int, tasks: tuple[TaskSpec, ...]) -> nn.Module:
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; valid: {sorted(HEADS)}")
    return HEADS[kind](in_channels, tasks)
