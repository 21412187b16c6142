"""Tasks are data: one registry entry per (dataset, task).

Models, losses, metrics and the trainer loop over a dataset's ``TaskSpec`` tuple; nothing in the code branches
on a task's name. The tuple's order is the task index used by the task-condition vectors (the paper's order on
PASCAL-Context: semseg 0, parts 1, edge 2, normals 3, saliency 4).

A task's ``target`` names its target kind in ``tsn.target_kinds`` (label, binary, normals, depth), which fixes the
target's format, augmentation, drawing and the metrics that can evaluate it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from tsn.target_kinds import target_kind


@dataclass(frozen=True)
class TaskSpec:
    """Everything the suite needs to know about one task of one dataset."""

    name: str
    channels: int
    target: str  # a registered target kind (tsn.target_kinds)
    loss: str  # key of tsn.losses.LOSSES
    loss_weight: float
    metric: str  # the primary (Delta-m) metric key produced by tsn.metrics
    higher_is_better: bool
    loss_kwargs: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    metric_kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        try:
            kind = target_kind(self.target)
        except ValueError as error:
            raise ValueError(f"task {self.name!r}: {error}") from None
        if self.channels < 1:
            raise ValueError(f"task {self.name!r}: channels must be >= 1, got {self.channels}")
        if kind.channels is not None and self.channels != kind.channels:
            raise ValueError(
                f"task {self.name!r}: a {kind.name!r} target has {kind.channels} channel(s), "
                f"got channels={self.channels}"
            )
        object.__setattr__(self, "loss_kwargs", MappingProxyType(dict(self.loss_kwargs)))
        object.__setattr__(self, "metric_kwargs", MappingProxyType(dict(self.metric_kwargs)))


@dataclass(frozen=True)
class DatasetTasks:
    """A dataset's task set plus the dataset-level facts that metrics need."""

    dataset: str
    tasks: tuple[TaskSpec, ...]
    edge_max_dist: float  # SEISM tolerance as a fraction of the image diagonal

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def head_channels(self) -> int:
        """Channels of the paper's single shared head: the widest task (21 on PASCAL-Context)."""
        return max(t.channels for t in self.tasks)

    def get(self, name: str) -> TaskSpec:
        for task in self.tasks:
            if task.name == name:
                return task
        raise ValueError(f"unknown task {name!r} for dataset {self.dataset!r}; valid: {list(self.names)}")

    def subset(self, names: Sequence[str] | None) -> DatasetTasks:
        """The tasks named in ``names`` (in the given order), or all when ``names`` is None or empty."""
        if not names:
            return self
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate task in {list(names)}")
        return DatasetTasks(self.dataset, tuple(self.get(n) for n in names), self.edge_max_dist)


def _semseg(classes: int) -> TaskSpec:
    return TaskSpec("semseg", classes, "label", "cross_entropy", 1.0, "miou", True)


def _parts(classes: int) -> TaskSpec:
    # Parts labels exist only on images with people (PASCAL); ASTMT skips the other images when evaluating.
    return TaskSpec(
        "parts", classes, "label", "cross_entropy", 2.0, "miou", True, metric_kwargs={"skip_unlabelled_images": True}
    )


def _edge(pos_weight: float) -> TaskSpec:
    return TaskSpec("edge", 1, "binary", "balanced_bce", 50.0, "odsF", True, {"pos_weight": pos_weight})


NORMALS = TaskSpec("normals", 3, "normals", "normals_l1", 10.0, "mean", False)
SALIENCY = TaskSpec("saliency", 1, "binary", "auto_balanced_bce", 5.0, "miou", True)
DEPTH = TaskSpec("depth", 1, "depth", "depth_l1_grad", 1.0, "rmse", False)

# Synthetic scenes: background + sphere, box, cylinder, cone; parts: background + top, side, bottom.
SYNTHETIC_SEMSEG_CLASSES = ("background", "sphere", "box", "cylinder", "cone")
SYNTHETIC_PART_CLASSES = ("background", "top", "side", "bottom")

DATASETS: dict[str, DatasetTasks] = {
    "pascal_context": DatasetTasks(
        "pascal_context", (_semseg(21), _parts(7), _edge(0.95), NORMALS, SALIENCY), edge_max_dist=0.0075
    ),
    "nyud": DatasetTasks("nyud", (_semseg(41), _edge(0.8), NORMALS, DEPTH), edge_max_dist=0.011),
    "synthetic": DatasetTasks(
        "synthetic",
        (
            _semseg(len(SYNTHETIC_SEMSEG_CLASSES)),
            _parts(len(SYNTHETIC_PART_CLASSES)),
            _edge(0.95),
            NORMALS,
            SALIENCY,
            DEPTH,
        ),
        edge_max_dist=0.0075,
    ),
}

# The synthetic dataset can serve all six tasks; by default it serves PASCAL-Context's five, so that the paper's
# embedding dimensions (50, 100, 150, 250) are valid orthogonal codes (d must be a multiple of T).
DEFAULT_TASKS: dict[str, tuple[str, ...]] = {
    "pascal_context": DATASETS["pascal_context"].names,
    "nyud": DATASETS["nyud"].names,
    "synthetic": ("semseg", "parts", "edge", "normals", "saliency"),
}


def dataset_tasks(dataset: str, names: Sequence[str] | None = None) -> DatasetTasks:
    """The task set of ``dataset``: the named tasks, or the dataset's default set when ``names`` is empty."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(DATASETS)}")
    return DATASETS[dataset].subset(names or DEFAULT_TASKS[dataset])
