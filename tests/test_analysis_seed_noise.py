"""The seed noise of Δm (analysis/seed_noise.py) on hand-made trial frames and hand-computed intervals."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from analysis.claims import INCONCLUSIVE
from analysis.contrasts import HIGHER, LOWER
from analysis.seed_noise import ABOVE, BELOW, POOLED, ratio_interval, sd_interval, seed_noise, to_markdown

AXIS = "data.fresh_scenes"


def config(fresh: bool, seed: int, epochs: int = 24) -> str:
    return json.dumps({"data": {"fresh_scenes": fresh}, "model": {}, "train": {"seed": seed, "epochs": epochs}})


def frame(rows: list[tuple[bool, int, float]], epochs: int = 24) -> pd.DataFrame:
    """(fresh_scenes, seed, Δm) rows -> a per-trial frame as analysis.tables gives it."""
    return pd.DataFrame(
        [
            {"trial": i, AXIS: fresh, "seed": seed, "delta_m": dm, "config": config(fresh, seed, epochs)}
            for i, (fresh, seed, dm) in enumerate(rows)
        ]
    ).assign(config_hash=lambda f: [f"h{i}" for i in f["trial"]])


def terms(trials: pd.DataFrame) -> pd.DataFrame:
    """Δm split over two tasks, three quarters semseg, a quarter edge."""
    return pd.DataFrame({"semseg": 0.75 * trials["delta_m"], "edge": 0.25 * trials["delta_m"]})


def noise(trials: pd.DataFrame, levels: list) -> pd.DataFrame:
    return seed_noise(trials, [AXIS], {AXIS: levels}, terms(trials))


def test_sd_interval_is_the_hand_computed_chi_square_interval() -> None:
    # 2 degrees of freedom: chi2 quantiles 0.050636 and 7.377759
    assert sd_interval(1.0, 2) == pytest.approx((math.sqrt(2 / 7.377759), math.sqrt(2 / 0.0506356)), rel=1e-5)


def test_ratio_interval_is_the_hand_computed_f_interval() -> None:
    # F(7, 7) quantiles 0.2002038 and 4.9949092; the variance ratio is 4
    low, high = ratio_interval(2.0, 7, 1.0, 7)
    assert (low, high) == pytest.approx((math.sqrt(4 / 4.9949092), math.sqrt(4 / 0.2002038)), rel=1e-5)


def test_rows_pool_and_ratio_with_verdicts_read_off_the_intervals() -> None:
    # repeated scenes: Δm 0, ±6 over 9 seeds (sd 4.24), fresh: 0, ±0.3 (sd 0.21): the fresh sd is far below 1.5
    spread = [0.0, 6.0, -6.0, 6.0, -6.0, 6.0, -6.0, 6.0, -6.0]
    rows = [(False, s, v) for s, v in enumerate(spread)] + [(True, s, v / 20) for s, v in enumerate(spread)]
    tidy = noise(frame(rows), [False, True])
    sds = tidy[tidy["kind"] == "sd"].set_index("row")
    repeated, fresh, pooled = sds.loc[f"{AXIS}=False"], sds.loc[f"{AXIS}=True"], sds.loc[POOLED]
    sd = math.sqrt(8 * 36 / 8)
    assert repeated["value"] == pytest.approx(sd) and repeated["n"] == 9 and repeated["verdict"] == ABOVE
    assert (repeated["sd_semseg"], repeated["sd_edge"]) == pytest.approx((0.75 * sd, 0.25 * sd))
    assert (repeated["low"], repeated["high"]) == pytest.approx(sd_interval(sd, 8))
    assert fresh["value"] == pytest.approx(sd / 20) and fresh["verdict"] == BELOW
    assert pooled["value"] == pytest.approx(math.sqrt((36 * 8 + (36 / 400) * 8) / 16)) and pooled["n"] == 17
    ratio = tidy[tidy["kind"] == "ratio"].iloc[0]
    assert ratio["value"] == pytest.approx(1 / 20) and ratio["reference"] == f"{AXIS}=False"
    assert (ratio["low"], ratio["high"]) == pytest.approx(ratio_interval(sd / 20, 8, sd, 8))
    assert ratio["verdict"] == LOWER
    assert ratio["seed_correlation"] == pytest.approx(1.0) and ratio["shared_seeds"] == 9  # fresh = repeated / 20


def test_three_seeds_of_the_target_size_decide_nothing_and_a_louder_arm_is_higher() -> None:
    rows = [(False, s, v) for s, v in enumerate([0.0, 1.5, -1.5])]
    rows += [(True, s, v) for s, v in enumerate([0.0, 30.0, -30.0, 30.0, -30.0, 30.0])]
    tidy = noise(frame(rows), [False, True])
    assert (
        tidy.loc[tidy["row"] == f"{AXIS}=False", "verdict"].item() == INCONCLUSIVE
    )  # sd 1.5 from 3 seeds: [0.78, 9.4]
    ratio = tidy[tidy["kind"] == "ratio"].iloc[0]
    assert ratio["n"] == 3 and ratio["verdict"] == HIGHER
    # seeds 0-2 in both: (0, 1.5, -1.5) against (0, 30, -30): r = 1; seeds 3-5 have no partner
    assert ratio["shared_seeds"] == 3 and ratio["seed_correlation"] == pytest.approx(1.0)


def test_one_seed_per_row_reports_nothing_and_the_latest_trial_of_a_seed_counts() -> None:
    assert noise(frame([(False, 1, 3.0), (True, 1, 4.0)]), [False, True]).empty
    rerun = frame([(False, 1, 100.0), (False, 2, 0.0), (False, 1, 2.0)])  # trial 2 reruns seed 1: 100 is dropped
    (row,) = noise(rerun, [False]).to_dict("records")
    assert row["n"] == 2 and row["value"] == pytest.approx(math.sqrt(2.0))


def test_configurations_the_axes_do_not_tell_apart_are_rows_of_their_own_named_by_their_difference() -> None:
    short, long = frame([(False, 1, 1.0), (False, 2, -1.0)], epochs=8), frame([(False, 1, 5.0), (False, 2, -5.0)])
    both = pd.concat([short, long.assign(trial=long["trial"] + 10, config_hash=["x", "y"])], ignore_index=True)
    tidy = noise(both, [False]).set_index("row")
    assert tidy.loc[f"{AXIS}=False (train.epochs=8)", "value"] == pytest.approx(math.sqrt(2.0))
    assert tidy.loc[f"{AXIS}=False (train.epochs=24)", "value"] == pytest.approx(math.sqrt(50.0))


def test_markdown_shows_each_row_its_interval_and_the_ratio_against_its_reference() -> None:
    rows = [(f, s, v) for f in (False, True) for s, v in enumerate([0.0, 2.0, -2.0])]
    text = to_markdown("scenes-synthetic-cpu-seed-noise", noise(frame(rows), [False, True]))
    assert "| sd | data.fresh_scenes=True | 2.00 | [1.04, 12.57] | 3 | inconclusive |" in text
    assert "| 3 | inconclusive | semseg 1.50, edge 0.50 |" in text
    assert "| ratio | data.fresh_scenes=True / data.fresh_scenes=False | 1.00 |" in text
    assert "| r = +1.00 over 3 shared seeds |" in text
