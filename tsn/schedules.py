"""Task-switching schedules: which task(s) each optimiser step of an epoch trains, on which samples.

Each task passes once per epoch over the training samples labelled for it (a dataset declares them:
``MultiTaskDataset.labelled``; PASCAL-Context labels human parts only on images with people, as the official
loader trains them). A schedule is two choices:

- its *sources*: one per task (single-task steps on that task's samples), or one for all tasks together (steps
  that train every task on a batch of the samples labelled for any of them);
- how the sources' batches *interleave*: pass after pass (in a freshly shuffled order), or alternating every
  step (cycling through a shuffled order; a source whose pass is done drops out).

| schedule | sources | interleaving |
|---|---|---|
| ``epoch`` (the paper's) | one per task | pass after pass |
| ``batch`` | one per task | alternating every step |
| ``joint`` | all tasks together | one pass |

Every schedule shows each (labelled image, task) pair once per epoch, so schedules compare at equal exposure.
A pass drops its incomplete last batch when it has more than one batch, as the trainer always did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

Tasks = tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """One optimiser step: the tasks it trains and the dataset indices of its batch."""

    tasks: Tasks
    indices: list[int]


def _shuffled(items: Sequence, generator: torch.Generator) -> list:
    return [items[i] for i in torch.randperm(len(items), generator=generator).tolist()]


def batches(indices: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """One shuffled pass over ``indices`` in batches (the incomplete last one dropped when there are several)."""
    order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    cut = len(order) - len(order) % batch_size if len(order) > batch_size else len(order)
    return [order[i : i + batch_size] for i in range(0, cut, batch_size)]


def per_task(labelled: Mapping[str, Sequence[int]]) -> dict[Tasks, Sequence[int]]:
    return {(task,): indices for task, indices in labelled.items()}


def together(labelled: Mapping[str, Sequence[int]]) -> dict[Tasks, Sequence[int]]:
    return {tuple(labelled): sorted(set().union(*map(set, labelled.values())))}


def passes(counts: Mapping[Tasks, int], generator: torch.Generator) -> list[Tasks]:
    return [source for source in _shuffled(list(counts), generator) for _ in range(counts[source])]


def alternating(counts: Mapping[Tasks, int], generator: torch.Generator) -> list[Tasks]:
    order, left, steps = _shuffled(list(counts), generator), dict(counts), []
    while any(left.values()):
        for source in order:
            if left[source]:
                steps.append(source)
                left[source] -= 1
    return steps


Sources = Callable[[Mapping[str, Sequence[int]]], dict[Tasks, Sequence[int]]]
Interleaving = Callable[[Mapping[Tasks, int], torch.Generator], list[Tasks]]
SCHEDULES: dict[str, tuple[Sources, Interleaving]] = {
    "epoch": (per_task, passes),
    "batch": (per_task, alternating),
    "joint": (together, passes),
}


def plan_epoch(
    schedule: str, labelled: Mapping[str, Sequence[int]], batch_size: int, generator: torch.Generator
) -> list[Step]:
    """The steps of one epoch. ``labelled``: each task's training sample indices, in the model's task order."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {list(SCHEDULES)}")
    empty = [task for task, indices in labelled.items() if not len(indices)]
    if empty:
        raise ValueError(f"no training sample is labelled for task {empty[0]!r}; drop it from data.tasks")
    sources, interleave = SCHEDULES[schedule]
    source_batches = {source: batches(indices, batch_size, generator) for source, indices in sources(labelled).items()}
    order = interleave({source: len(b) for source, b in source_batches.items()}, generator)
    pending = {source: iter(b) for source, b in source_batches.items()}
    return [Step(source, next(pending[source])) for source in order]


def steps_per_epoch(schedule: str, labelled: Mapping[str, Sequence[int]], batch_size: int) -> Counter[Tasks]:
    """How many steps of every epoch train each set of tasks (the same in every epoch; only the order changes)."""
    return Counter(step.tasks for step in plan_epoch(schedule, labelled, batch_size, torch.Generator()))
