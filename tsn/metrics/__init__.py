"""Evaluation metrics, one module per metric family, built from a task's registry entry.

Every metric follows the accumulator protocol of ``tsn.metrics.base.Metric`` (``update``, ``compute``,
``state_dict``, ``merge``) and ``compute`` returns a ``MetricResult`` whose every value names its convention.
The primary (Δm) value of a task is ``result[task.metric]``.
"""

from __future__ import annotations

from typing import Callable

from tsn.metrics.base import Metric, MetricResult
from tsn.metrics.delta_m import delta_m, relative_differences
from tsn.metrics.depth import DepthMetric
from tsn.metrics.edge import FastEdgeMetric, SeismEdgeMetric
from tsn.metrics.normals import NormalsMetric
from tsn.metrics.saliency import SaliencyMetric
from tsn.metrics.segmentation import SegmentationMetric
from tsn.tasks import TaskSpec

EDGE_EVALUATORS: dict[str, Callable[[float], Metric]] = {"seism": SeismEdgeMetric, "fast": FastEdgeMetric}

_Builder = Callable[[TaskSpec, float, str], Metric]  # (task, edge_max_dist, edge_evaluator) -> metric


def _segmentation(task: TaskSpec, *_: object) -> Metric:
    return SegmentationMetric(task.channels, **task.metric_kwargs)


def _edge(_: TaskSpec, max_dist: float, evaluator: str) -> Metric:
    return EDGE_EVALUATORS[evaluator](max_dist)


_BUILDERS: dict[tuple[str, str], _Builder] = {
    ("label", "miou"): _segmentation,
    ("binary", "odsF"): _edge,
    ("binary", "miou"): lambda *_: SaliencyMetric(),
    ("normals", "mean"): lambda *_: NormalsMetric(),
    ("depth", "rmse"): lambda *_: DepthMetric(),
}


def build_metric(task: TaskSpec, *, edge_max_dist: float, edge_evaluator: str = "fast") -> Metric:
    """The metric accumulator for ``task``, chosen by its target kind and primary metric."""
    key = (task.target, task.metric)
    if key not in _BUILDERS:
        raise ValueError(f"task {task.name!r}: no metric for target/metric {key}; valid: {sorted(_BUILDERS)}")
    if edge_evaluator not in EDGE_EVALUATORS:
        raise ValueError(f"unknown edge evaluator {edge_evaluator!r}; valid: {sorted(EDGE_EVALUATORS)}")
    return _BUILDERS[key](task, edge_max_dist, edge_evaluator)


__all__ = [
    "EDGE_EVALUATORS",
    "DepthMetric",
    "FastEdgeMetric",
    "Metric",
    "MetricResult",
    "NormalsMetric",
    "SaliencyMetric",
    "SegmentationMetric",
    "SeismEdgeMetric",
    "build_metric",
    "delta_m",
    "relative_differences",
]
