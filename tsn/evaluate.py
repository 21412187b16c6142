"""Validation: weighted per-task losses and every task's metrics, encoder computed once per batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .losses import task_loss
from .metrics import MetricResult, build_metric
from .metrics.pool import MetricPool
from .models import MultiTaskModel
from .tasks import DatasetTasks


def mean_loss(losses: Mapping[str, float], tasks: Iterable[str] | None = None) -> float:
    """The mean of the weighted validation losses of ``tasks`` (default: every task): what a network's LR schedule
    follows, and the run's ``mean_val_loss`` (a sweep's objective without a single-task baseline)."""
    names = list(losses if tasks is None else tasks)
    return sum(losses[t] for t in names) / len(names)


@dataclass
class Evaluation:
    losses: dict[str, float]  # weighted, averaged over samples
    results: dict[str, MetricResult]

    @property
    def mean_loss(self) -> float:
        """The mean of every task's weighted validation loss."""
        return mean_loss(self.losses)

    def mean_loss_of(self, tasks: Iterable[str]) -> float:
        return mean_loss(self.losses, tasks)

    def primary(self, tasks: DatasetTasks) -> dict[str, float]:
        """Each task's Delta-m metric (e.g. semseg mIoU, normals mean error)."""
        return {t.name: self.results[t.name].values[t.metric] for t in tasks.tasks}


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on CUDA (no loss scaling needed); a no-op elsewhere."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def move_batch(batch: Mapping, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, dict]:
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    targets = {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()}
    return images, targets


@torch.inference_mode()
def evaluate(
    model: MultiTaskModel,
    batches: Iterable[Mapping],
    tasks: DatasetTasks,
    loss_weights: Mapping[str, float],
    *,
    edge_evaluator: str,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    workers: int = 1,
) -> Evaluation:
    """Losses and metrics over ``batches``; the expensive metrics' updates (SEISM edge matching) run in
    ``workers`` processes when ``workers`` > 1, with results identical to ``workers`` = 1."""
    pool = MetricPool(workers)  # checks workers before any work
    was_training = model.training
    model.eval()
    metrics = {
        t.name: build_metric(t, edge_max_dist=tasks.edge_max_dist, edge_evaluator=edge_evaluator) for t in tasks.tasks
    }
    loss_sums = dict.fromkeys(tasks.names, 0.0)
    samples = 0
    with pool:
        for batch in batches:
            images, targets = move_batch(batch, device, channels_last)
            with autocast(device, amp):
                outputs = model.forward_tasks(images, tasks.names)
            for task in tasks.tasks:
                pred = outputs[task.name].float()
                loss = task_loss(task, pred, targets[task.name]).item()
                loss_sums[task.name] += loss_weights[task.name] * loss * len(images)
                pool.update(metrics[task.name], pred, targets[task.name])
            samples += len(images)
    model.train(was_training)
    if samples == 0:
        raise ValueError("the validation split is empty; set data.val_samples > 0")
    return Evaluation({k: v / samples for k, v in loss_sums.items()}, {k: m.compute() for k, m in metrics.items()})
