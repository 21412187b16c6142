"""The training engine: a run's model, optimisers and LR schedulers, and one optimisation step.

Public, so that the trainer, the benchmarks and user code run the same step (as MAE's ``engine_*`` modules do).
Every independently trained network (``MultiTaskModel.networks``: the whole model, or one network per task for
``single_task``) has its own Adam optimiser, with the encoder and decoder learning rates as two named parameter
groups, and its own plateau scheduler stepped on the validation loss of the tasks that network serves: the five
single-task baselines decay their learning rates independently, as the official baselines (five separate runs) do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

from .config import RunConfig, TrainConfig
from .evaluate import Evaluation, autocast, move_batch
from .losses import task_loss
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
    """One Adam optimiser and one plateau scheduler per network: stepped together, scheduled apart."""

    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.ReduceLROnPlateau]
    tasks: dict[str, tuple[str, ...]]  # network -> the tasks whose validation loss schedules it

    def zero_grad(self) -> None:
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Every optimiser steps; a network that got no gradient this step (None) is left as it is."""
        for optimizer in self.optimizers.values():
            optimizer.step()

    def step_schedulers(self, evaluation: Evaluation) -> None:
        for name, scheduler in self.schedulers.items():
            scheduler.step(evaluation.mean_loss_of(self.tasks[name]))

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
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])


def build_optimizer(network: MultiTaskModel, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the encoder and decoder learning rates as two named parameter groups."""
    return torch.optim.Adam(
        [
            {"params": list(network.encoder_parameters()), "lr": train.lr_encoder, "name": "encoder"},
            {"params": list(network.decoder_parameters()), "lr": train.lr_decoder, "name": "decoder"},
        ],
        weight_decay=train.weight_decay,
    )


def build_optimisation(model: MultiTaskModel, train: TrainConfig) -> Optimisation:
    """An optimiser and a ReduceLROnPlateau scheduler for every network of ``model``."""
    networks = model.networks()
    optimizers = {name: build_optimizer(network, train) for name, network in networks.items()}
    schedulers = {
        name: torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=train.plateau_factor, patience=train.plateau_patience
        )
        for name, optimizer in optimizers.items()
    }
    return Optimisation(optimizers, schedulers, {name: tuple(n.task_names) for name, n in networks.items()})


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
    optimisation.step()
    return {t: loss.item() for t, loss in losses.items()}
