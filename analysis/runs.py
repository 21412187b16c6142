"""Stored runs -> tidy long pandas frames, from the Optuna storage or from W&B, cached locally as Parquet.

Two frames per study:

- ``metrics``: one row per study × trial × task × metric × convention (``value``), with the grid point
  (``grid`` as JSON and the usual axes as columns: architecture, encoding, d, schedule, seed) and provenance
  (config_hash, git_commit, trial, state, run_dir, wandb_run_id), and ``objective``, the value the study was told.
  A trial without metrics (failed, running, pruned) keeps one row with an empty task, so that nothing is silently
  dropped. A search study's searched keys (``sweeps.records.SEARCH``) are no part of ``grid``: its config has them.
- ``history``: one row per trial × epoch × task with that epoch's validation primary metric (and the Δm stored then).

Both sources are first turned into :class:`TrialRecord` objects, so the rest of the code does not know where a
run came from. A trial's grid point is its ``trial.params`` completed from its stored config for the study's other
axes (the shared single-task trials of ``sweeps.records.baseline_study_name`` only carry ``train.seed``).

W&B runs are read as ``sweeps.tracking`` writes them: ``group`` = study, ``name`` = ``{study}-{trial number}``,
``config`` = the RunConfig dict plus ``config_hash``, ``summary`` = ``final/{task}`` (primary metric),
``final/{task}/{metric}``, ``delta_m``, ``params``, ``macs``, ``wall_time_s``, ``fail_reason``; per-epoch rows of
``scan_history()`` keyed ``val/{task}``, ``val/delta_m`` at step = epoch. W&B does not hold the metric conventions,
the git commit or the run folder: those columns stay empty, and each task's primary metric and direction come
from the task registry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from sweeps import records as R
from tsn.errors import first_line, redact

WANDB_STATES = {"finished": "COMPLETE", "failed": "FAIL", "crashed": "FAIL", "killed": "FAIL", "running": "RUNNING"}

# The grid axes that get their own column (axis name in trial.params / config path -> column).
AXIS_COLUMNS = {
    "model.architecture": "architecture",
    "model.encoding": "encoding",
    "model.embedding_dim": "d",
    "train.schedule": "schedule",
    "train.seed": "seed",
}
SEED_AXIS = "train.seed"
TRIAL_COLUMNS = [
    "study",
    "experiment",
    "dataset",
    "budget",
    "trial",
    "state",
    "grid",
    *AXIS_COLUMNS.values(),
    "config_hash",
    "baseline_config_hash",
    "git_commit",
    "n_params",
    "macs",
    "wall_time_s",
    "delta_m_stored",
    "objective",
    "fail_reason",
    "run_dir",
    "wandb_run_id",
    "config",
]
METRIC_COLUMNS = [*TRIAL_COLUMNS, "task", "metric", "convention", "value", "primary", "higher_is_better"]
# position: the task's place in that epoch's training order (0 = trained first; history's task_order)
HISTORY_COLUMNS = [
    "study",
    "trial",
    "state",
    *AXIS_COLUMNS.values(),
    "epoch",
    "task",
    "value",
    "delta_m_stored",
    "position",
]
NOT_EVALUATED = "not evaluated at epoch {epoch}"


SOURCES = ("optuna", "wandb", "export")


class AnalysisError(ValueError):
    """Input the analysis cannot use (unknown study, unreachable storage, nothing finished); one line."""


@dataclass
class TrialRecord:
    """One trial, whichever store it came from. ``history`` is loaded lazily (W&B: a full history scan)."""

    study: str
    number: int
    state: str  # an optuna.trial.TrialState name
    params: dict[str, Any]
    attrs: dict[str, Any]
    key: str  # changes whenever the stored trial changes: the cache's validity key
    history: Callable[[], list[dict[str, Any]]] = field(default=lambda: [])
    value: float | None = None  # the objective the study was told (None: not finished)


@dataclass
class StudyData:
    """A study's frames and its grid (axis -> choices), from which missing grid points are derived."""

    name: str
    metrics: pd.DataFrame
    history: pd.DataFrame
    space: dict[str, list[Any]]
    grid: list[dict[str, Any]] | None = None  # the study's own grid when it stored one (budget seed caps)
    epoch: int | None = None  # the evaluation epoch the metrics are of (None: each trial's last)
    # a search study's plan (sweeps.records.SEARCH): its grid points are strata, each with several trials; the
    # searched keys are left out of each trial's point (``grid``) and read from its config
    search: dict[str, Any] | None = None

    def missing_points(self) -> list[dict[str, Any]]:
        """Grid points (seed included) without a COMPLETE trial with metrics: never run, still running, failed,
        pruned or (at a chosen epoch) not evaluated there."""
        finished = self.metrics[(self.metrics["state"] == "COMPLETE") & self.metrics["primary"].fillna(False)]
        done = finished["grid"].unique()
        done_points = {json.dumps(json.loads(g), sort_keys=True) for g in done}
        axes = sorted(self.space)
        if self.grid is not None:
            points = [{a: p.get(a) for a in axes} for p in self.grid]
        else:
            points = [dict(zip(axes, values)) for values in product(*(self.space[a] for a in axes))]
        return [p for p in points if json.dumps(p, sort_keys=True) not in done_points]


# ------------------------------------------------------------------------------------------------ conversion
def _axis_value(axis: str, params: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
    if axis in params:
        return params[axis]
    section, _, key = axis.partition(".")
    return (config.get(section) or {}).get(key)


def _trial_row(record: TrialRecord) -> dict[str, Any]:
    attrs, config = record.attrs, record.attrs.get(R.CONFIG) or {}
    delta = attrs.get(R.DELTA_M)
    row: dict[str, Any] = {
        "study": record.study,
        "experiment": attrs.get(R.EXPERIMENT),
        "dataset": attrs.get(R.DATASET),
        "budget": attrs.get(R.BUDGET),
        "trial": record.number,
        "state": record.state,
        "grid": json.dumps(record.params, sort_keys=True),
        "config_hash": attrs.get(R.CONFIG_HASH),
        "baseline_config_hash": _baseline_hash(attrs),
        "git_commit": attrs.get(R.GIT_COMMIT),
        "n_params": attrs.get(R.PARAMS),
        "macs": attrs.get(R.MACS),
        "wall_time_s": attrs.get(R.WALL_TIME),
        "delta_m_stored": delta.get("value") if isinstance(delta, Mapping) else delta,
        "objective": record.value,
        "fail_reason": attrs.get(R.FAIL_REASON),
        "run_dir": attrs.get(R.RUN_DIR),
        "wandb_run_id": attrs.get(R.WANDB_RUN_ID),
        "config": json.dumps(config, sort_keys=True) if config else None,
    }
    for axis, column in AXIS_COLUMNS.items():
        row[column] = _axis_value(axis, record.params, config)
    if row["architecture"] is None:
        row["architecture"] = attrs.get(R.ARCHITECTURE)
    if row["seed"] is None:
        row["seed"] = attrs.get(R.SEED)
    return row


def _baseline_hash(attrs: Mapping[str, Any]) -> str | None:
    """The config hash of the single-task trial the trial's stored Δm used (None: stored before baselines had one)."""
    used = attrs.get(R.BASELINE_RUNS) or []
    return used[0].get("config_hash") if used else None


def at_epoch(record: TrialRecord, epoch: int | None) -> TrialRecord:
    """The record as of evaluation epoch ``epoch``: its metrics, primary values and Δm from ``evaluations``.

    A finished trial without that evaluation keeps its final metrics when ``epoch`` is its last epoch, else it loses
    its metrics and says why (it is then a missing grid point). ``epoch`` None: the final metrics, unchanged.
    """
    if epoch is None:
        return record
    attrs = dict(record.attrs)
    evaluation = (attrs.get(R.EVALUATIONS) or {}).get(str(epoch))
    last = ((attrs.get(R.CONFIG) or {}).get("train") or {}).get("epochs")
    if evaluation is not None:
        attrs.update(
            {R.METRICS: evaluation["metrics"], R.PRIMARY: evaluation["primary"], R.DELTA_M: evaluation.get("delta_m")}
        )
    elif record.state == "COMPLETE" and last != epoch:
        attrs = {k: v for k, v in attrs.items() if k not in (R.METRICS, R.PRIMARY, R.DELTA_M)}
        attrs[R.FAIL_REASON] = NOT_EVALUATED.format(epoch=epoch)
    return replace(record, attrs=attrs, key=f"{record.key}|epoch={epoch}")


def record_rows(record: TrialRecord) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``metrics`` and ``history`` rows of one trial (typed once per study, in ``_concat``: per trial, the typing
    took most of a report's loading time)."""
    base = _trial_row(record)
    rows = []
    for task, entry in (record.attrs.get(R.METRICS) or {}).items():
        conventions = entry.get("conventions") or {}
        for metric, value in (entry.get("values") or {}).items():
            rows.append(
                {
                    **base,
                    "task": task,
                    "metric": metric,
                    "convention": conventions.get(metric),
                    "value": value,
                    "primary": metric == entry.get("primary"),
                    "higher_is_better": entry.get("higher_is_better"),
                }
            )
    if not rows:
        rows.append(
            {
                **base,
                "task": None,
                "metric": None,
                "convention": None,
                "value": math.nan,
                "primary": None,
                "higher_is_better": None,
            }
        )
    history = []
    for epoch in record.history():
        order = list(epoch.get("task_order") or [])
        for task, value in (epoch.get("metrics") or {}).items():
            history.append(
                {
                    **{c: base[c] for c in HISTORY_COLUMNS if c in base},
                    "epoch": epoch.get("epoch"),
                    "task": task,
                    "value": value,
                    "delta_m_stored": epoch.get("delta_m"),
                    "position": order.index(task) if task in order else None,
                }
            )
    return rows, history


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """One dtype per column whatever the rows hold, so cached and fresh frames concatenate and round-trip."""
    floats = ("n_params", "macs", "wall_time_s", "delta_m_stored", "objective", "value")
    ints = ("trial", "d", "seed", "epoch", "position")
    for column in frame.columns:
        if column in floats:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        elif column in ints:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
        elif column in ("primary", "higher_is_better"):
            frame[column] = frame[column].astype("boolean")
        else:
            frame[column] = frame[column].astype("string")
    return frame


def _space(records: list[TrialRecord], declared: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
    """The grid: declared choices per axis plus every value a trial used; completes each record's point in place."""
    space = {axis: list(choices) for axis, choices in declared.items()}
    for record in records:
        for axis in record.params:
            space.setdefault(axis, [])
    for record in records:
        config = record.attrs.get(R.CONFIG) or {}
        for axis, values in space.items():
            value = _axis_value(axis, record.params, config)
            if value is None:
                continue
            record.params[axis] = value
            if value not in values:
                values.append(value)
        record.key += "|" + ",".join(sorted(space))  # a new axis changes every point: convert again
    return space


# ------------------------------------------------------------------------------------------------ optuna


def _open(storage: str):
    """The storage as the sweep driver opens it (PostgreSQL driver, journal files)."""
    from sweeps.storage import open_storage

    return open_storage(storage, create=False)


def optuna_study_names(storage: str) -> list[str]:
    """Every study in ``storage``; a missing SQLite file is an error here (Optuna would create an empty one)."""
    import optuna

    try:
        return sorted(optuna.get_all_study_names(_open(storage)))
    except Exception as err:  # noqa: BLE001 - any driver/URL error means the same thing to the user
        raise AnalysisError(f"cannot read study storage {redact(storage)}: {first_line(err)}") from None


def trial_records(
    study: str, trials: Iterable[Mapping[str, Any]], searched: Iterable[str] = ()
) -> tuple[list[TrialRecord], dict[str, list[Any]]]:
    """Records of trials as ``sweeps.export.trial_dict`` gives them, and the grid their categorical distributions
    declare: one conversion for the storage and for its export. The ``searched`` keys of a search study are no axes:
    they are left out of each trial's point (its stored config holds them)."""
    import optuna

    from sweeps.export import distribution

    searched = set(searched)
    records, declared = [], {}
    for t in trials:
        for axis, data in t["distributions"].items():
            dist = distribution(data)
            if isinstance(dist, optuna.distributions.CategoricalDistribution) and axis not in searched:
                declared.setdefault(axis, list(dist.choices))
        attrs = dict(t["user_attrs"])
        history = attrs.get(R.HISTORY) or []
        key = f"{t['state']}|{t['datetime_complete']}|{len(attrs)}"
        params = {k: v for k, v in t["params"].items() if k not in searched}
        value = t.get("value")  # absent in exports written before it
        records.append(
            TrialRecord(study, t["number"], t["state"], params, attrs, key, lambda h=history: list(h), value)
        )
    return records, _space(records, declared)


def _searched(attrs: Mapping[str, Any]) -> list[str]:
    """The searched keys of a search study (from its stored ``records.SEARCH``), else none."""
    return list((attrs.get(R.SEARCH) or {}).get("space") or {})


def optuna_records(storage: str, study: str) -> tuple[list[TrialRecord], dict[str, list[Any]], dict[str, Any]]:
    """The study's trials as records, the grid declared by their categorical distributions, the study's user attrs
    (its stored grid, a search's plan)."""
    import optuna

    from sweeps.export import trial_dict

    names = optuna_study_names(storage)
    if study not in names:
        raise AnalysisError(f"unknown study {study!r} in {redact(storage)}; valid: {', '.join(names) or '(none)'}")
    loaded = optuna.load_study(study_name=study, storage=_open(storage))
    attrs = loaded.user_attrs
    records, space = trial_records(study, map(trial_dict, loaded.get_trials(deepcopy=False)), _searched(attrs))
    return records, space, attrs


# ------------------------------------------------------------------------------------------------ export
def export_study_names(export_dir: str | Path) -> list[str]:
    from sweeps.export import study_names

    try:
        return study_names(export_dir)
    except FileNotFoundError as err:
        raise AnalysisError(str(err)) from None


def export_attrs(export_dir: str | Path, study: str) -> dict[str, Any]:
    """The study's stored user attrs (grid, experiment) from its exported file."""
    from sweeps.export import read_study

    return read_study(export_dir, study)["user_attrs"]


def export_records(
    export_dir: str | Path, study: str
) -> tuple[list[TrialRecord], dict[str, list[Any]], dict[str, Any]]:
    """As :func:`optuna_records`, from the files of ``python -m sweeps export``."""
    from sweeps.export import read_study

    names = export_study_names(export_dir)
    if study not in names:
        raise AnalysisError(f"unknown study {study!r} in {export_dir}; valid: {', '.join(names) or '(none)'}")
    data = read_study(export_dir, study)
    attrs = data["user_attrs"]
    records, space = trial_records(study, data["trials"], _searched(attrs))
    return records, space, attrs


def baseline_study_of(name: str, storage: str | None, export_dir: str | Path | None = None) -> str:
    """The shared single-task baseline study for study ``name``.

    Storages written before the shared study got its reserved name hold it as ``baselines-{dataset}-{budget}``
    (the sweep driver renames it the next time it runs there); analysis only reads, so it reads the old name.
    Without an Optuna ``storage`` or an ``export_dir`` (W&B), the current name.
    """
    _, dataset, budget = R.parse_study_name(name)
    current, legacy = R.baseline_study_name(dataset, budget), R.legacy_baseline_study_name(dataset, budget)
    if storage is None and export_dir is None:
        return current
    names = optuna_study_names(storage) if storage is not None else export_study_names(export_dir)
    if current in names or legacy not in names:
        return current
    if storage is not None:
        import optuna

        attrs = optuna.load_study(study_name=legacy, storage=_open(storage)).user_attrs
    else:
        attrs = export_attrs(export_dir, legacy)
    return legacy if R.is_legacy_baseline_study(legacy, attrs) else current


# ------------------------------------------------------------------------------------------------ W&B
WANDB_FINAL = "final/"
WANDB_VAL = "val/"


def _wandb_history(run: Any) -> list[dict[str, Any]]:
    """``scan_history()`` rows -> the per-epoch records of ``sweeps.records.HISTORY`` (metrics and Δm only)."""
    out = []
    for row in run.scan_history():
        metrics = {k[len(WANDB_VAL) :]: v for k, v in row.items() if k.startswith(WANDB_VAL) and v is not None}
        if metrics:
            delta = metrics.pop("delta_m", None)
            out.append({"epoch": row.get("_step"), "metrics": metrics, "delta_m": delta})
    return out


def _wandb_record(run: Any) -> TrialRecord:
    from tsn.tasks import dataset_tasks

    study, _, number = str(run.name).rpartition("-")
    if study != run.group or not number.isdigit():
        raise AnalysisError(f"W&B run {run.id} is named {run.name!r}, not {run.group}-<trial number>: not a sweep run")
    config = dict(run.config)
    summary = {k: v for k, v in dict(run.summary).items() if not k.startswith("_")}
    cfg = {k: config[k] for k in ("model", "data", "train") if k in config}
    experiment, dataset, budget = R.parse_study_name(study)
    metrics = {}
    for spec in dataset_tasks(cfg["data"]["dataset"], cfg["data"].get("tasks")).tasks:
        prefix = f"{WANDB_FINAL}{spec.name}/"
        values = {k[len(prefix) :]: v for k, v in summary.items() if k.startswith(prefix)}
        if values:
            metrics[spec.name] = {
                "values": values,
                "conventions": {},
                "primary": spec.metric,
                "higher_is_better": spec.higher_is_better,
            }
    attrs = {
        R.EXPERIMENT: experiment,
        R.DATASET: dataset,
        R.BUDGET: budget,
        R.CONFIG: cfg,
        R.ARCHITECTURE: cfg["model"]["architecture"],
        R.SEED: cfg["train"]["seed"],
        R.CONFIG_HASH: config.get(R.CONFIG_HASH),
        R.METRICS: metrics,
        R.DELTA_M: summary.get(R.DELTA_M),
        R.PARAMS: summary.get("params"),
        R.MACS: summary.get(R.MACS),
        R.WALL_TIME: summary.get(R.WALL_TIME),
        R.FAIL_REASON: summary.get(R.FAIL_REASON),
        R.WANDB_RUN_ID: run.id,
    }
    state = WANDB_STATES.get(run.state, str(run.state).upper())
    key = f"{state}|{summary.get('wall_time_s')}|{summary.get(R.FAIL_REASON)}"
    # the objective as sweeps.runner.objective chose it: Δm with a baseline, else the mean validation loss
    told = [summary[k] for k in (R.DELTA_M, "mean_val_loss") if summary.get(k) is not None]
    value = told[0] if told and state == "COMPLETE" else None
    return TrialRecord(study, int(number), state, {}, attrs, key, lambda: _wandb_history(run), value)


def wandb_records(runs: Iterable[Any]) -> tuple[list[TrialRecord], dict[str, list[Any]]]:
    """Records from W&B run objects (``id``, ``name``, ``group``, ``state``, ``config``, ``summary``,
    ``scan_history()``). W&B does not store the grid, so it is every known axis that varies across the runs."""
    records = [_wandb_record(run) for run in runs]
    varying = {}
    for axis in AXIS_COLUMNS:
        values = {json.dumps(_axis_value(axis, {}, r.attrs[R.CONFIG])) for r in records}
        if len(values) > 1 or axis == SEED_AXIS:
            varying[axis] = []
    return records, _space(records, varying)


def wandb_study_records(path: str, study: str) -> tuple[list[TrialRecord], dict[str, list[Any]]]:
    import wandb

    try:
        runs = list(wandb.Api().runs(path, filters={"group": study}))
    except Exception as err:  # noqa: BLE001 - network, auth and path errors all end the same way
        raise AnalysisError(f"cannot read W&B runs of {path} group {study}: {first_line(err)}") from None
    return wandb_records(runs)


# ------------------------------------------------------------------------------------------------ cache
def _cache_paths(cache_dir: Path, study: str) -> tuple[Path, Path, Path]:
    return cache_dir / f"{study}.metrics.parquet", cache_dir / f"{study}.history.parquet", cache_dir / f"{study}.json"


def build_study(
    study: str,
    records: list[TrialRecord],
    space: dict[str, list[Any]],
    cache_dir: str | Path | None = None,
) -> StudyData:
    """Frames of ``records``; with ``cache_dir``, only trials that are new or whose key changed are converted."""
    cached: dict[str, str] = {}
    old_metrics = old_history = None
    if cache_dir is not None:
        metrics_path, history_path, keys_path = _cache_paths(Path(cache_dir), study)
        if metrics_path.exists() and history_path.exists() and keys_path.exists():
            try:
                cached = json.loads(keys_path.read_bytes())["keys"]
                if not isinstance(cached, dict):
                    raise ValueError(f"{keys_path}: 'keys' is not a mapping")
                old_metrics, old_history = pd.read_parquet(metrics_path), pd.read_parquet(history_path)
            except Exception:  # noqa: BLE001 - a damaged cache (any reader's error) is rebuilt from the storage
                cached, old_metrics, old_history = {}, None, None
            if old_metrics is not None and (
                list(old_metrics.columns) != METRIC_COLUMNS or list(old_history.columns) != HISTORY_COLUMNS
            ):
                cached, old_metrics, old_history = {}, None, None  # written by an older version: convert again
    keys = {str(r.number): r.key for r in records}
    fresh = [r for r in records if cached.get(str(r.number)) != r.key]
    keep = {int(n) for n, k in keys.items() if cached.get(n) == k}
    parts = [record_rows(r) for r in fresh]
    metrics = [pd.DataFrame([row for rows, _ in parts for row in rows], columns=METRIC_COLUMNS)]
    history = [pd.DataFrame([row for _, rows in parts for row in rows], columns=HISTORY_COLUMNS)]
    if old_metrics is not None:
        metrics.insert(0, old_metrics[old_metrics["trial"].isin(keep)])
        history.insert(0, old_history[old_history["trial"].isin(keep)])
    frame = _concat(metrics, METRIC_COLUMNS)
    hist = _concat(history, HISTORY_COLUMNS)
    if cache_dir is not None and (fresh or set(cached) != set(keys)):
        metrics_path, history_path, keys_path = _cache_paths(Path(cache_dir), study)
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(metrics_path, index=False)
        hist.to_parquet(history_path, index=False)
        keys_path.write_text(json.dumps({"keys": keys}, sort_keys=True))
    return StudyData(study, frame, hist, space)


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    return _typed(frame[columns]).sort_values(["trial"], kind="stable").reset_index(drop=True)


def load_study(
    study: str,
    storage: str | None = None,
    cache_dir: str | Path | None = None,
    source: str = "optuna",
    wandb_path: str | None = None,
    epoch: int | None = None,
    export_dir: str | Path | None = None,
) -> StudyData:
    """One study's frames from Optuna (``storage``), W&B (``wandb_path``, runs grouped by study name) or the files of
    ``python -m sweeps export`` (``export_dir``); metrics as of evaluation ``epoch`` (None: each trial's last)."""
    attrs: dict[str, Any] = {}
    if source == "optuna":
        records, space, attrs = optuna_records(storage, study)
    elif source == "wandb":
        if not wandb_path:
            raise AnalysisError("--source wandb needs --wandb-path ENTITY/PROJECT")
        records, space = wandb_study_records(wandb_path, study)
    elif source == "export":
        if export_dir is None:
            raise AnalysisError("--source export needs --export-dir DIR")
        records, space, attrs = export_records(export_dir, study)
    else:
        raise AnalysisError(f"unknown source {source!r}; valid: {', '.join(SOURCES)}")
    records = [at_epoch(r, epoch) for r in records]
    data = build_study(study, records, space, None if cache_dir is None else Path(cache_dir) / source)
    data.grid, data.epoch, data.search = attrs.get(R.GRID), epoch, attrs.get(R.SEARCH)
    return data
