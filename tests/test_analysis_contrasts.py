"""Paired contrasts of a study's axes (analysis/contrasts.py) on hand-made trial frames."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from analysis.claims import INCONCLUSIVE
from analysis.contrasts import ALL, HIGHER, LOWER, contrasts, to_markdown, verdict


def frame(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    """(schedule, lr_schedule, seed, Δm) rows -> a per-trial frame as analysis.tables.per_trial gives it."""
    return pd.DataFrame(
        [
            {"trial": i, "train.schedule": s, "train.lr_schedule": lr, "seed": seed, "delta_m": dm}
            for i, (s, lr, seed, dm) in enumerate(rows)
        ]
    )


LEVELS = {"train.schedule": ["epoch", "batch"], "train.lr_schedule": ["plateau", "cosine"]}
AXES = list(LEVELS)


# batch is 20, 22, 18 points below epoch for seeds 1, 2, 3 (plateau); the seeds' own levels differ widely
CONSISTENT = [
    ("epoch", "plateau", 1, 10.0),
    ("batch", "plateau", 1, -10.0),
    ("epoch", "plateau", 2, 30.0),
    ("batch", "plateau", 2, 8.0),
    ("epoch", "plateau", 3, -5.0),
    ("batch", "plateau", 3, -23.0),
]


def test_a_consistent_effect_is_lower_with_the_hand_computed_paired_interval() -> None:
    tidy = contrasts(frame(CONSISTENT), ["train.schedule"], LEVELS)
    (row,) = tidy.to_dict("records")
    half = stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)  # sd of (-20, -22, -18) is 2
    assert row["within"] == ALL and row["n"] == 3 and row["mean"] == pytest.approx(-20.0)
    assert (row["low"], row["high"]) == pytest.approx((-20.0 - half, -20.0 + half))
    assert row["verdict"] == LOWER


def test_pairs_need_the_same_seed_and_the_same_other_axes() -> None:
    rows = [
        ("epoch", "plateau", 1, 10.0),
        ("batch", "plateau", 1, 14.0),
        ("epoch", "cosine", 2, 10.0),
        ("batch", "cosine", 2, 15.0),
        ("epoch", "plateau", 3, 10.0),
        ("batch", "plateau", 3, 16.0),
        ("batch", "cosine", 1, 99.0),  # no epoch/cosine/seed-1 trial: unpaired, ignored
        ("epoch", "plateau", 4, 50.0),
    ]  # no batch partner: ignored
    tidy = contrasts(frame(rows), AXES, LEVELS)
    schedule = tidy[tidy["axis"] == "train.schedule"].set_index("within")
    assert schedule.loc[ALL, "n"] == 3 and schedule.loc[ALL, "mean"] == pytest.approx(5.0)
    assert schedule.loc[ALL, "verdict"] == HIGHER
    assert schedule.loc["train.lr_schedule=plateau", "n"] == 2
    assert schedule.loc["train.lr_schedule=cosine", "n"] == 1
    assert schedule.loc["train.lr_schedule=cosine", "verdict"] == INCONCLUSIVE  # one pair: no interval
    assert math.isnan(schedule.loc["train.lr_schedule=cosine", "low"])
    lr = tidy[tidy["axis"] == "train.lr_schedule"].set_index("within")
    assert lr.loc[ALL, "n"] == 1 and lr.loc[ALL, "mean"] == pytest.approx(99.0 - 14.0)  # batch, seed 1 only


def test_an_interval_across_zero_is_inconclusive() -> None:
    rows = [
        ("epoch", "plateau", 1, 10.0),
        ("batch", "plateau", 1, 15.0),
        ("epoch", "plateau", 2, 10.0),
        ("batch", "plateau", 2, 4.0),
        ("epoch", "plateau", 3, 10.0),
        ("batch", "plateau", 3, 11.0),
    ]
    (row,) = contrasts(frame(rows), ["train.schedule"], LEVELS).to_dict("records")
    assert row["low"] < 0 < row["high"] and row["verdict"] == INCONCLUSIVE


@pytest.mark.parametrize(
    "low, high, n, expected",
    [
        (-3.0, -1.0, 3, LOWER),
        (1.0, 2.0, 3, HIGHER),
        (-1.0, 1.0, 3, INCONCLUSIVE),
        (-3.0, -1.0, 1, INCONCLUSIVE),
        (math.nan, math.nan, 5, INCONCLUSIVE),
    ],
)
def test_verdict_is_decided_by_the_interval(low, high, n, expected) -> None:
    assert verdict(low, high, n) == expected


def test_markdown_names_each_contrast_its_interval_and_verdict() -> None:
    rows = [("epoch", "plateau", s, 10.0 + s) for s in (1, 2, 3)] + [
        ("batch", "plateau", s, -10.0 + s * 1.1) for s in (1, 2, 3)
    ]
    text = to_markdown("x-synthetic-cpu-contrasts", contrasts(frame(rows), ["train.schedule"], LEVELS))
    (line,) = [ln for ln in text.splitlines() if ln.startswith("| train.schedule")]
    assert line.startswith("| train.schedule: batch − epoch | all | -19.80 | [") and line.endswith("| 3 | **lower** |")


# ----------------------------------------------------------------------------------- references of their own
def with_references(rows, references: dict[str, tuple[tuple[int, ...], float, int]]) -> pd.DataFrame:
    """``frame(rows)`` with each trial's single-task reference (trials, spread, seeds) by its schedule."""
    out = frame(rows)
    ref = [references[s] for s in out["train.schedule"]]
    return out.assign(
        reference_trials=[r[0] for r in ref], reference_spread=[r[1] for r in ref], reference_seeds=[r[2] for r in ref]
    )


def test_levels_with_references_of_their_own_add_those_references_noise_by_hand() -> None:
    refs = {"epoch": ((1, 2, 3, 4, 5, 6, 7, 8, 9), 2.0, 9), "batch": ((11, 12, 13, 14), 3.0, 4)}
    (row,) = contrasts(with_references(CONSISTENT, refs), ["train.schedule"], LEVELS).to_dict("records")
    parts = [(4.0 / 3, 2), (9.0 / 4, 3), (4.0 / 9, 8)]  # pairs: sd 2 over 3; batch's ref: 3²/4; epoch's: 2²/9
    variance = sum(v for v, _ in parts)
    dof = variance**2 / sum(v**2 / d for v, d in parts)
    half = stats.t.ppf(0.975, dof) * math.sqrt(variance)
    assert row["mean"] == pytest.approx(-20.0) and row["n"] == 3
    assert (row["low"], row["high"]) == pytest.approx((-20.0 - half, -20.0 + half))


def test_one_reference_for_both_levels_keeps_the_paired_interval() -> None:
    shared = ((1, 2, 3), 5.0, 3)
    (row,) = contrasts(with_references(CONSISTENT, {"epoch": shared, "batch": shared}), ["train.schedule"], LEVELS)[
        ["low", "high"]
    ].to_dict("records")
    half = stats.t.ppf(0.975, 2) * 2.0 / math.sqrt(3)
    assert (row["low"], row["high"]) == pytest.approx((-20.0 - half, -20.0 + half))


def test_a_reference_of_one_seed_leaves_its_noise_unknown_and_the_contrast_undecided() -> None:
    refs = {"epoch": ((1, 2, 3), 2.0, 3), "batch": ((7,), math.nan, 1)}
    (row,) = contrasts(with_references(CONSISTENT, refs), ["train.schedule"], LEVELS).to_dict("records")
    assert row["mean"] == pytest.approx(-20.0) and math.isnan(row["low"]) and row["verdict"] == INCONCLUSIVE


def test_pooled_pairs_weigh_each_reference_by_its_share_of_the_pairs() -> None:
    """Over two values of another axis, each with its own pair of references: each reference carries half the
    pairs, so w = ±1/2 and each adds a quarter of its mean's variance."""
    rows = CONSISTENT + [(s, "cosine", seed, dm) for s, _, seed, dm in CONSISTENT]
    out = frame(rows)
    ref = {
        ("epoch", "plateau"): ((1,) * 9, 2.0, 9),
        ("batch", "plateau"): ((2,) * 9, 2.0, 9),
        ("epoch", "cosine"): ((3,) * 4, 4.0, 4),
        ("batch", "cosine"): ((4,) * 4, 4.0, 4),
    }
    chosen = [ref[(s, lr)] for s, lr in zip(out["train.schedule"], out["train.lr_schedule"])]
    out = out.assign(
        reference_trials=[r[0] for r in chosen],
        reference_spread=[r[1] for r in chosen],
        reference_seeds=[r[2] for r in chosen],
    )
    tidy = contrasts(out, AXES, LEVELS)
    (row,) = tidy[(tidy["axis"] == "train.schedule") & (tidy["within"] == ALL)].to_dict("records")
    sd_pairs = pd.Series([-20.0, -22.0, -18.0] * 2).std(ddof=1)
    parts = [(sd_pairs**2 / 6, 5), *[(0.25 * 4.0 / 9, 8)] * 2, *[(0.25 * 16.0 / 4, 3)] * 2]
    variance = sum(v for v, _ in parts)
    half = stats.t.ppf(0.975, variance**2 / sum(v**2 / d for v, d in parts)) * math.sqrt(variance)
    assert row["n"] == 6 and (row["low"], row["high"]) == pytest.approx((-20.0 - half, -20.0 + half))
