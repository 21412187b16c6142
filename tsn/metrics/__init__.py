"""Evaluation metrics, one module per metric family, built from a task's registry entry and its target kind.

Every metric follows the accumulator protocol of ``tsn.metrics.base.Metric`` (``update``, ``compute``,
``state_dict``, ``merge``) and ``compute`` returns a ``MetricResult`` whose every value names its convention.
The primary (Δm) value of a task is ``result[task.metric]``.
"""

from __future__ import annotations

from collections.abc import Callable

from tsn.metrics.base import Metric, MetricResult
from tsn.metrics.delta_m import delta_m, relative_differences
from tsn.metrics.depth import DepthMetric
from tsn.metrics.edge import FastEdgeMetric, SeismEdgeMetric
from tsn.metrics.normals import NormalsMetric
from tsn.metrics.saliency import SaliencyMetric
from tsn.metrics.segmentation import SegmentationMetric
from tsn.target_kinds import target_kind
from tsn.tasks import TaskSpec

EDGE_EVALUATORS: dict[str, Callable[[float], Metric]] = {"seism": SeismEdgeMetric, "fast": FastEdgeMetric}


def build_metric(task: TaskSpec, *, edge_max_dist: float, edge_evaluator: str = "fast") -> Metric:
    """The metric accumulator for ``task``: its target kind's builder for its primary metric (tsn.target_kinds)."""
    kind = target_kind(task.target)
    if task.metric not in kind.metrics:
        raise ValueError(
            f"task {task.name!r}: no metric {task.metric!r} for target kind {kind.name!r}; "
            f"valid: {sorted(kind.metrics)}"
        )
    if edge_evaluator not in EDGE_EVALUATORS:
        raise ValueError(f"unknown edge evaluator {edge_evaluator!r}; valid: {sorted(EDGE_EVALUATORS)}")
    return kind.metrics[task.metric](task, edge_max_dist, edge_evaluator)


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
