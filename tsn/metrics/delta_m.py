"""Multi-task performance Δm against single-task baselines, under each codebase's sign and scale convention.

Keys of the metric mappings are task names (one primary metric per task), or ``"task/metric"`` when a task
contributes several metrics; ``higher_is_better`` uses the same keys.

- ``astmt`` (ASTMT / TSN, the paper's "average drop"): −mean over keys of the relative improvement, in percent;
  positive = worse.
- ``vandenhende``: mean over keys of the relative improvement, in percent; positive = better.
- ``libmtl``: relative improvements averaged within each task (keys sharing the part before ``/``) and then over
  tasks, as a fraction; positive = better.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import numpy as np

CONVENTIONS = ("astmt", "vandenhende", "libmtl")


def relative_differences(
    model_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> dict[str, float]:
    """Per key, (−1)^{1−h}·(M_model − M_base)/M_base × 100: the relative improvement in percent (positive = better)."""
    keys = set(model_metrics)
    if keys != set(baseline_metrics) or keys != set(higher_is_better):
        raise ValueError(
            "model, baseline and higher_is_better must name the same metrics: "
            f"{sorted(model_metrics)} vs {sorted(baseline_metrics)} vs {sorted(higher_is_better)}"
        )
    if not keys:
        raise ValueError("no metrics given")
    differences = {}
    for key in model_metrics:
        base = baseline_metrics[key]
        if base == 0:
            raise ValueError(f"baseline of {key!r} is 0: the relative difference is undefined")
        sign = 1.0 if higher_is_better[key] else -1.0
        differences[key] = sign * (model_metrics[key] - base) / base * 100
    return differences


def delta_m(
    model_metrics: Mapping[str, float],
    baseline_metrics: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
    convention: str = "astmt",
) -> float:
    """Δm of a model against the single-task baseline, in the named convention (see the module docstring)."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown Δm convention {convention!r}; valid: {list(CONVENTIONS)}")
    differences = relative_differences(model_metrics, baseline_metrics, higher_is_better)
    if convention == "libmtl":
        per_task: dict[str, list[float]] = defaultdict(list)
        for key, value in differences.items():
            per_task[key.split("/", 1)[0]].append(value)
        return float(np.mean([np.mean(v) for v in per_task.values()])) / 100
    mean = float(np.mean(list(differences.values())))
    return -mean if convention == "astmt" else mean
