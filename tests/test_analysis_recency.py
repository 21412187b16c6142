"""analysis/recency.py: a task's deficit against its single-task baseline vs its place in the last epoch's order."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from test_analysis_fixtures import _add, metrics_attrs, point_config

from analysis import make_tables, recency
from sweeps import records as R
from tsn.config import resolve

BY = ["train.schedule", "train.lr_schedule"]


def frame(deficit_at: dict[int, list[float]], schedule: str = "epoch", lr: str = "plateau") -> pd.DataFrame:
    """(seed, task) pairs: deficit_at[position][seed] is the deficit of the task trained at that position."""
    rows = [
        {
            "train.schedule": schedule,
            "train.lr_schedule": lr,
            "seed": seed,
            "task": f"t{position}",
            "position": position,
            "deficit": value,
        }
        for position, values in deficit_at.items()
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def by_quantity(tidy: pd.DataFrame) -> pd.DataFrame:
    return tidy.set_index("quantity")


def test_last_trained_task_without_deficit_gives_a_negative_slope_that_excludes_zero() -> None:
    data = frame({0: [9.0, 10.0, 11.0], 1: [4.5, 5.0, 5.5], 2: [-0.5, 0.0, 0.5]})
    tidy = by_quantity(recency.recency_stats(data, BY))
    assert tidy.loc["position 0", "estimate"] == pytest.approx(10.0)
    assert tidy.loc["position 2", "estimate"] == pytest.approx(0.0)
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of (9, 10, 11) is 1
    assert (tidy.loc["position 0", "low"], tidy.loc["position 0", "high"]) == pytest.approx((10 - half, 10 + half))
    slope, low, high, n = tidy.loc["slope", ["estimate", "low", "high", "n"]]
    assert n == 9 and slope == pytest.approx(-5.0) and low < high < 0
    # the interval from the textbook formula: SE = sqrt(SSR / (n - 2) / Sxx)
    x, y = data["position"].to_numpy(float), data["deficit"].to_numpy(float)
    fit = np.polyfit(x, y, 1)
    se = math.sqrt(((y - np.polyval(fit, x)) ** 2).sum() / 7 / ((x - x.mean()) ** 2).sum())
    assert (low, high) == pytest.approx((fit[0] - stats.t.ppf(0.975, 7) * se, fit[0] + stats.t.ppf(0.975, 7) * se))


def test_a_flat_deficit_gives_a_slope_interval_containing_zero() -> None:
    data = frame({0: [5.0, 3.0, 4.0], 1: [3.0, 5.0, 4.5], 2: [4.0, 5.0, 3.0]})
    slope, low, high = by_quantity(recency.recency_stats(data, BY)).loc["slope", ["estimate", "low", "high"]]
    assert low < 0 < high and abs(slope) < 0.5


def test_each_schedule_pair_gets_its_own_row_and_a_single_position_has_no_slope() -> None:
    data = pd.concat([frame({0: [6.0, 8.0], 1: [0.0, 1.0]}), frame({1: [2.0, 3.0]}, "batch", "cosine")])
    tidy = recency.recency_stats(data, BY)
    table = recency.recency_table("switching-synthetic-cpu-recency", tidy, BY)
    assert list(table.mean.index) == [("epoch", "plateau"), ("batch", "cosine")]
    assert table.mean.loc[("epoch", "plateau"), "slope"] == pytest.approx(-6.5)
    assert math.isnan(table.mean.loc[("batch", "cosine"), "slope"])  # position does not vary: no line
    assert math.isnan(table.mean.loc[("batch", "cosine"), "position 0"])
    assert table.n.tolist() == [4, 2]


def test_positions_come_from_the_last_epoch_up_to_the_reported_one() -> None:
    history = pd.DataFrame(
        {"trial": [0] * 4, "epoch": [1, 1, 2, 2], "task": ["a", "b", "a", "b"], "position": [0, 1, 1, 0]}
    )
    assert recency.positions(history, None).to_dict() == {(0, "a"): 1, (0, "b"): 0}
    assert recency.positions(history, 1).to_dict() == {(0, "a"): 0, (0, "b"): 1}


def test_make_tables_writes_the_recency_table_of_a_switching_study(tmp_path: Path) -> None:
    """Epoch schedule: semseg trained first and worse than its baseline, normals last and equal to it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    config = resolve("smoke").to_dict()
    shared = optuna.create_study(study_name=R.baseline_study_name("synthetic", "smoke"), storage=storage)
    study = optuna.create_study(study_name="switching-synthetic-smoke", storage=storage)
    space = {"train.schedule": ["epoch"], "train.lr_schedule": ["plateau"], "train.seed": [0, 1]}
    for seed, (seg, nor) in {0: (40.0, 19.0), 1: (44.0, 22.0)}.items():
        _add(
            shared,
            {"train.seed": seed},
            {"train.seed": [0, 1]},
            metrics_attrs(
                seg,
                nor,
                seed,
                {
                    "experiment": R.SHARED_BASELINES,
                    "architecture": "single_task",
                    "n_params": 1,
                    "config": point_config(config, {"model.architecture": "single_task", "train.seed": seed}),
                },
            ),
        )
        params = {"train.schedule": "epoch", "train.lr_schedule": "plateau", "train.seed": seed}
        attrs = metrics_attrs(
            seg * 0.9,
            nor,
            seed,
            {"experiment": "switching", "architecture": "tsn", "n_params": 1, "config": point_config(config, params)},
        )
        for record in attrs[R.HISTORY]:
            record["task_order"] = ["semseg", "normals"]
        _add(study, params, space, attrs)
    out = tmp_path / "r"
    assert (
        make_tables.main(
            ["--storage", storage, "--out", str(out), "--no-figures", "--study", "switching-synthetic-smoke"]
        )
        == 0
    )
    tidy = pd.read_csv(out / "switching-synthetic-smoke-recency.csv").set_index("quantity")
    assert tidy.loc["position 0", "estimate"] == pytest.approx(10.0) and tidy.loc["position 0", "n"] == 2
    assert tidy.loc["position 1", "estimate"] == pytest.approx(0.0)
    assert tidy.loc["slope", "estimate"] == pytest.approx(-10.0)
    assert "pos 0" in (out / "switching-synthetic-smoke-recency.md").read_text()
