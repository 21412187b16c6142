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
    search:                     # optional: sample configurations per grid point (sweeps.search)
      sampler: tpe              # Optuna's TPESampler, seeded (the only sampler)
      trials: 12                # sampled configurations per grid point (a budget may cap it)
      seed: 0                   # the sampler's seed
      objective: mean_val_loss  # minimised
      startup_trials: 10        # random samples before TPE models the finished ones (Optuna's default)
      space:                    # dotted keys of numeric config fields, each a range
        train.lr_decoder: {low: 1.0e-4, high: 1.0e-2, log: true}

The grid is the product of every axis. Each grid point is resolved into a full :class:`tsn.config.RunConfig`
(budget <- fixed <- point <- overrides) and validated before any training starts. With ``search:`` the grid points
are strata: each trains ``trials`` configurations whose searched keys are sampled, each resolved the same way with
the sampled values in its point.
"""

from __future__ import annotations

import itertools
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tsn.config import (
    BUDGETS_FILE,
    SECTIONS,
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
from tsn.domains import SEED_MAX, check_fields

from . import records as R

EXPERIMENT_KEYS = ("name", "description", "reproduces", "fixed", "axes", "baseline", "train", "search")
AXIS_KINDS = ("scientific", "nuisance", "fixed")
BASELINES = ("single_task", "none")
SEED_KEY = "train.seed"
MAX_GRID_POINTS = 10_000  # a grid beyond this is refused before any point is enumerated (a search's: x trials)
SEARCH_KEYS = ("sampler", "trials", "seed", "objective", "startup_trials", "space")
SAMPLERS = ("tpe",)
OBJECTIVES = ("mean_val_loss",)  # a key of the Trainer's summary, minimised
RANGE_KEYS = ("low", "high", "log")
TPE_STARTUP_TRIALS = 10  # Optuna's TPESampler default


@dataclass(frozen=True)
class SearchParam:
    """One searched config key: values in ``low .. high`` (log-uniform with ``log``), integers for an int field."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "integer": self.integer}


@dataclass(frozen=True)
class Search:
    """An experiment file's ``search:`` section (see the module's docstring)."""

    trials: int
    space: tuple[SearchParam, ...]
    seed: int = 0
    sampler: str = "tpe"
    objective: str = "mean_val_loss"
    startup_trials: int = TPE_STARTUP_TRIALS

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.space)

    def trials_at(self, budget: str) -> int:
        """``trials`` after the budget's cap (``sweep: {max_search_trials: N}``)."""
        cap = budget_max_search_trials(budget)
        return self.trials if cap is None else min(self.trials, cap)

    def to_dict(self, budget: str) -> dict[str, Any]:
        """What a search study stores (``records.SEARCH``): the section as run at ``budget``."""
        return {
            "sampler": self.sampler,
            "trials": self.trials_at(budget),
            "seed": self.seed,
            "objective": self.objective,
            "startup_trials": self.startup_trials,
            "space": {p.key: p.to_dict() for p in self.space},
        }

    def describe(self) -> str:
        ranges = "; ".join(f"`{p.key}` ∈ [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}" for p in self.space)
        return f"{ranges}; {self.trials} configurations per grid point, {self.sampler.upper()} seed {self.seed}"


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
    search: Search | None = None  # sample configurations per grid point (sweeps.search) instead of one each

    def study_name(self, dataset: str, budget: str) -> str:
        return R.study_name(self.name, dataset, budget)

    def grid(
        self, budget: str, dataset: str | None = None, overrides: Sequence[str] = (), max_seeds: int | None = None
    ) -> list[GridPoint]:
        """Every grid point resolved and validated; raises a one-line ConfigError naming the first bad one.

        Nuisance axes (seeds) vary slowest: a sweep finishes one replicate of the whole table before the next seed,
        so a sweep stopped early, or run in pieces, leaves complete replicates rather than complete rows."""
        axes = dict(self.axes)
        if max_seeds is not None and SEED_KEY in axes:
            axes[SEED_KEY] = axes[SEED_KEY][:max_seeds]
        order = [*(a for a in axes if a not in self.scientific), *self.scientific]
        points = []
        for values in itertools.product(*(axes[a] for a in order)):
            chosen = dict(zip(order, values))
            params = {a: chosen[a] for a in axes}
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


def _numeric_field(key: str) -> type | None:
    """int or float when ``key`` (``section.name``) is a numeric config field (``X | None`` included), else None."""
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    if cls is None or name not in {f.name for f in fields(cls)}:
        return None
    annotation = typing.get_type_hints(cls)[name]
    options = [o for o in typing.get_args(annotation) if o is not type(None)] or [annotation]
    return options[0] if len(options) == 1 and options[0] in (int, float) else None


def _number(value: Any, kind: type) -> float | int | None:
    """``value`` as a number of ``kind`` (YAML 1.1 reads ``1e-3`` as a string: accepted for a float), else None."""
    if isinstance(value, bool):
        return None
    if kind is int:
        return value if isinstance(value, int) else None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _int_in(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _count(path: str, key: str, value: Any, low: int, high: int) -> int:
    if not _int_in(value, low, high):
        _fail(path, f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _search_param(path: str, key: Any, spec: Any) -> SearchParam:
    where = f"search.space.{key}"
    kind = _numeric_field(key) if isinstance(key, str) else None
    if kind is None:
        numeric = sorted(
            f"{s}.{f.name}" for s in SECTIONS for f in fields(SECTIONS[s]) if _numeric_field(f"{s}.{f.name}")
        )
        _fail(path, f"{where}: not a numeric config key; valid: {', '.join(numeric)}")
    if not isinstance(spec, Mapping):
        _fail(path, f"{where} must be a mapping {{low: ..., high: ..., log: true|false}}, got {spec!r}")
    unknown = sorted(set(spec) - set(RANGE_KEYS), key=str)
    if unknown:
        _fail(path, f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(RANGE_KEYS)}")
    bounds = {}
    for end in ("low", "high"):
        if end not in spec:
            _fail(path, f"{where}.{end} is missing")
        bounds[end] = _number(spec[end], kind)
        if bounds[end] is None:
            what = "an integer" if kind is int else "a finite number"
            _fail(path, f"{where}.{end} must be {what} ({key} is {kind.__name__}), got {spec[end]!r}")
    low, high, log = bounds["low"], bounds["high"], spec.get("log", False)
    if not isinstance(log, bool):
        _fail(path, f"{where}.log must be true or false, got {log!r}")
    if not low < high:
        _fail(path, f"{where}: low must be below high, got low={low:g}, high={high:g}")
    if log and low <= 0:
        _fail(path, f"{where}: a log range needs low > 0, got low={low:g}")
    section, _, name = key.partition(".")
    for end, value in bounds.items():  # each end within the field's domain; the rest is checked per budget
        try:
            check_fields(getattr(merge(RunConfig(), {section: {name: value}}), section), section)
        except ValueError as err:
            _fail(path, f"{where}.{end}: {err}")
    return SearchParam(key, low, high, log, kind is int)


def parse_search(data: Any, path: str) -> Search:
    """The ``search:`` section, validated: each bad key is a one-line ConfigError naming the file and the key."""
    if not isinstance(data, Mapping):
        _fail(path, f"search must be a mapping with keys {', '.join(SEARCH_KEYS)}")
    unknown = sorted(set(data) - set(SEARCH_KEYS), key=str)
    if unknown:
        _fail(path, f"unknown key search.{unknown[0]}; valid: {', '.join(SEARCH_KEYS)}")
    sampler = data.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        _fail(path, f"search.sampler: {sampler!r} is not valid; valid: {', '.join(SAMPLERS)}")
    objective = data.get("objective", "mean_val_loss")
    if objective not in OBJECTIVES:
        _fail(path, f"search.objective: {objective!r} is not valid; valid: {', '.join(OBJECTIVES)}")
    if "trials" not in data:
        _fail(path, "search.trials is missing: how many configurations to sample per grid point")
    trials = _count(path, "search.trials", data["trials"], 1, MAX_GRID_POINTS)
    seed = _count(path, "search.seed", data.get("seed", 0), 0, SEED_MAX)
    startup = _count(path, "search.startup_trials", data.get("startup_trials", TPE_STARTUP_TRIALS), 0, MAX_GRID_POINTS)
    space = data.get("space")
    if not isinstance(space, Mapping) or not space:
        _fail(path, "search.space must map at least one dotted config key to {low: ..., high: ..., log: ...}")
    return Search(trials, tuple(_search_param(path, k, v) for k, v in space.items()), seed, sampler, objective, startup)


def _check_search(path: str, search: Search, axes: Mapping[str, list[Any]], baseline: str, train: bool) -> None:
    """What a search needs of the rest of the file."""
    for key in search.keys:
        if key in axes:
            _fail(path, f"search.space.{key} is an axis too; search it or list its values, not both")
    if baseline != "none":
        _fail(path, "search needs baseline: none (the objective is each trial's own, not Δm against a baseline)")
    if not train:
        _fail(path, "search needs train: true")
    if len(axes.get(SEED_KEY, ())) > 1:
        _fail(path, f"search: axis {SEED_KEY} must have one value (each sampled configuration trains once)")
    size = math.prod(len(values) for values in axes.values()) * search.trials
    if size > MAX_GRID_POINTS:
        _fail(path, f"search: {size:,} trials (grid points x search.trials), more than the maximum {MAX_GRID_POINTS:,}")


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
    search = None
    if "search" in data:
        search = parse_search(data["search"], path)
        _check_search(path, search, axes, baseline, train)
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
        search=search,
    )


def load_experiment(path: str | Path) -> Experiment:
    return parse_experiment(load_yaml(path), str(path))


def budget_max_seeds(budget: str) -> int | None:
    """A budget may cap the seeds of every sweep (``sweep: {max_seeds: 1}`` for smoke)."""
    profile = load_budgets().get(budget) or {}
    return (profile.get("sweep") or {}).get("max_seeds")


def budget_reference_seeds(budget: str) -> list[int]:
    """The seeds whose single-task runs the reference of every baseline configuration pools besides the grid's own
    (``sweep: {reference_seeds: [...]}``; none by default). The reference's seed noise bounds every comparison
    with single-task itself (``analysis.claims``, C1), and these runs are shared by every experiment at the budget,
    so each costs one single-task run per baseline configuration, once."""
    profile = load_budgets().get(budget) or {}
    seeds = (profile.get("sweep") or {}).get("reference_seeds", [])
    if not isinstance(seeds, list) or not all(_int_in(s, 0, SEED_MAX) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"{BUDGETS_FILE}: {budget}.sweep.reference_seeds must be a list of distinct seeds "
            f"(integers in [0, {SEED_MAX}]), got {seeds!r}"
        )
    return seeds


def budget_max_search_trials(budget: str) -> int | None:
    """A budget may cap the configurations a search samples per grid point (``sweep: {max_search_trials: 2}``)."""
    profile = load_budgets().get(budget) or {}
    cap = (profile.get("sweep") or {}).get("max_search_trials")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ConfigError(f"{BUDGETS_FILE}: {budget}.sweep.max_search_trials must be a positive integer, got {cap!r}")
    return cap


EXPERIMENTS_DIR = BUDGETS_FILE.parent


def experiment_files(root: Path = EXPERIMENTS_DIR) -> list[Path]:
    """Every experiment file: ``experiments/*.yaml`` and ``experiments/diagnosis/*.yaml`` (budgets.yaml is none)."""
    return sorted(p for p in [*root.glob("*.yaml"), *root.glob("diagnosis/*.yaml")] if p != root / BUDGETS_FILE.name)
