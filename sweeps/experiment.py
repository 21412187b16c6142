"""Experiment files: what is fixed, which axes vary, which seeds; and the grid they span.

An experiment file (``experiments/*.yaml``) looks like::

    name: embedding
    reproduces: TSN paper, task-embedding ablation
    fixed:                      # config sections applied to every trial
      model: {architecture: tsn}
    axes:
      scientific:               # the ablation axes (dotted config keys)
        model.encoding: [orthogonal, gaussian]
        model.embedding_dim: [50, 100]
      nuisance:                 # repeated, not compared
        train.seed: [1337, 1338, 1339]
    baseline: single_task       # Delta-m against single-task runs of the same seed (or: none)
    train: true                 # false: an accounting experiment (no training)

The grid is the product of every axis. Each grid point is resolved into a full :class:`tsn.config.RunConfig`
(budget <- fixed <- point <- overrides) and validated before any training starts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tsn.config import (
    BUDGETS_FILE,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_data_root,
    check_memory,
    load_budgets,
    load_yaml,
    merge,
    resolve,
)

from . import records as R

EXPERIMENT_KEYS = ("name", "description", "reproduces", "fixed", "axes", "baseline", "train")
AXIS_KINDS = ("scientific", "nuisance", "fixed")
BASELINES = ("single_task", "none")
SEED_KEY = "train.seed"
MAX_GRID_POINTS = 10_000  # a grid beyond this is refused before any point is enumerated


@dataclass(frozen=True)
class GridPoint:
    params: dict[str, Any]  # axis name -> value
    config: RunConfig

    def label(self) -> str:
        return " ".join(f"{key.split('.')[-1]}={value}" for key, value in self.params.items())


@dataclass(frozen=True)
class Experiment:
    name: str
    path: str
    fixed: Mapping[str, Any]
    axes: Mapping[str, list[Any]]  # every axis, scientific then nuisance
    scientific: tuple[str, ...]
    baseline: str = "single_task"
    train: bool = True
    description: str = ""
    reproduces: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)  # the file as loaded, stored on the study

    def study_name(self, dataset: str, budget: str) -> str:
        return R.study_name(self.name, dataset, budget)

    def grid(
        self, budget: str, dataset: str | None = None, overrides: Sequence[str] = (), max_seeds: int | None = None
    ) -> list[GridPoint]:
        """Every grid point resolved and validated; raises a one-line ConfigError naming the first bad one."""
        axes = dict(self.axes)
        if max_seeds is not None and SEED_KEY in axes:
            axes[SEED_KEY] = axes[SEED_KEY][:max_seeds]
        points = []
        for values in itertools.product(*axes.values()):
            params = dict(zip(axes, values))
            points.append(GridPoint(params, self.resolve(budget, dataset, params, overrides)))
        return points

    def resolve(
        self, budget: str, dataset: str | None, params: Mapping[str, Any], overrides: Sequence[str] = ()
    ) -> RunConfig:
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = value
        try:
            cfg = resolve(budget, extra=self.fixed)
            if dataset:
                cfg = merge(cfg, {"data": {"dataset": dataset}})
            cfg = apply_overrides(merge(cfg, nested), overrides).validate()
            check_data_root(cfg)
            check_memory(cfg)
            return cfg
        except ConfigError as err:
            where = f" (grid point {dict(params)})" if params else ""
            raise ConfigError(f"{self.path}: {err}{where}") from None


def _fail(path: str, message: str) -> None:
    raise ConfigError(f"{path}: {message}")


def parse_experiment(data: Any, path: str) -> Experiment:
    if not isinstance(data, Mapping):
        _fail(path, f"an experiment file must be a mapping with keys {', '.join(EXPERIMENT_KEYS)}")
    unknown = sorted(set(data) - set(EXPERIMENT_KEYS))
    if unknown:
        _fail(path, f"unknown key {unknown[0]!r}; valid: {', '.join(EXPERIMENT_KEYS)}")
    name = data.get("name")
    try:
        R.check_experiment_name(name)
    except ValueError as err:
        _fail(path, str(err))
    axes_by_kind = data.get("axes") or {}
    if not isinstance(axes_by_kind, Mapping):
        _fail(path, f"axes must map {', '.join(AXIS_KINDS)} to {{key: [values]}}")
    axes: dict[str, list[Any]] = {}
    scientific: list[str] = []
    for kind, entries in axes_by_kind.items():
        if kind not in AXIS_KINDS:
            _fail(path, f"unknown axis kind {kind!r}; valid: {', '.join(AXIS_KINDS)}")
        if not isinstance(entries, Mapping):
            _fail(path, f"axes.{kind} must map dotted config keys to lists of values")
        for key, values in entries.items():
            if not isinstance(key, str) or "." not in key:
                _fail(path, f"axis {key!r} must be a dotted config key such as model.embedding_dim")
            if not isinstance(values, list) or not values:
                _fail(path, f"axis {key} must be a non-empty list of values, got {values!r}")
            if len(set(map(repr, values))) != len(values):
                _fail(path, f"axis {key} repeats a value: {values}")
            if key in axes:
                _fail(path, f"axis {key} is declared twice")
            axes[key] = values
            if kind == "scientific":
                scientific.append(key)
    size = math.prod(len(values) for values in axes.values())
    if size > MAX_GRID_POINTS:
        _fail(
            path,
            f"the grid has {size:,} points ({' x '.join(str(len(v)) for v in axes.values())}), more than "
            f"the maximum {MAX_GRID_POINTS:,}; split the experiment or shorten its axes",
        )
    baseline = data.get("baseline", "single_task")
    if baseline not in BASELINES:
        _fail(path, f"baseline: {baseline!r} is not valid; valid: {', '.join(BASELINES)}")
    train = data.get("train", True)
    if not isinstance(train, bool):
        _fail(path, f"train must be true or false, got {train!r}")
    if train and not axes:
        _fail(path, "the grid is empty: declare at least one axis under axes.scientific or axes.nuisance")
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, Mapping):
        _fail(path, "fixed must map config sections (model, data, train) to {key: value}")
    try:
        merge(RunConfig(), fixed)
    except ConfigError as err:
        _fail(path, f"fixed: {err}")
    return Experiment(
        name=name,
        path=path,
        fixed=fixed,
        axes=axes,
        scientific=tuple(scientific),
        baseline=baseline,
        train=train,
        description=str(data.get("description", "")),
        reproduces=str(data.get("reproduces", "")),
        source=dict(data),
    )


def load_experiment(path: str | Path) -> Experiment:
    return parse_experiment(load_yaml(path), str(path))


def budget_max_seeds(budget: str) -> int | None:
    """A budget may cap the seeds of every sweep (``sweep: {max_seeds: 1}`` for smoke)."""
    profile = load_budgets().get(budget) or {}
    return (profile.get("sweep") or {}).get("max_seeds")


EXPERIMENTS_DIR = BUDGETS_FILE.parent


def experiment_files(root: Path = EXPERIMENTS_DIR) -> list[Path]:
    """Every experiment file: ``experiments/*.yaml`` and ``experiments/diagnosis/*.yaml`` (budgets.yaml is none)."""
    return sorted(p for p in [*root.glob("*.yaml"), *root.glob("diagnosis/*.yaml")] if p != root / BUDGETS_FILE.name)
