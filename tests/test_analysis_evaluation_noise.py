"""analysis/evaluation_noise.py on hand-made frames: Δm per validation set, its sd per run and over seeds."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from test_analysis_fixtures import build_storage

from analysis import evaluation_noise as N
from tsn.config import resolve


def metric_for(delta_m: float) -> dict[str, float]:
    """One higher-is-better task 'a' against a reference of 50: Δm (astmt) = −(a − 50) / 50 · 100."""
    return {"a": 50.0 - delta_m / 2}


def test_evaluation_sd_is_per_run_over_draws_and_seed_sd_per_row_over_seeds() -> None:
    trials = pd.DataFrame(
        {"trial": [0, 1, 2], "seed": [1, 2, 1], "d": [10, 10, 50], "delta_m": [9.0, 13.0, 1.0], "a": [0.0] * 3}
    )
    trials.attrs.update(tasks=["a"], higher_is_better={"a": True})
    refs = pd.DataFrame({"a": [50.0, 50.0, 50.0]}, index=[0, 1, 2])
    measured = {
        0: {"draw1": metric_for(10), "draw2": metric_for(12), "large": metric_for(10)},
        1: {"draw1": metric_for(8), "draw2": metric_for(8), "large": metric_for(14)},
        2: {"draw1": metric_for(1), "draw2": metric_for(4), "large": metric_for(2)},
    }
    runs, rows, shared = N.noise_frame(trials, refs, measured, ["d"])
    assert runs["large"].tolist() == pytest.approx([10.0, 14.0, 2.0])
    assert runs["evaluation_sd"].tolist() == pytest.approx([math.sqrt(2), 0.0, math.sqrt(4.5)])
    # two-way fit: run means 11, 8, 2.5; centred draws (-1, 1), (0, 0), (-1.5, 1.5); set effect ∓2.5/3 (shared sd
    # 2.5/3 · √2); residuals ±1/6, ±5/6, ±2/3; own sd² = Σ residual² / ((K − 1)(R − 1)/R) with K = 2, R = 3
    assert shared == pytest.approx(2.5 / 3 * math.sqrt(2))
    own = [math.sqrt(2 * r**2 / (2 / 3)) for r in (1 / 6, 5 / 6, 2 / 3)]
    assert runs["own_sd"].tolist() == pytest.approx(own)
    ten, fifty = rows.set_index("row").loc["d=10"], rows.set_index("row").loc["d=50"]
    assert (ten["seeds"], ten["draws"]) == (2, 2)
    assert ten["seed_sd_stored"] == pytest.approx(math.sqrt(8))  # 9 and 13
    assert ten["seed_sd_large"] == pytest.approx(math.sqrt(8))  # 10 and 14
    assert ten["evaluation_sd"] == pytest.approx(1.0)  # root mean square of √2 and 0
    assert ten["own_sd"] == pytest.approx(math.sqrt((own[0] ** 2 + own[1] ** 2) / 2))
    assert math.isnan(fifty["seed_sd_stored"]) and fifty["evaluation_sd"] == pytest.approx(math.sqrt(4.5))
    markdown = N.to_markdown("x-evaluation-noise", rows, shared, 128, 1024)
    assert (
        "| d=10 | 2 | 2.83 | 2.83 | 1.00 | 1.04 | 2 |" in markdown
        and "| d=50 | 1 | – | – | 2.12 | 1.15 | 2 |" in markdown
    )
    assert "shared difficulty (sd 1.18 over the draws" in markdown


@pytest.mark.parametrize("args", [["--draws", "1"], ["--large", "0"], ["--workers", "0"]])
def test_too_few_draws_images_or_workers_are_one_line_errors(args: list[str], capsys) -> None:
    assert N.main(["--study", "x-synthetic-cpu", *args]) == 2
    assert "--draws must be at least 2" in capsys.readouterr().err


def test_a_study_whose_run_folders_are_elsewhere_is_a_one_line_error_naming_it(tmp_path, capsys) -> None:
    storage = build_storage(tmp_path, resolve("smoke").to_dict())  # its trials name run folders that do not exist
    assert N.main(["--storage", storage, "--study", "embedding-synthetic-smoke", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "embedding-synthetic-smoke: no finished run of this study has its folder here" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
