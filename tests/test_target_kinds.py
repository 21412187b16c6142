"""Target kinds are data: every registered kind is complete, every task's kind is registered, and a new kind
registered here (nowhere else) goes through conversion, collation, augmentation, drawing and its metric."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

from tsn.data.preview import show  # noqa: E402
from tsn.data.transforms import MultiTaskDataset, build_transform, hflip, paper_steps, similarity, warp  # noqa: E402
from tsn.metrics import build_metric  # noqa: E402
from tsn.metrics.base import Metric, MetricResult  # noqa: E402
from tsn.target_kinds import KINDS, SCALE_ROTATE, SHIFT_SCALE, Geometry, TargetKind, register, target_kind  # noqa: E402
from tsn.tasks import DATASETS, TaskSpec  # noqa: E402

SIZE, BATCH, CLASSES = 16, 2, 4
BUILT_IN = sorted(KINDS)  # fixed at collection, before any test registers a kind


class MeanAbsoluteError(Metric):
    """A toy regression metric: pixel-pooled |sigmoid(logit) - target| over pixels whose target is not -1."""

    def _zero_state(self) -> dict[str, np.ndarray]:
        return {"abs": np.zeros(1), "count": np.zeros(1)}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        valid = target != -1
        self._state["abs"] += float((torch.sigmoid(pred.double()) - target.double()).abs()[valid].sum())
        self._state["count"] += float(valid.sum())

    def compute(self) -> MetricResult:
        mae = float(self._state["abs"][0] / max(self._state["count"][0], 1.0))
        return MetricResult({"mae": mae}, {"mae": "pixel-pooled, sigmoid of the logit"})


# A regression kind that exists only in this file: the whole of "adding a target kind" when a metric is new.
HEATMAP = TargetKind(
    "heatmap",
    torch.float32,
    1,
    invalid=-1,
    pad=0,
    vector=False,
    geometry=SCALE_ROTATE,
    photometric=False,
    from_cache=lambda a: a.float()[None],
    random=lambda c, b, s, g: torch.rand(b, 1, s, s, generator=g) * 0.98 + 0.01,
    decode=torch.sigmoid,
    draw=lambda t: (np.ma.masked_equal(t[0].numpy(), -1), {"cmap": "magma", "vmin": 0, "vmax": 1}),
    metrics={"mae": lambda *_: MeanAbsoluteError()},
)


@pytest.fixture
def heatmap():
    kind = register(HEATMAP)
    try:
        yield kind
    finally:
        del KINDS[kind.name]


def _channels(kind: TargetKind) -> int:
    """A task's output channels for ``kind``: the kind's own, or a class count for class-id maps."""
    return CLASSES if kind.channels is None else kind.channels


def _batch(kind: TargetKind, seed: int = 0) -> torch.Tensor:
    return kind.random(_channels(kind), BATCH, SIZE, torch.Generator().manual_seed(seed))


def _cached(target: torch.Tensor, kind: TargetKind) -> torch.Tensor:
    """One target as the synthetic cache stores it: one-channel kinds as [H, W] (tsn.data.synthetic)."""
    return target[0] if kind.channels == 1 else target


def check_complete(kind: TargetKind) -> None:
    """Every field set, and each hook gives the kind's format and survives every code path that handles it."""
    assert all(getattr(kind, f.name) is not None for f in fields(kind) if f.name != "channels"), kind.name
    assert isinstance(kind.dtype, torch.dtype) and isinstance(kind.geometry, Geometry)
    assert kind.channels is None or kind.channels >= 1
    assert math.isfinite(kind.invalid) and math.isfinite(kind.pad)
    assert kind.metrics and all(callable(build) for build in kind.metrics.values())

    # random: a valid batch of the kind's shape and dtype
    batch = _batch(kind)
    shape = (BATCH, SIZE, SIZE) if kind.channels is None else (BATCH, kind.channels, SIZE, SIZE)
    assert batch.shape == shape and batch.dtype == kind.dtype, kind.name
    assert (batch != kind.invalid).any(dim=tuple(range(1, batch.ndim))).all(), f"{kind.name}: a random target is void"
    assert torch.equal(batch, _batch(kind)) and not torch.equal(batch, _batch(kind, seed=1)), "seeded, not constant"

    # from the cache, then collated as the trainer's DataLoader does
    targets = [kind.from_cache(_cached(t, kind)) for t in batch]
    assert all(t.dtype == kind.dtype and t.shape == batch.shape[1:] for t in targets), kind.name
    collated = default_collate([{"targets": {"t": t}} for t in targets])["targets"]["t"]
    assert collated.dtype == kind.dtype and torch.equal(collated, batch)

    # augmentation: padding by the kind's rule; an all-invalid target stays all-invalid; a flip twice is identity
    image = torch.rand(3, SIZE, SIZE)
    _, out = warp(image, {"t": batch[0]}, {"t": kind.name}, similarity(0.5, 0.0, False))
    border = torch.ones(SIZE, SIZE, dtype=torch.bool)
    border[SIZE // 4 : 3 * SIZE // 4, SIZE // 4 : 3 * SIZE // 4] = False
    assert out["t"].dtype == kind.dtype and out["t"].shape == batch.shape[1:]
    assert (out["t"].reshape(-1, SIZE, SIZE)[:, border] == kind.pad).all(), f"{kind.name}: padding"
    void = torch.full_like(batch[0], kind.invalid)
    _, out = warp(image, {"t": void}, {"t": kind.name}, similarity(0.5, 10.0, True), (2.0, -1.0))
    assert (out["t"] == kind.invalid).all(), f"{kind.name}: an all-invalid target got padding"
    twice = hflip(*hflip(image, {"t": batch[0]}, {"t": kind.name}), {"t": kind.name})[1]["t"]
    assert torch.equal(twice, batch[0])
    torch.manual_seed(0)
    _, out = build_transform("paper", {"t": kind.name})(image, {"t": batch[0]})
    assert out["t"].dtype == kind.dtype and out["t"].shape == batch.shape[1:]

    # drawing a target and a decoded raw output, as the preview and the qualitative figure do
    logits = torch.randn(BATCH, _channels(kind), SIZE, SIZE)
    fig, axes = plt.subplots(1, 2)
    try:
        show(axes[0], kind.name, batch[0])
        show(axes[1], kind.name, kind.decode(logits[0]))
        for ax in axes:
            assert ax.images[0].get_array().shape[:2] == (SIZE, SIZE), kind.name
    finally:
        plt.close(fig)

    # every metric of the kind accepts its targets and a raw output
    for metric in kind.metrics:
        task = TaskSpec(f"a_{kind.name}_task", _channels(kind), kind.name, "unused", 1.0, metric, True)
        accumulator = build_metric(task, edge_max_dist=0.01)
        accumulator.update(logits, batch)
        assert math.isfinite(accumulator.compute()[metric]), f"{kind.name}: {metric}"


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_registered_kind_is_complete(name):
    check_complete(target_kind(name))


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_every_task_has_a_registered_kind_with_a_builder_for_its_metric(dataset):
    for task in DATASETS[dataset].tasks:
        kind = target_kind(task.target)
        assert task.metric in kind.metrics, f"{dataset}/{task.name}: {task.metric!r} not in {sorted(kind.metrics)}"
        assert kind.channels in (None, task.channels), task.name


def test_built_in_kinds_keep_their_formats_and_official_augmentation():
    formats = {name: (k.dtype, k.channels, k.invalid, k.vector) for name, k in KINDS.items()}
    assert formats == {
        "label": (torch.int64, None, 255, False),
        "binary": (torch.float32, 1, 255, False),
        "normals": (torch.float32, 3, 0, True),
        "depth": (torch.float32, 1, 0, False),
    }
    augmentation = {name: (k.pad, k.geometry, k.photometric) for name, k in KINDS.items()}
    assert augmentation == {
        "label": (0, SHIFT_SCALE, True),
        "binary": (0, SHIFT_SCALE, True),
        "normals": (0, SCALE_ROTATE, False),
        "depth": (0, SCALE_ROTATE, False),
    }
    assert SHIFT_SCALE == Geometry((0.5, 1.5), 0.1, 0.0) and SCALE_ROTATE == Geometry((0.75, 1.25), 0.0, 20.0)


def test_an_unknown_kind_is_a_one_line_error_listing_the_registered_kinds():
    with pytest.raises(ValueError) as error:
        target_kind("heatmap")
    message = str(error.value)
    assert "\n" not in message and "'heatmap'" in message and all(repr(k) in message for k in BUILT_IN)
    with pytest.raises(ValueError, match="task 'heat': unknown target kind 'heatmap'; valid: "):
        TaskSpec("heat", 1, "heatmap", "unused", 1.0, "mae", False)
    with pytest.raises(ValueError, match="unknown target kind 'heatmap'"):  # no silent fall-through in a pipeline
        warp(torch.rand(3, 4, 4), {"t": torch.rand(1, 4, 4)}, {"t": "heatmap"}, similarity(1.0, 0.0, False))


def test_a_task_must_match_its_kinds_channels():
    with pytest.raises(ValueError, match="'normals' target has 3 channel"):
        TaskSpec("normals", 2, "normals", "normals_l1", 1.0, "mean", False)


def test_register_rejects_a_duplicate_or_incomplete_kind():
    with pytest.raises(ValueError, match="already registered"):
        register(target_kind("depth"))
    with pytest.raises(ValueError, match=r"\['draw'\] must be callable"):
        replace(HEATMAP, draw="magma")
    with pytest.raises(ValueError, match="at least one metric"):
        replace(HEATMAP, metrics={})
    with pytest.raises(ValueError, match=r"fields \['geometry', 'metrics'\] are not set"):
        replace(HEATMAP, geometry=None, metrics=None)
    assert "heatmap" not in KINDS


class _ToyDataset(MultiTaskDataset):
    """A dataset serving a label task and a heatmap task from 'cached' arrays, through the real sample pipeline."""

    def __init__(self, augment: str | None):
        super().__init__("toy", "train", {"semseg": "label", "heat": "heatmap"}, SIZE, augment)
        g = torch.Generator().manual_seed(0)
        self.cache = {
            "semseg": torch.randint(CLASSES, (4, SIZE, SIZE), generator=g).to(torch.uint8),
            "heat": torch.rand(4, SIZE, SIZE, generator=g),
        }

    def __len__(self) -> int:
        return 4

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        targets = {task: target_kind(self.kinds[task]).from_cache(a[index]) for task, a in self.cache.items()}
        return torch.rand(3, SIZE, SIZE), targets, f"toy_{index}"


def test_a_kind_registered_in_one_place_goes_end_to_end(heatmap):
    check_complete(heatmap)
    task = TaskSpec("heat", 1, "heatmap", "unused", 1.0, "mae", False)

    # the sample pipeline and the trainer's collation
    torch.manual_seed(0)
    batch = next(iter(DataLoader(_ToyDataset("paper"), batch_size=BATCH)))
    assert batch["targets"]["heat"].shape == (BATCH, 1, SIZE, SIZE) and batch["targets"]["heat"].dtype == torch.float32
    assert batch["targets"]["semseg"].shape == (BATCH, SIZE, SIZE) and batch["targets"]["semseg"].dtype == torch.int64

    # its tasks train with its own official profile: scale-rotate, no photometric set (a label task adds it)
    assert len(paper_steps({"heat": "heatmap"}, ["heat"])) == 1
    assert len(paper_steps({"heat": "heatmap", "semseg": "label"}, ["heat", "semseg"])) == 2

    # padding of a heatmap without any valid pixel keeps it void: -1, never the pad value 0
    _, out = warp(
        torch.rand(3, SIZE, SIZE),
        {"heat": torch.full((1, SIZE, SIZE), -1.0)},
        {"heat": "heatmap"},
        similarity(0.5, 0.0, False),
    )
    assert (out["heat"] == -1).all()

    # its metric: a perfect prediction (the logit of the target) scores 0 and invalid pixels do not count
    target = heatmap.random(1, BATCH, SIZE, torch.Generator().manual_seed(3))
    metric = build_metric(task, edge_max_dist=0.01)
    target[:, :, 0] = -1
    logits = torch.logit(target.clamp(min=0.01).double())
    logits[:, :, 0] = 50.0  # wrong on the void row only
    metric.update(logits, target)
    assert isinstance(metric, MeanAbsoluteError) and metric.compute()["mae"] == pytest.approx(0.0, abs=1e-12)

    # drawing masks the void pixels
    fig, ax = plt.subplots()
    try:
        show(ax, "heatmap", target[0])
        drawn = ax.images[0].get_array()
        assert drawn.mask[0].all() and not drawn.mask[1:].any()
    finally:
        plt.close(fig)
