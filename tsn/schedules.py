"""Task-switching schedules: which task(s) each optimiser step of an epoch serves.

An epoch is a list of passes over the training loader; each pass is a list of steps; each step names the tasks
its batch is trained on. Every schedule shows each (image, task) pair once per epoch, so schedules compare at
equal exposure:

- ``epoch`` (the paper's): tasks in a freshly shuffled order, one full pass per task, single-task steps.
- ``batch``: T passes; the task alternates every step (in a shuffled cyclic order), single-task steps.
- ``joint``: one pass; every step trains all tasks on its batch (encoder once, losses summed).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

Plan = list[list[tuple[str, ...]]]


def _shuffled(tasks: Sequence[str], generator: torch.Generator) -> list[str]:
    return [tasks[i] for i in torch.randperm(len(tasks), generator=generator).tolist()]


def epoch_schedule(tasks: Sequence[str], steps_per_pass: int, generator: torch.Generator) -> Plan:
    return [[(task,)] * steps_per_pass for task in _shuffled(tasks, generator)]


def batch_schedule(tasks: Sequence[str], steps_per_pass: int, generator: torch.Generator) -> Plan:
    order = _shuffled(tasks, generator)
    return [
        [(order[(p * steps_per_pass + i) % len(order)],) for i in range(steps_per_pass)] for p in range(len(order))
    ]


def joint_schedule(tasks: Sequence[str], steps_per_pass: int, generator: torch.Generator) -> Plan:
    return [[tuple(tasks)] * steps_per_pass]


SCHEDULES: dict[str, Callable[[Sequence[str], int, torch.Generator], Plan]] = {
    "epoch": epoch_schedule,
    "batch": batch_schedule,
    "joint": joint_schedule,
}


def plan_epoch(schedule: str, tasks: Sequence[str], steps_per_pass: int, generator: torch.Generator) -> Plan:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    return SCHEDULES[schedule](tasks, steps_per_pass, generator)
