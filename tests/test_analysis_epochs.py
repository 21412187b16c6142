"""Tables at a chosen evaluation epoch (records' ``evaluations``) and Δm against the baseline each trial used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from test_analysis_fixtures import HIGHER, _add, metrics_attrs, point_config

from analysis import make_tables, tables
from analysis.runs import load_study
from sweeps import records as R
from tsn.config import resolve
from tsn.metrics.delta_m import delta_m

SHARED = R.baseline_study_name("synthetic", "smoke")
STUDY = "switching-synthetic-smoke"


def evaluations(attrs: dict[str, Any], seed: int, at: dict[int, tuple[float, float]]) -> dict[str, Any]:
    """``attrs`` with ``evaluations`` at the given epochs (semseg, normals), shaped as the trainer stores them."""
    out = {}
    for epoch, (seg, nor) in at.items():
        shaped = metrics_attrs(seg, nor, seed, {"experiment": "x", "architecture": "tsn", "config": {}, "n_params": 1})
        out[str(epoch)] = {"metrics": shaped[R.METRICS], "primary": shaped[R.PRIMARY], "val_loss": {}, "delta_m": None}
    return {**attrs, R.EVALUATIONS: out}


def trial_attrs(
    config: dict,
    params: dict,
    seed: int,
    final: tuple[float, float],
    architecture: str = "tsn",
    at: dict[int, tuple[float, float]] | None = None,
    baseline_hash: str | None = None,
    config_hash: str | None = None,
) -> dict[str, Any]:
    info = {
        "experiment": "switching",
        "architecture": architecture,
        "n_params": 1,
        "config": point_config(config, {**params, "model.architecture": architecture}),
    }
    attrs = metrics_attrs(*final, seed, info)
    if at is not None:
        attrs = evaluations(attrs, seed, at)
    if baseline_hash is not None:
        attrs[R.BASELINE_RUNS] = [{"study": SHARED, "trial": 0, "config_hash": baseline_hash}]
    if config_hash is not None:
        attrs[R.CONFIG_HASH] = config_hash
    return attrs


@pytest.fixture()
def storage(tmp_path: Path) -> str:
    """Seed 0, 2 epochs: a plateau and a cosine baseline (evaluated at epoch 1 and 2); a plateau and a cosine TSN
    trial, each naming its baseline; a cosine trial stored before evaluations and baseline hashes (seed fallback)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    config = resolve("smoke").to_dict()
    shared = optuna.create_study(study_name=SHARED, storage=url)
    for lr, final, first in (("plateau", (40.0, 19.0), (30.0, 25.0)), ("cosine", (50.0, 16.0), (20.0, 30.0))):
        params = {"train.lr_schedule": lr, "train.seed": 0}
        _add(
            shared,
            {"train.seed": 0},
            {"train.seed": [0]},
            trial_attrs(config, params, 0, final, "single_task", {1: first, 2: final}, config_hash=f"st-{lr}"),
        )
    study = optuna.create_study(study_name=STUDY, storage=url)
    space = {"train.lr_schedule": ["plateau", "cosine"], "train.schedule": ["epoch", "batch"], "train.seed": [0]}
    for lr, schedule, final, first, base in (
        ("plateau", "epoch", (44.0, 20.0), (33.0, 25.0), "st-plateau"),
        ("cosine", "epoch", (45.0, 17.0), (25.0, 27.0), "st-cosine"),
        ("cosine", "batch", (48.0, 16.0), None, None),
    ):
        params = {"train.lr_schedule": lr, "train.schedule": schedule, "train.seed": 0}
        at = None if first is None else {1: first, 2: final}
        _add(study, params, space, trial_attrs(config, params, 0, final, at=at, baseline_hash=base))
    return url


def frame(storage: str, epoch: int | None = None) -> pd.DataFrame:
    _, trials = tables.ablation_table(load_study(STUDY, storage, epoch=epoch), load_study(SHARED, storage, epoch=epoch))
    return trials.set_index(["train.lr_schedule", "train.schedule"])


def test_each_trial_is_compared_with_its_own_baseline_by_config_hash(storage: str) -> None:
    trials = frame(storage)
    # the same seed has two baselines: plateau (40, 19) and cosine (50, 16)
    assert trials.loc[("plateau", "epoch"), "delta_m"] == pytest.approx(
        delta_m({"semseg": 44.0, "normals": 20.0}, {"semseg": 40.0, "normals": 19.0}, HIGHER)
    )
    assert trials.loc[("cosine", "epoch"), "delta_m"] == pytest.approx(
        delta_m({"semseg": 45.0, "normals": 17.0}, {"semseg": 50.0, "normals": 16.0}, HIGHER)
    )
    assert trials.loc[("plateau", "epoch"), "baseline_trial"] == 0
    assert trials.loc[("cosine", "epoch"), "baseline_trial"] == 1
    # stored without the baseline's hash: the latest single-task trial of its seed
    assert trials.loc[("cosine", "batch"), "baseline_trial"] == 1


def test_a_chosen_epoch_reports_that_evaluation_against_the_baselines_of_the_same_epoch(storage: str) -> None:
    study = load_study(STUDY, storage, epoch=1)
    table, trials = tables.ablation_table(study, load_study(SHARED, storage, epoch=1))
    trials = trials.set_index(["train.lr_schedule", "train.schedule"])
    assert trials.loc[("plateau", "epoch"), ["semseg", "normals"]].tolist() == [33.0, 25.0]
    assert trials.loc[("cosine", "epoch"), "delta_m"] == pytest.approx(
        delta_m({"semseg": 25.0, "normals": 27.0}, {"semseg": 20.0, "normals": 30.0}, HIGHER)
    )
    assert ("cosine", "batch") not in trials.index  # never evaluated at epoch 1: missing, with the reason
    notes = "\n".join(table.notes)
    assert "metrics at epoch 1 (baselines at the same epoch)" in notes
    assert (
        "train.lr_schedule=cosine, train.schedule=batch, train.seed=0: trial 2 COMPLETE: not evaluated at epoch 1"
        in notes
        and "missing: 2 of 4 grid points" in notes
    )  # plateau × batch never ran


def test_the_last_epoch_takes_the_final_metrics_of_records_without_evaluations(storage: str) -> None:
    at_last, default = frame(storage, epoch=2), frame(storage)
    assert at_last.loc[("cosine", "batch"), "semseg"] == 48.0
    pd.testing.assert_frame_equal(at_last[["semseg", "normals", "delta_m"]], default[["semseg", "normals", "delta_m"]])
    table, _ = tables.ablation_table(load_study(STUDY, storage), load_study(SHARED, storage))
    assert "metrics at the last epoch (2)" in table.notes


def test_the_default_epoch_is_the_budgets_report_epoch() -> None:
    assert make_tables.report_epoch("embedding-pascal_context-paper", None) == 129
    assert make_tables.report_epoch("embedding-synthetic-smoke", None) is None  # no report section: the last
    assert make_tables.report_epoch("embedding-pascal_context-paper", 300) == 300
    assert resolve("paper").train.eval_epochs == (129, 300)  # the report section is not a run setting


def test_cli_epoch_flag(storage: str, tmp_path: Path, capsys) -> None:
    assert (
        make_tables.main(
            ["--storage", storage, "--out", str(tmp_path), "--no-figures", "--study", STUDY, "--epoch", "1"]
        )
        == 0
    )
    assert "metrics at epoch 1" in capsys.readouterr().out
    assert make_tables.main(["--storage", storage, "--epoch", "0"]) == 2
    err = capsys.readouterr().err
    assert "expected a positive integer epoch, got '0'" in err and err.count("\n") == 1
