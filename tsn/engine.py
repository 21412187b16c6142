"""The training engine: a run's model, optimisers and LR schedulers, and one optimisation step.

Public, so that the trainer, the benchmarks and user code run the same step (as MAE's ``engine_*`` modules do).
Every independently trained network (``MultiTaskModel.networks``: the whole model, or one network per task for
``single_task``) has its own Adam optimiser, with the encoder and decoder learning rates as two named parameter
groups, and its own learning-rate schedule (``train.lr_schedule``):

- ``plateau`` (the paper's): ReduceLROnPlateau stepped on the validation loss of the tasks the network serves, so
  the five single-task baselines decay their rates independently, as the official baselines (five runs) do;
- ``cosine``: cosine annealing to zero over the network's own optimiser steps of the whole run, stepped after each
  of them, so every run ends at a decayed rate whatever task it trained last.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .config import RunConfig, TrainConfig
from .evaluate import Evaluation, autocast, move_batch
from .losses import task_loss
from .lr_schedules import LR_SCHEDULES, CosineSchedule, PlateauSchedule
from .models import MultiTaskModel, build_model
from .runtime import seed_everything
from .tasks import DatasetTasks


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the task and where in training."""


def build_run_model(cfg: RunConfig, tasks: DatasetTasks, device: torch.device) -> MultiTaskModel:
    """The run's model, initialised from ``train.seed``, on ``device`` (channels-last on CUDA if configured)."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, tasks).to(device)
    if channels_last(cfg.train, device):
        model.to(memory_format=torch.channels_last)
    return model


def channels_last(train: TrainConfig, device: torch.device) -> bool:
    return train.channels_last and device.type == "cuda"


@dataclass
class Optimisation:
    """One Adam optimiser and one learning-rate schedule per network: stepped together, scheduled apart."""

    optimizers: dict[str, torch.optim.Optimizer]
    schedules: dict[str, PlateauSchedule | CosineSchedule]
    tasks: dict[str, tuple[str, ...]]  # network -> the tasks it serves (whose validation loss schedules it)

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self, step_tasks: Sequence[str]) -> None:
        """The networks that serve any of ``step_tasks`` take an optimiser step and advance their schedules."""
        for name, optimizer in self.optimizers.items():
            if set(self.tasks[name]) & set(step_tasks):
                optimizer.step()
                self.schedules[name].after_step()

    def step_schedulers(self, evaluation: Evaluation) -> None:
        for name, schedule in self.schedules.items():
            schedule.after_validation(evaluation.mean_loss_of(self.tasks[name]))

    def learning_rates(self) -> dict[str, float]:
        """``{"encoder": lr, "decoder": lr}`` for one network, ``{"<network>/encoder": lr, ...}`` for several."""
        prefix = len(self.optimizers) > 1
        return {
            f"{name}/{group['name']}" if prefix else group["name"]: group["lr"]
            for name, optimizer in self.optimizers.items()
            for group in optimizer.param_groups
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizers": {name: o.state_dict() for name, o in self.optimizers.items()},
            "schedules": {name: s.scheduler.state_dict() for name, s in self.schedules.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, schedule in self.schedules.items():
            schedule.scheduler.load_state_dict(state["schedules"][name])


def build_optimizer(network: MultiTaskModel, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the encoder and decoder learning rates as two named parameter groups."""
    return torch.optim.Adam(
        [
            {"params": list(network.encoder_parameters()), "lr": train.lr_encoder, "name": "encoder"},
            {"params": list(network.decoder_parameters()), "lr": train.lr_decoder, "name": "decoder"},
        ],
        weight_decay=train.weight_decay,
    )


def build_optimisation(
    model: MultiTaskModel, train: TrainConfig, steps_per_epoch: Mapping[tuple[str, ...], int] | None = None
) -> Optimisation:
    """An optimiser and a ``train.lr_schedule`` schedule for every network of ``model``.

    ``steps_per_epoch``: how many steps of an epoch train each set of tasks (``tsn.schedules.steps_per_epoch``);
    needed by the ``cosine`` schedule, which spans each network's own steps of the whole run.
    """
    networks = model.networks()
    tasks = {name: tuple(network.task_names) for name, network in networks.items()}
    optimizers = {name: build_optimizer(network, train) for name, network in networks.items()}
    if train.lr_schedule != "plateau" and steps_per_epoch is None:
        raise ValueError(f"train.lr_schedule={train.lr_schedule} needs the number of steps per epoch")
    own_steps = {
        name: train.epochs * sum(n for step, n in (steps_per_epoch or {}).items() if set(step) & set(tasks[name]))
        for name in networks
    }
    schedules = {name: LR_SCHEDULES[train.lr_schedule](o, train, own_steps[name]) for name, o in optimizers.items()}
    return Optimisation(optimizers, schedules, tasks)


def train_step(
    model: MultiTaskModel,
    optimisation: Optimisation,
    tasks: DatasetTasks,
    loss_weights: Mapping[str, float],
    step_tasks: Sequence[str],
    batch: Mapping,
    *,
    device: torch.device,
    amp: bool = True,
    channels_last: bool = False,
    where: str = "",
) -> dict[str, float]:
    """Forward ``step_tasks`` on ``batch`` (encoder once), the weighted sum of their losses, backward, step.

    Returns each task's unweighted loss. A non-finite loss raises :class:`NonFiniteLossError` naming the task and
    ``where`` (e.g. "epoch 3, step 12") before any parameter is updated.
    """
    images, targets = move_batch(batch, device, channels_last)
    with autocast(device, amp):
        if len(step_tasks) == 1:
            outputs = {step_tasks[0]: model(images, step_tasks[0])}
        else:
            outputs = model.forward_tasks(images, step_tasks)
    losses = {t: task_loss(tasks.get(t), outputs[t].float(), targets[t]) for t in step_tasks}
    for task, loss in losses.items():
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite {task} loss ({loss.item()}) at {where or 'a training step'}; "
                "lower train.lr_decoder / train.lr_encoder or check the data"
            )
    total = sum(loss_weights[t] * loss for t, loss in losses.items())
    optimisation.zero_grad()
    total.backward()
    optimisation.step(step_tasks)
    return {t: loss.item() for t, loss in losses.items()}
