"""What a finished trial stores: the contract between the sweep driver (writer) and ``analysis/`` (reader).

Each Optuna trial keeps its grid point in ``trial.params`` (keys are the experiment's axis names, e.g.
``model.encoding``, ``model.embedding_dim``, ``train.seed``; a search study's trial also its sampled values, e.g.
``train.lr_decoder``) and everything else in ``trial.user_attrs``
under the keys below. Values are JSON-serialisable. The objective value is Delta-m (astmt convention, lower is
better) when the study has a single-task baseline, else the mean validation loss: the ``mean_val_loss`` of the
Trainer's summary (:func:`tsn.evaluate.mean_loss` of its final ``val_loss``), which W&B's run summary carries too.

Study names: ``{experiment}-{dataset}-{budget}`` (e.g. ``embedding-synthetic-cpu``), built and parsed only here
(:func:`study_name`, :func:`parse_study_name`). Single-task baselines live in their own study
``_single_task-{dataset}-{budget}`` (:func:`baseline_study_name`), one trial per training seed, shared by every
experiment of that dataset and budget; a trial's ``baseline_runs`` names the baseline trials its Delta-m used.
Experiment names cannot begin with ``_``, so no experiment (Table 1's ``baselines`` included) can take that name.
Storages written before this rule hold the shared study as ``baselines-{dataset}-{budget}`` (see
:func:`is_legacy_baseline_study`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Study-level (study.user_attrs)
GRID = "grid"  # [{axis: value}]: every grid point the study must finish (the budget may cap the seeds)
# A search study's (an experiment file's ``search:`` section, sweeps.search) plan: {"sampler", "trials" (per grid
# point, after the budget's cap), "seed", "objective", "startup_trials", "space": {dotted key: {"low", "high", "log",
# "integer"}}}. Its GRID points are the strata: each finishes ``trials`` sampled configurations.
SEARCH = "search"

# Identity and provenance
EXPERIMENT = "experiment"  # str, e.g. "embedding"
DATASET = "dataset"  # str
BUDGET = "budget"  # str
ARCHITECTURE = "architecture"  # str, one of tsn.models.ARCHITECTURES
SEED = "seed"  # int, train.seed
CONFIG = "config"  # dict, RunConfig.to_dict()
CONFIG_HASH = "config_hash"  # str, tsn.config.config_hash
GIT_COMMIT = "git_commit"  # str
WANDB_RUN_ID = "wandb_run_id"  # str or None
RUN_DIR = "run_dir"  # str: folder with checkpoint.pt and metrics.json
JOB_TYPE = "job_type"  # "trial" or "baseline"
# {"study", "trial", "config_hash"}: the trial whose run this one carries instead of training it again. On a
# single-task point of an experiment (Table 1's single-task row), the shared baseline run of its configuration
# (sweeps.runner.TrialRunner.record); on any other point, the trial of another experiment that ran the same
# configuration first (TrialRunner.record_twin)
RECORDED_FROM = "recorded_from"
# str, on a search study's trial: the slot it fills, "{stratum} #{k}" (sweeps.search.slot_key); trial.params hold the
# stratum's axes and the sampled values of the searched keys
SEARCH_SLOT = "search_slot"

# Results
METRICS = (
    "metrics"  # {task: {"values": {name: float}, "conventions": {name: str}, "primary": str, "higher_is_better": bool}}
)
PRIMARY = "primary"  # {task: float}: each task's Delta-m metric
DELTA_M = "delta_m"  # float or None, percent, astmt convention (positive = worse than single-task)
DELTA_M_CONVENTION = "delta_m_convention"  # "astmt"
BASELINE_RUNS = "baseline_runs"  # [{"study": str, "trial": int, "config_hash": str}]
BASELINE_METRICS = "baseline_metrics"  # {task: float}: the single-task values Delta-m used
PARAMS = "n_params"  # int
MACS = "macs"  # int, multiply-accumulates of one forward pass predicting all tasks for one image
WALL_TIME = "wall_time_s"  # float
HISTORY = "history"  # [{"epoch", "train_loss": {task: float}, "task_order": [task], "val_loss": {...}, "metrics": {task: float}, "delta_m", "lr", "seconds"}]
# {epoch (str): {"metrics": like METRICS, "primary": like PRIMARY, "val_loss": {task: float}, "mean_val_loss": float
# (absent in records written before it), "delta_m": like the summary's delta_m block or None}}: the full evaluations
# at train.eval_epochs and at the last epoch
EVALUATIONS = "evaluations"

# Failures
FAIL_REASON = "fail_reason"  # str, one line: why the trial failed (non-finite loss, OOM, exception)
# int, on a trial that `python -m sweeps retry --failed` enqueued: the number of the failed trial of the same point it
# retries (that trial stays in the study for the record, no longer counted as the point's final state)
RETRY_OF = "retry_of"


# Study names
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # '-' allowed; a leading '_' is reserved
PART_NAME = re.compile(r"[A-Za-z0-9_]+")  # datasets and budgets: no '-', so a name splits from the right
SHARED_BASELINES = "_single_task"  # the experiment part of the shared single-task baseline study's name
LEGACY_SHARED_BASELINES = "baselines"  # its name before experiment names were validated (see below)
STUDY_EXPERIMENT_ATTR = "experiment"  # study.user_attrs key an experiment's study carries (the shared study has none)


def check_experiment_name(name: Any, where: str = "name") -> str:
    """``name`` if it is a valid experiment name, else a one-line ValueError."""
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name):
        raise ValueError(
            f"{where} must be letters, digits, '-' or '_', not starting with '_' "
            f"(reserved for {SHARED_BASELINES}), got {name!r}"
        )
    return name


def _check_part(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not PART_NAME.fullmatch(value):
        raise ValueError(f"a {kind} in a study name must be letters, digits or '_', got {value!r}")
    return value


def study_name(experiment: str, dataset: str, budget: str) -> str:
    """``{experiment}-{dataset}-{budget}``; the experiment may contain '-', dataset and budget may not."""
    if experiment != SHARED_BASELINES:
        check_experiment_name(experiment, "experiment name")
    return f"{experiment}-{_check_part('dataset', dataset)}-{_check_part('budget', budget)}"


def baseline_study_name(dataset: str, budget: str) -> str:
    """The study of the single-task baselines shared by every experiment of ``dataset`` at ``budget``."""
    return study_name(SHARED_BASELINES, dataset, budget)


def parse_study_name(name: str) -> tuple[str, str, str]:
    """``{experiment}-{dataset}-{budget}`` -> (experiment, dataset, budget); the inverse of :func:`study_name`."""
    parts = name.rsplit("-", 2)
    if len(parts) == 3:
        try:
            study_name(*parts)
            return parts[0], parts[1], parts[2]
        except ValueError:
            pass
    raise ValueError(f"study name {name!r} is not of the form experiment-dataset-budget (e.g. embedding-synthetic-cpu)")


def is_baseline_study(name: str) -> bool:
    return parse_study_name(name)[0] == SHARED_BASELINES


def is_legacy_baseline_study(name: str, study_attrs: Mapping[str, Any]) -> bool:
    """A shared baseline study stored under its old name ``baselines-{dataset}-{budget}``.

    Table 1's experiment study has that name too; an experiment's study records its experiment in
    ``study.user_attrs`` and the shared baseline study never did, which tells the two apart.
    """
    return parse_study_name(name)[0] == LEGACY_SHARED_BASELINES and STUDY_EXPERIMENT_ATTR not in study_attrs


def legacy_baseline_study_name(dataset: str, budget: str) -> str:
    return study_name(LEGACY_SHARED_BASELINES, dataset, budget)
