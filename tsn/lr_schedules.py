"""Learning-rate schedules of one network's optimiser (``train.lr_schedule``), by name in ``LR_SCHEDULES``.

Each is built from the optimiser, the train config and the network's number of optimiser steps in the run, and
advanced after each of those steps (``after_step``) and after each validation (``after_validation``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # tsn.config derives its list of valid names from LR_SCHEDULES
    from .config import TrainConfig


class PlateauSchedule:
    """ReduceLROnPlateau on the validation loss of the network's tasks."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=train.plateau_factor, patience=train.plateau_patience
        )

    def after_step(self) -> None: ...

    def after_validation(self, loss: float) -> None:
        self.scheduler.step(loss)


class CosineSchedule:
    """lr · (1 + cos(π k / K)) / 2 after the network's k-th of K optimiser steps: zero after the last one."""

    def __init__(self, optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int) -> None:
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total_steps) / max(total_steps, 1)))
        )

    def after_step(self) -> None:
        self.scheduler.step()

    def after_validation(self, loss: float) -> None: ...


LR_SCHEDULES = {"plateau": PlateauSchedule, "cosine": CosineSchedule}
