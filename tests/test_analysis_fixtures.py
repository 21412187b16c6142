"""Hand-made stored studies for the analysis tests: what the sweep driver would have written, values chosen by hand.

Two tasks: semseg (mIoU, higher is better) and normals (mean error, lower is better), dataset ``synthetic``,
budget ``smoke``. ``baselines`` (Table 1) grid: architecture {single_task, task_in, tsn} × seed {0, 1}, all finished;
the shared single-task study holds the same single-task trials.
``embedding`` grid: encoding {orthogonal, gaussian} × d {10, 20} × seed {0, 1}: (gaussian, 20, seed 1) failed,
(orthogonal, 20, seed 1) never ran.
"""

from __future__ import annotations

import atexit
import copy
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import optuna

from sweeps import records as R
from tsn.metrics.delta_m import delta_m

STORAGE_NAME = "studies.db"
BASELINES = "baselines-synthetic-smoke"
SHARED = R.baseline_study_name("synthetic", "smoke")
EMBEDDING = "embedding-synthetic-smoke"
HIGHER = {"semseg": True, "normals": False}

# (architecture, seed) -> (semseg mIoU, normals mErr)
BASELINE_VALUES = {
    ("single_task", 0): (40.0, 19.0),
    ("single_task", 1): (44.0, 22.0),
    ("task_in", 0): (38.0, 26.0),
    ("task_in", 1): (42.0, 23.0),
    ("tsn", 0): (50.0, 20.0),
    ("tsn", 1): (44.0, 22.0),
}
# (encoding, d, seed) -> (semseg, normals)
EMBEDDING_VALUES = {
    ("orthogonal", 10, 0): (41.0, 20.0),
    ("orthogonal", 10, 1): (45.0, 21.0),
    ("orthogonal", 20, 0): (39.0, 18.0),
    ("gaussian", 10, 0): (40.0, 19.0),
    ("gaussian", 10, 1): (46.0, 23.0),
    ("gaussian", 20, 0): (42.0, 24.0),
}
FAILED = (("gaussian", 20, 1), "non-finite loss at epoch 1")


def metrics_attrs(semseg: float, normals: float, seed: int, config: dict[str, Any]) -> dict[str, Any]:
    """user_attrs of a finished trial, as records.py describes them; stored Δm against the same-seed baseline."""
    metrics = {
        "semseg": {
            "values": {"miou": semseg, "pixel_acc": semseg + 30},
            "conventions": {"miou": "astmt", "pixel_acc": "astmt"},
            "primary": "miou",
            "higher_is_better": True,
        },
        "normals": {
            "values": {"mean": normals, "median": normals - 3},
            "conventions": {"mean": "astmt", "median": "astmt"},
            "primary": "mean",
            "higher_is_better": False,
        },
    }
    base = dict(zip(("semseg", "normals"), BASELINE_VALUES[("single_task", seed)]))
    primary = {"semseg": semseg, "normals": normals}
    history = [
        {"epoch": e, "metrics": {"semseg": semseg - 5 / e, "normals": normals + 2 / e}, "delta_m": None} for e in (1, 2)
    ]
    return {
        R.EXPERIMENT: config["experiment"],
        R.DATASET: "synthetic",
        R.BUDGET: "smoke",
        R.ARCHITECTURE: config["architecture"],
        R.SEED: seed,
        R.CONFIG: config["config"],
        R.CONFIG_HASH: config.get("config_hash") or f"hash-{config['architecture']}-{seed}",
        R.GIT_COMMIT: "abc123",
        R.METRICS: metrics,
        R.PRIMARY: primary,
        R.DELTA_M: delta_m(primary, base, HIGHER),
        R.DELTA_M_CONVENTION: "astmt",
        R.BASELINE_METRICS: base,
        R.PARAMS: config["n_params"],
        R.MACS: 1000,
        R.WALL_TIME: 1.5,
        R.HISTORY: history,
        R.RUN_DIR: config.get("run_dir"),
        R.WANDB_RUN_ID: None,
    }


def point_config(config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The stored RunConfig dict of a grid point: ``config`` with each dotted axis set."""
    out = copy.deepcopy(config)
    for axis, value in params.items():
        section, _, key = axis.partition(".")
        out[section][key] = value
    return out


def _add(
    study: optuna.Study,
    params: dict[str, Any],
    space: dict[str, list],
    attrs: dict[str, Any],
    state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE,
) -> None:
    dists = {k: optuna.distributions.CategoricalDistribution(v) for k, v in space.items()}
    value = attrs.get(R.DELTA_M) if state == optuna.trial.TrialState.COMPLETE else None
    study.add_trial(
        optuna.trial.create_trial(params=params, distributions=dists, value=value, user_attrs=attrs, state=state)
    )


_BUILT: dict[str, Path] = {}  # the arguments of build_storage -> a copy of the file it built, in this process


def build_storage(
    tmp_path,
    config: dict[str, Any],
    run_dirs: dict[str, str] | None = None,
    suffix: str = "synthetic-smoke",
    legacy: bool = False,
) -> str:
    """Three studies in one SQLite file (``baselines-{suffix}``: Table 1, ``embedding-{suffix}`` and the shared
    single-task study ``_single_task-{suffix}``); returns the storage URL.

    ``legacy``: as stored before the shared study had its reserved name: ``baselines-{suffix}`` is the shared
    study (its single-task trials served every experiment) and carries no experiment attribute.

    Writing the studies takes about a second; the same arguments again get a copy of the file first written.
    """
    path = Path(tmp_path) / STORAGE_NAME
    key = json.dumps([config, run_dirs, suffix, legacy], sort_keys=True, default=str)
    if key in _BUILT and not path.exists():
        shutil.copyfile(_BUILT[key], path)
        return f"sqlite:///{path}"
    storage = _write_storage(path, config, run_dirs, suffix, legacy)
    if key not in _BUILT:
        folder = tempfile.mkdtemp(prefix="tsn-test-storage-")
        atexit.register(shutil.rmtree, folder, True)
        _BUILT[key] = Path(shutil.copyfile(path, Path(folder) / STORAGE_NAME))
    return storage


def _write_storage(
    path: Path, config: dict[str, Any], run_dirs: dict[str, str] | None, suffix: str, legacy: bool
) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{path}"
    params_by_arch = {"single_task": 88_650_000, "task_in": 17_750_000, "tsn": 18_260_000}
    base = optuna.create_study(study_name=f"baselines-{suffix}", storage=storage)
    space = {"model.architecture": ["single_task", "task_in", "tsn"], "train.seed": [0, 1]}
    shared = None
    if not legacy:
        base.set_user_attr(R.STUDY_EXPERIMENT_ATTR, {"name": "baselines"})
        shared = optuna.create_study(study_name=f"{R.SHARED_BASELINES}-{suffix}", storage=storage)
    for (arch, seed), (seg, nor) in BASELINE_VALUES.items():
        params = {"model.architecture": arch, "train.seed": seed}
        info = {
            "experiment": "baselines",
            "architecture": arch,
            "config": point_config(config, params),
            "n_params": params_by_arch[arch],
            "run_dir": (run_dirs or {}).get(arch),
        }
        _add(base, params, space, metrics_attrs(seg, nor, seed, info))
        if shared is not None and arch == "single_task":
            info = {**info, "experiment": R.SHARED_BASELINES}
            _add(shared, {"train.seed": seed}, {"train.seed": [0, 1]}, metrics_attrs(seg, nor, seed, info))
    emb = optuna.create_study(study_name=f"embedding-{suffix}", storage=storage)
    space = {"model.encoding": ["orthogonal", "gaussian"], "model.embedding_dim": [10, 20], "train.seed": [0, 1]}
    for (enc, d, seed), (seg, nor) in EMBEDDING_VALUES.items():
        params = {"model.encoding": enc, "model.embedding_dim": d, "train.seed": seed}
        info = {
            "experiment": "embedding",
            "architecture": "tsn",
            "config": point_config(config, params),
            "config_hash": f"hash-tsn-{enc}-{d}-{seed}",  # one configuration per grid point, as a sweep stores it
            "n_params": 18_000_000 + 1000 * d,
        }
        _add(emb, params, space, metrics_attrs(seg, nor, seed, info))
    (enc, d, seed), reason = FAILED
    params = {"model.encoding": enc, "model.embedding_dim": d, "train.seed": seed}
    started = {
        R.EXPERIMENT: "embedding",
        R.DATASET: "synthetic",
        R.BUDGET: "smoke",
        R.ARCHITECTURE: "tsn",
        R.SEED: seed,
        R.CONFIG: point_config(config, params),
        R.CONFIG_HASH: "hash-failed",
    }
    _add(emb, params, space, {**started, R.FAIL_REASON: reason}, optuna.trial.TrialState.FAIL)
    return storage
