"""The plateau report (issue 12's criterion) on hand-made curves with hand-computed gains."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis import plateau
from analysis.runs import StudyData

SEMSEG = {  # trial -> per-epoch mIoU (higher is better); 8 epochs (counted from 1): the last quarter runs from epoch 6 to epoch 8
    0: [10, 20, 30, 40, 45, 50, 50.5, 51],  # 50 -> 51: +2.0 %, not below the threshold
    1: [5, 15, 25, 35, 38, 40, 40.2, 40.4],  # 40 -> 40.4: +1.0 %
}
NORMALS = {  # mean angle (lower is better)
    0: [30, 25, 22, 21, 20.5, 20, 19.95, 19.9],  # 20 -> 19.9: +0.5 %
    1: [30, 20, 15, 12, 11, 10, 10.05, 10.1],  # 10 -> 10.1: −1.0 %
}


def _history() -> pd.DataFrame:
    rows = []
    for task, curves in (("semseg", SEMSEG), ("normals", NORMALS)):
        for trial, values in curves.items():
            rows += [
                {"trial": trial, "state": "COMPLETE", "epoch": e, "task": task, "value": v}
                for e, v in enumerate(values, start=1)
            ]
    rows += [  # too short a curve, and a failed trial: both left out
        {"trial": 2, "state": "COMPLETE", "epoch": e, "task": "semseg", "value": 1.0 + e} for e in range(3)
    ]
    rows += [{"trial": 3, "state": "FAIL", "epoch": e, "task": "semseg", "value": 1.0 + e} for e in range(8)]
    return pd.DataFrame(rows)


def _trials() -> pd.DataFrame:
    trials = pd.DataFrame({"trial": [0, 1, 2], "train.epochs": [8, 8, 8], "seed": [1, 2, 3]})
    trials.attrs["higher_is_better"] = {"semseg": True, "normals": False}
    trials.attrs["tasks"] = ["semseg", "normals"]  # the dataset's order: the rows' order
    return trials


def test_last_quarter_gains_are_signed_relative_improvements() -> None:
    gains = plateau.last_quarter_gains(_history(), {"semseg": True, "normals": False})
    got = {(r.trial, r.task): (r.start, r.end, r.gain) for r in gains.itertuples()}
    assert set(got) == {(0, "semseg"), (1, "semseg"), (0, "normals"), (1, "normals")}
    assert got[(0, "semseg")] == pytest.approx((6, 8, 2.0))
    assert got[(1, "semseg")] == pytest.approx((6, 8, 1.0))
    assert got[(0, "normals")] == pytest.approx((6, 8, 0.5))
    assert got[(1, "normals")] == pytest.approx((6, 8, -1.0))


def test_report_says_which_task_has_plateaued_with_the_interval_over_seeds(tmp_path) -> None:
    study = StudyData("duration-synthetic-cpu", pd.DataFrame(), _history(), {"train.epochs": [8], "train.seed": [1, 2]})
    markdown = plateau.plateau_report(study, _trials(), None, tmp_path)
    frame = pd.read_csv(tmp_path / "duration-synthetic-cpu-plateau.csv").set_index("task")
    assert frame.loc["semseg", "mean"] == pytest.approx(1.5) and frame.loc["semseg", "max"] == pytest.approx(2.0)
    # t interval over 2 seeds: 1.5 ± t(0.975, 1) · sd/√2 with sd = √0.5, so ± 12.706 · 0.5
    assert frame.loc["semseg", "high"] == pytest.approx(1.5 + 12.7062047 * 0.5, rel=1e-6)
    assert frame.loc["semseg", "plateaued"] == "no" and frame.loc["normals", "plateaued"] == "yes"
    assert list(frame["n"]) == [2, 2] and list(frame["epochs"]) == [8, 8]
    assert markdown == (tmp_path / "duration-synthetic-cpu-plateau.md").read_text()
    assert "| 8 | 8 | semseg | +1.5 |" in markdown and markdown.rstrip().endswith("| yes |")


def test_no_report_without_per_epoch_curves(tmp_path) -> None:
    final_only = _history().query("epoch == 8")
    study = StudyData("embedding-synthetic-cpu", pd.DataFrame(), final_only, {"train.seed": [1, 2]})
    assert plateau.plateau_report(study, _trials(), None, tmp_path) is None
    assert list(tmp_path.iterdir()) == []
