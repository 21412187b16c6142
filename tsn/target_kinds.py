"""Target kinds are data: one ``TargetKind`` per kind of ground truth (label, binary, normals, depth).

Everything the suite does differently per kind is a field of its entry: the target's format (dtype, channels,
invalid value), how a cached array becomes a target, how augmentation pads and turns it and which official
geometric / photometric profile its tasks train with, a valid random batch (bench, tests), how a raw output
becomes a target-like map and how a target is drawn (preview, figures), and the metrics that evaluate it. No code
branches on a kind's name: it calls ``target_kind(name)`` and uses the entry, and an unknown name is a one-line
error listing the registered kinds.

Adding a kind is one ``register(TargetKind(...))`` here (plus, if none fits, its metric in ``tsn/metrics/`` and its
loss in ``tsn/losses.py``); ``tests/test_target_kinds.py`` checks every registered kind end to end.

Formats of the built-in kinds, shared by every dataset:

- ``label``:   int64 ``[H, W]``, class ids, 255 = ignore.
- ``binary``:  float32 ``[1, H, W]``, values 0 or 1, 255 = ignore.
- ``normals``: float32 ``[3, H, W]``, unit vectors, all-zero = invalid.
- ``depth``:   float32 ``[1, H, W]``, metric depth, 0 = invalid.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F

if TYPE_CHECKING:
    from tsn.metrics.base import Metric
    from tsn.tasks import TaskSpec

IGNORE_INDEX = 255

# (task, edge_max_dist, edge_evaluator) -> a fresh metric accumulator for the task
MetricBuilder = Callable[["TaskSpec", float, str], "Metric"]


@dataclass(frozen=True)
class Geometry:
    """A random similarity about the image centre: flip p 0.5, then scale, rotation and shift."""

    scale: tuple[float, float]
    shift: float  # maximum |shift| as a fraction of the image's width / height
    rotation: float  # maximum |angle| in degrees, counter-clockwise on screen

    def union(self, other: Geometry) -> Geometry:
        return Geometry(
            (min(self.scale[0], other.scale[0]), max(self.scale[1], other.scale[1])),
            max(self.shift, other.shift),
            max(self.rotation, other.rotation),
        )


SHIFT_SCALE = Geometry(scale=(0.5, 1.5), shift=0.1, rotation=0.0)  # albumentations' ShiftScaleRotate
SCALE_ROTATE = Geometry(scale=(0.75, 1.25), shift=0.0, rotation=20.0)  # ASTMT's ScaleNRotate


@dataclass(frozen=True)
class TargetKind:
    """Everything the suite needs to know about one kind of target."""

    name: str
    dtype: torch.dtype  # of a target tensor
    channels: int | None  # a target is [channels, H, W]; None: a class-id map [H, W] (the task's channels = classes)
    invalid: float  # the ignore / invalid value of a target pixel; a target holding nothing else stays all-invalid
    pad: float  # value of the pixels augmentation brings in from outside the image
    vector: bool  # channels 0, 1 are an image-plane (x, y) vector that turns with the image
    geometry: Geometry  # the official geometric augmentation profile of the tasks of this kind
    photometric: bool  # the official pipeline of this kind perturbs the image's colours
    from_cache: Callable[[torch.Tensor], torch.Tensor]  # a cached uint8 / float array of one image -> a target
    random: Callable[[int, int, int, torch.Generator], torch.Tensor]  # (task channels, batch, size, g) -> valid batch
    decode: Callable[[torch.Tensor], torch.Tensor]  # a raw output of one image [C, H, W] -> a target-like map to draw
    draw: Callable[[torch.Tensor], tuple[np.ndarray, dict]]  # one target -> (imshow array, style); invalid masked
    metrics: Mapping[str, MetricBuilder]  # a task's primary metric name (TaskSpec.metric) -> its builder

    def __post_init__(self) -> None:
        missing = [f.name for f in fields(self) if getattr(self, f.name) is None and f.name != "channels"]
        if missing:
            raise ValueError(f"target kind {self.name!r}: fields {missing} are not set")
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        uncallable = [name for name in ("from_cache", "random", "decode", "draw") if not callable(getattr(self, name))]
        uncallable += [f"metrics[{m!r}]" for m, build in self.metrics.items() if not callable(build)]
        if uncallable:
            raise ValueError(f"target kind {self.name!r}: {uncallable} must be callable")
        if not self.metrics:
            raise ValueError(f"target kind {self.name!r}: needs at least one metric")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"target kind {self.name!r}: channels must be >= 1 or None, got {self.channels}")


KINDS: dict[str, TargetKind] = {}


def register(kind: TargetKind) -> TargetKind:
    """Add ``kind`` to the registry (its name must be new) and return it."""
    if kind.name in KINDS:
        raise ValueError(f"target kind {kind.name!r} is already registered; registered: {sorted(KINDS)}")
    KINDS[kind.name] = kind
    return kind


def target_kind(name: str) -> TargetKind:
    """The registered kind ``name``; an unknown name is a one-line error listing the registered kinds."""
    if name not in KINDS:
        raise ValueError(f"unknown target kind {name!r}; valid: {sorted(KINDS)}")
    return KINDS[name]


# Metric builders. The metric modules import IGNORE_INDEX from here, so they are imported when a metric is built.


def _segmentation(task: TaskSpec, *_: object) -> Metric:
    from tsn.metrics.segmentation import SegmentationMetric

    return SegmentationMetric(task.channels, **task.metric_kwargs)


def _edge(_: TaskSpec, max_dist: float, evaluator: str) -> Metric:
    from tsn.metrics import EDGE_EVALUATORS

    return EDGE_EVALUATORS[evaluator](max_dist)


def _saliency(*_: object) -> Metric:
    from tsn.metrics.saliency import SaliencyMetric

    return SaliencyMetric()


def _normals(*_: object) -> Metric:
    from tsn.metrics.normals import NormalsMetric

    return NormalsMetric()


def _depth(*_: object) -> Metric:
    from tsn.metrics.depth import DepthMetric

    return DepthMetric()


def _masked(array: np.ndarray, value: float, **style: object) -> tuple[np.ndarray, dict]:
    return np.ma.masked_equal(array, value), dict(style)


register(
    TargetKind(
        "label",
        torch.int64,
        None,
        invalid=IGNORE_INDEX,
        pad=0,
        vector=False,
        geometry=SHIFT_SCALE,
        photometric=True,
        from_cache=lambda a: a.long(),
        random=lambda c, b, s, g: torch.randint(c, (b, s, s), generator=g),
        decode=lambda out: out.argmax(0),
        draw=lambda t: _masked(t.numpy(), IGNORE_INDEX, cmap="tab20", vmin=0, vmax=20),
        metrics={"miou": _segmentation},
    )
)
register(
    TargetKind(
        "binary",
        torch.float32,
        1,
        invalid=IGNORE_INDEX,
        pad=0,
        vector=False,
        geometry=SHIFT_SCALE,
        photometric=True,
        from_cache=lambda a: a.float()[None],
        random=lambda c, b, s, g: torch.randint(2, (b, 1, s, s), generator=g).float(),
        decode=torch.sigmoid,
        draw=lambda t: _masked(t[0].numpy(), IGNORE_INDEX, cmap="gray", vmin=0, vmax=1),
        metrics={"odsF": _edge, "miou": _saliency},
    )
)
register(
    TargetKind(
        "normals",
        torch.float32,
        3,
        invalid=0,
        pad=0,
        vector=True,
        geometry=SCALE_ROTATE,
        photometric=False,
        from_cache=lambda a: a.float(),
        random=lambda c, b, s, g: F.normalize(torch.randn(b, 3, s, s, generator=g), dim=1),
        decode=lambda out: F.normalize(out, dim=0),
        draw=lambda t: (((t.permute(1, 2, 0).numpy() + 1) / 2).clip(0, 1), {}),
        metrics={"mean": _normals},
    )
)
register(
    TargetKind(
        "depth",
        torch.float32,
        1,
        invalid=0,
        pad=0,
        vector=False,
        geometry=SCALE_ROTATE,
        photometric=False,
        from_cache=lambda a: a.float()[None],
        random=lambda c, b, s, g: torch.rand(b, 1, s, s, generator=g) + 0.5,
        decode=lambda out: out,
        draw=lambda t: _masked(t[0].numpy(), 0, cmap="viridis"),
        metrics={"rmse": _depth},
    )
)
