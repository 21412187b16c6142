"""What a finished trial stores: the contract between the sweep driver (writer) and ``analysis/`` (reader).

Each Optuna trial keeps its grid point in ``trial.params`` (keys are the experiment's axis names, e.g.
``model.encoding``, ``model.embedding_dim``, ``train.seed``) and everything else in ``trial.user_attrs``
under the keys below. Values are JSON-serialisable. The objective value is Delta-m (astmt convention, lower is
better) when the study has a single-task baseline, else the mean validation loss.

Study names: ``{experiment}-{dataset}-{budget}`` (e.g. ``embedding-synthetic-cpu``). Single-task baselines live in
their own study ``baselines-{dataset}-{budget}``, one trial per training seed, shared by every experiment
of that dataset and budget; a trial's ``baseline_runs`` names the baseline trials its Delta-m used.
"""

from __future__ import annotations

# Study-level (study.user_attrs)
GRID = "grid"  # [{axis: value}]: every grid point the study must finish (the budget may cap the seeds)

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

# Results
METRICS = "metrics"  # {task: {"values": {name: float}, "conventions": {name: str}, "primary": str, "higher_is_better": bool}}
PRIMARY = "primary"  # {task: float}: each task's Delta-m metric
DELTA_M = "delta_m"  # float or None, percent, astmt convention (positive = worse than single-task)
DELTA_M_CONVENTION = "delta_m_convention"  # "astmt"
BASELINE_RUNS = "baseline_runs"  # [{"study": str, "trial": int, "config_hash": str}]
BASELINE_METRICS = "baseline_metrics"  # {task: float}: the single-task values Delta-m used
PARAMS = "n_params"  # int
MACS = "macs"  # int, multiply-accumulates of one forward pass predicting all tasks for one image
WALL_TIME = "wall_time_s"  # float
HISTORY = "history"  # [{"epoch", "train_loss": {task: float}, "val_loss": {...}, "metrics": {task: float}, "delta_m", "lr", "seconds"}]

# Failures
FAIL_REASON = "fail_reason"  # str, one line: why the trial failed (non-finite loss, OOM, exception)
