"""The paper's claims on hand-made frames: for each claim a case that holds, one that fails, one inconclusive."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis import claims as C

SEEDS = (1, 2, 3)
T_975_2 = 4.302652729749464  # Student's t, 97.5 % quantile, 2 degrees of freedom (printed tables: 4.303)


def table1(
    delta_m: dict[str, list[float]], n_params: dict[str, float] | None = None, reference: tuple[int, float] = (3, 0.0)
) -> pd.DataFrame:
    """The per-trial frame of a Table 1 study: one row per architecture x seed (seeds 1, 2, …), against a
    single-task reference of ``reference`` = (seeds, sd of their Δm); single-task at Δm 0 unless given."""
    params = {
        "single_task": 88e6,
        "multi_decoder": 44e6,
        "task_bn": 18e6,
        "task_in": 18e6,
        "tsn": 18.3e6,
        **(n_params or {}),
    }
    seeds, spread = reference
    rows = [
        {
            "architecture": arch,
            "seed": seed,
            "delta_m": value,
            "n_params": params[arch],
            "reference_seeds": seeds,
            "reference_spread": spread,
        }
        for arch, values in {"single_task": [0.0] * 3, **delta_m}.items()
        for seed, value in zip(SEEDS, values)
    ]
    return pd.DataFrame(rows).rename_axis("trial").reset_index()


def embedding(delta_m: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    rows = [
        {"architecture": "tsn", "seed": seed, "model.encoding": enc, "model.embedding_dim": d, "delta_m": value}
        for (enc, d), values in delta_m.items()
        for seed, value in zip(SEEDS, values)
    ]
    return pd.DataFrame(rows).rename_axis("trial").reset_index()


HIGHER = {"semseg": True, "normals": False}


def history(reached: dict[str, list[tuple[int, int]]], epochs: int = 6) -> pd.DataFrame:
    """Per architecture, per seed: the epochs (semseg, normals) at which each task's curve steps to its final value.

    Before that step semseg (↑) is at half its final 60 and normals (↓) at twice its final 15.
    """
    rows, trial = [], 0
    for arch, per_seed in reached.items():
        for seed, (k_sem, k_nor) in zip(SEEDS, per_seed):
            for epoch in range(1, epochs + 1):
                rows.append(
                    {
                        "trial": trial,
                        "state": "COMPLETE",
                        "architecture": arch,
                        "seed": seed,
                        "epoch": epoch,
                        "task": "semseg",
                        "value": 60.0 * (0.5 if epoch < k_sem else 1.0),
                    }
                )
                rows.append(
                    {
                        "trial": trial,
                        "state": "COMPLETE",
                        "architecture": arch,
                        "seed": seed,
                        "epoch": epoch,
                        "task": "normals",
                        "value": 15.0 * (2.0 if epoch < k_nor else 1.0),
                    }
                )
            trial += 1
    return pd.DataFrame(rows)


def evidence(**kwargs) -> C.Evidence:
    return C.Evidence("synthetic", "cpu", higher_is_better=dict(HIGHER), **kwargs)


def result(ev: C.Evidence, claim: str) -> pd.Series:
    return C.evaluate(ev).set_index("claim").loc[claim]


# ------------------------------------------------------------------------------------------------ interval
def test_t_interval_matches_a_hand_computation() -> None:
    mean, low, high, n = C.t_interval([1.0, 2.0, 4.0])
    # mean 7/3; sample variance ((4/3)² + (1/3)² + (5/3)²) / 2 = 7/3; half-width t · sqrt(7/3) / sqrt(3)
    half = T_975_2 * math.sqrt(7 / 3) / math.sqrt(3)
    assert (mean, low, high, n) == pytest.approx((7 / 3, 7 / 3 - half, 7 / 3 + half, 3), rel=1e-12)
    assert half == pytest.approx(3.7945, abs=1e-4)


def test_welch_interval_matches_a_hand_computation_and_scipy() -> None:
    from scipy import stats

    a, b = [1.0, 2.0, 4.0], [-1.0, 0.0, 1.0]
    diff, low, high, n = C.welch_interval(C.Sample.of(a), C.Sample.of(b))
    # s²/n: (7/3)/3 = 7/9 and 1/3; se² = 10/9; Welch–Satterthwaite dof = (10/9)² / ((7/9)²/2 + (1/3)²/2) = 200/58
    half = stats.t.ppf(0.975, 200 / 58) * math.sqrt(10 / 9)
    assert (diff, low, high, n) == pytest.approx((7 / 3, 7 / 3 - half, 7 / 3 + half, 3), rel=1e-12)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (low, high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # a group without spread leaves the other's t interval (its n − 1 degrees of freedom)
    steady = C.welch_interval(C.Sample.of(a), C.Sample(0.0, 0.0, 3))
    assert steady[1:3] == pytest.approx(C.t_interval(a)[1:3], rel=1e-12)
    lone = C.welch_interval(C.Sample.of(a), C.Sample.of([0.0]))
    assert math.isnan(lone[1]) and lone[3] == 1


def test_an_interval_needs_two_values() -> None:
    mean, low, high, n = C.t_interval([2.5, math.nan])
    assert mean == 2.5 and n == 1 and math.isnan(low) and math.isnan(high)
    assert C.decide(low, high, n, "above") == C.INCONCLUSIVE


@pytest.mark.parametrize(
    "side, low, high, verdict",
    [
        ("above", 0.1, 2.0, C.HOLDS),
        ("above", -2.0, -0.1, C.FAILS),
        ("above", -0.1, 2.0, C.INCONCLUSIVE),
        ("below", -1.0, 1.9, C.HOLDS),
        ("below", 2.1, 3.0, C.FAILS),
        ("below", 1.0, 3.0, C.INCONCLUSIVE),
        ("within", -0.9, 0.9, C.HOLDS),
        ("within", 1.1, 2.0, C.FAILS),
        ("within", -2.0, -1.1, C.FAILS),
        ("within", 0.5, 1.5, C.INCONCLUSIVE),
    ],
)
def test_the_verdict_is_read_off_the_interval(side: str, low: float, high: float, verdict: str) -> None:
    threshold = 0.0 if side == "above" else 2.0 if side == "below" else 1.0
    assert C.decide(low, high, 3, side, threshold) == verdict


# ------------------------------------------------------------------------------------------------ C1
def test_c1_holds_when_tsn_s_delta_m_interval_lies_below_the_margin_at_a_fifth_of_the_parameters() -> None:
    frames = evidence(trials={"baselines": table1({"tsn": [0.5, 0.8, 1.1]})})
    row = result(frames, "C1.1")
    half = T_975_2 * 0.3 / math.sqrt(3)  # a reference without spread: Welch is TSN's own t interval
    assert (row["effect"], row["ci_low"], row["ci_high"]) == pytest.approx((0.8, 0.8 - half, 0.8 + half))
    assert row["verdict"] == C.HOLDS and row["interval"] == C.WELCH
    assert row["note"] == "single-task reference: 3 seed(s), sd 0.00"
    share = result(frames, "C1.2")
    assert (share["effect"], share["verdict"], share["interval"]) == (pytest.approx(18.3 / 88), C.HOLDS, C.EXACT)
    both = result(frames, "C1")
    assert (both["verdict"], both["n"], both["note"]) == (C.HOLDS, 3, "from C1.1, C1.2")


def test_c1_fails_above_the_margin_or_with_too_many_parameters() -> None:
    assert result(evidence(trials={"baselines": table1({"tsn": [5.0, 6.0, 7.0]})}), "C1.1")["verdict"] == C.FAILS
    heavy = evidence(trials={"baselines": table1({"tsn": [0.5, 0.8, 1.1]}, {"tsn": 44e6})})
    share = result(heavy, "C1.2")
    assert (share["effect"], share["verdict"]) == (pytest.approx(0.5), C.FAILS)
    assert share["note"] == "TSN / single-task = 0.500: 44,000,000 / 88,000,000 parameters"
    assert result(heavy, "C1.1")["verdict"] == C.HOLDS and result(heavy, "C1")["verdict"] == C.FAILS


def test_c1_counts_the_single_task_reference_s_seed_noise_and_more_reference_seeds_decide() -> None:
    tsn = {"tsn": [0.5, 0.8, 1.1]}
    noisy = result(evidence(trials={"baselines": table1(tsn, reference=(3, 1.0))}), "C1.1")
    diff, low, high, _ = C.welch_interval(C.Sample.of(tsn["tsn"]), C.Sample(0.0, 1.0, 3))
    assert (noisy["effect"], noisy["ci_low"], noisy["ci_high"]) == pytest.approx((0.8, low, high))
    assert high > 2.0 and noisy["verdict"] == C.INCONCLUSIVE  # se² = 0.03 + 1/3, ~2.4 dof: high ≈ 3.2
    pooled = result(evidence(trials={"baselines": table1(tsn, reference=(8, 1.0))}), "C1.1")
    assert pooled["ci_high"] < 2.0 and pooled["verdict"] == C.HOLDS  # se² = 0.03 + 1/8, ~9 dof: high ≈ 1.7


def test_c1_1_adds_the_seeds_other_studies_ran_of_table_1_s_tsn_configuration() -> None:
    same = '{"model": {"architecture": "tsn"}, "train": {"seed": 0}}'
    other = '{"model": {"architecture": "tsn", "embedding_dim": 50}, "train": {"seed": 0}}'
    base = table1({"tsn": [0.5, 0.8, 1.1]}, reference=(8, 1.0))
    base = base.assign(config=[same if a == "tsn" else other.replace("tsn", a) for a in base["architecture"]])
    scenes = pd.DataFrame(
        {
            "trial": [0, 1, 2, 3],
            "architecture": "tsn",
            "seed": [3, 4, 5, 6],
            "delta_m": [99.0, 1.4, 0.2, 50.0],
            "config": [same, same, same, other],
        }
    )
    frames = {"baselines": base.assign(config_hash="b"), "scenes": scenes.assign(config_hash="s")}
    row = result(evidence(trials=frames), "C1.1")
    # seeds 1-3 from Table 1 (seed 3 keeps its own run, 1.1, not 99), 4 and 5 from scenes; seed 6 ran another config
    expected = C.welch_interval(C.Sample.of([0.5, 0.8, 1.1, 1.4, 0.2]), C.Sample(0.0, 1.0, 8))
    assert (row["effect"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx(expected)
    assert row["note"].endswith("; TSN seeds also from scenes (the same configuration)")


def test_c1_is_inconclusive_when_the_interval_straddles_the_margin_or_data_is_missing() -> None:
    assert result(evidence(trials={"baselines": table1({"tsn": [0.0, 2.0, 4.0]})}), "C1")["verdict"] == C.INCONCLUSIVE
    one_seed = result(evidence(trials={"baselines": table1({"tsn": [0.5]})}), "C1.1")
    assert one_seed["verdict"] == C.INCONCLUSIVE and "an interval needs 2 TSN seeds (1)" in one_seed["note"]
    lone_reference = result(
        evidence(trials={"baselines": table1({"tsn": [0.5, 0.8, 1.1]}, reference=(1, math.nan))}), "C1.1"
    )
    assert lone_reference["verdict"] == C.INCONCLUSIVE and "2 single-task seeds (1)" in lone_reference["note"]
    none = result(evidence(), "C1.2")
    assert none["verdict"] == C.INCONCLUSIVE
    assert none["note"] == "missing: study baselines-synthetic-cpu (make sweep-baselines)"


# ------------------------------------------------------------------------------------------------ C2
ORDERED = {
    "tsn": [0.0, 0.0, 0.0],
    "task_in": [2.0, 2.5, 3.0],
    "task_bn": [4.0, 5.0, 6.0],
    "multi_decoder": [4.1, 4.9, 6.0],
}


def test_c2_holds_when_each_adjacent_pair_is_ordered_and_bn_matches_multi_decoder() -> None:
    frame = C.evaluate(evidence(trials={"baselines": table1(ORDERED)})).set_index("claim")
    assert frame.loc[["C2.1", "C2.2", "C2.3", "C2"], "verdict"].tolist() == [C.HOLDS] * 4
    # C2.1: task_in − tsn per seed = 2, 2.5, 3: mean 2.5, sd 0.5
    half = T_975_2 * 0.5 / math.sqrt(3)
    assert (frame.loc["C2.1", "ci_low"], frame.loc["C2.1", "ci_high"]) == pytest.approx((2.5 - half, 2.5 + half))
    assert frame.loc["C2.3", "effect"] == pytest.approx(0.0, abs=1e-12)  # 0.1, -0.1, 0 paired by seed


def test_c2_fails_when_one_pair_is_reversed_or_bn_and_multi_decoder_differ() -> None:
    reversed_ = {**ORDERED, "tsn": [3.0, 3.5, 4.0], "task_in": [0.0, 0.0, 0.0]}
    frame = C.evaluate(evidence(trials={"baselines": table1(reversed_)})).set_index("claim")
    assert frame.loc["C2.1", "verdict"] == C.FAILS and frame.loc["C2", "verdict"] == C.FAILS
    apart = {**ORDERED, "multi_decoder": [7.0, 8.2, 9.4]}  # 3.0, 3.2, 3.4 above task_bn: outside ±1
    frame = C.evaluate(evidence(trials={"baselines": table1(apart)})).set_index("claim")
    assert frame.loc["C2.3", "verdict"] == C.FAILS and frame.loc["C2", "verdict"] == C.FAILS


def test_c2_is_inconclusive_when_an_architecture_is_missing_or_a_pair_straddles() -> None:
    partial = {k: v for k, v in ORDERED.items() if k != "task_bn"}
    frame = C.evaluate(evidence(trials={"baselines": table1(partial)})).set_index("claim")
    assert frame.loc["C2.1", "verdict"] == C.HOLDS and frame.loc["C2", "verdict"] == C.INCONCLUSIVE
    assert frame.loc["C2.2", "note"] == "missing: architecture task_bn in the Table 1 study"
    noisy = {**ORDERED, "task_in": [-2.0, 2.5, 7.0]}
    assert result(evidence(trials={"baselines": table1(noisy)}), "C2.1")["verdict"] == C.INCONCLUSIVE


def test_an_inconclusive_claim_projects_the_seeds_that_would_decide_it_at_today_s_mean_and_sd() -> None:
    straddling = {**ORDERED, "task_in": [1.0, 3.0, 2.0]}  # C2.1: task_in − tsn = 1, 3, 2: mean 2, sd 1
    frame = C.evaluate(evidence(trials={"baselines": table1(straddling)})).set_index("claim")
    assert frame.loc["C2.1", "verdict"] == C.INCONCLUSIVE  # half-width 4.303 / √3 = 2.48 > 2
    # t₀.₉₇₅ with 3 dof is 3.182: 3.182 · 1 / √4 = 1.59 < 2, so 4 seeds; 3 would not do (2.48)
    assert frame.loc["C2.1", "seeds_to_decide"] == 4
    assert C.t_half_width(1.0, 4) == pytest.approx(3.182446305284263 / 2, rel=1e-12)
    decided, exact, composite = frame.loc["C2.2"], frame.loc["C1.2"], frame.loc["C2"]
    assert decided["verdict"] == C.HOLDS and math.isnan(decided["seeds_to_decide"])  # decided: nothing to project
    assert math.isnan(exact["seeds_to_decide"]) and math.isnan(composite["seeds_to_decide"])
    assert "| **inconclusive** | 4 |" in C.to_markdown(frame.reset_index(), "synthetic", "cpu")


@pytest.mark.parametrize(
    "effect, side, threshold, distance",
    [(-0.5, "above", 0.0, 0.5), (1.2, "below", 2.0, 0.8), (0.4, "within", 1.0, 0.6), (-1.5, "within", 1.0, 0.5)],
)
def test_the_distance_to_a_decision_is_to_the_nearest_bound_the_interval_must_clear(
    effect: float, side: str, threshold: float, distance: float
) -> None:
    assert C.distance_to_decision(effect, side, threshold) == pytest.approx(distance)


def test_c1_projects_tsn_and_reference_seeds_growing_together_and_an_effect_on_the_bound_is_never_decided() -> None:
    assert C.seeds_to_decide(lambda n: 1.0 / n, 0.0) == math.inf
    assert C.seeds_to_decide(lambda n: 1.0 / n, 0.3) == 4  # the first n with 1/n < 0.3
    # C1.1 at effect 0.8 against a margin of 2 with a reference of 3 seeds of sd 3: TSN's seeds alone never decide
    # it (the reference's 3 seeds leave a half-width above 1.2); k seeds of both do, at the first k whose Welch
    # interval clears 2
    tsn, reference = C.Sample.of([0.0, 0.8, 1.6]), C.Sample(0.0, 3.0, 3)
    noisy = result(evidence(trials={"baselines": table1({"tsn": [0.0, 0.8, 1.6]}, reference=(3, 3.0))}), "C1.1")
    highs = {k: C.welch_interval(C.Sample(0.8, tsn.sd, k), C.Sample(0.0, 3.0, max(k, 3)))[2] for k in range(2, 101)}
    assert C.welch_interval(C.Sample(0.8, tsn.sd, 100), reference)[2] > 2.0  # the reference as it is: never
    assert noisy["verdict"] == C.INCONCLUSIVE
    assert noisy["seeds_to_decide"] == min(k for k, high in highs.items() if high < 2.0) > 3
    # an effect a hair below the margin needs more seeds than the projection looks at
    close = result(evidence(trials={"baselines": table1({"tsn": [0.99, 1.99, 2.99]}, reference=(8, 1.0))}), "C1.1")
    assert close["verdict"] == C.INCONCLUSIVE and close["seeds_to_decide"] == math.inf
    assert f"| > {C.MAX_SEEDS} |" in C.to_markdown(pd.DataFrame([close]).assign(claim="C1.1"), "synthetic", "cpu")


# ------------------------------------------------------------------------------------------------ C3
def _codes(orthogonal: dict[int, list[float]], gaussian: dict[int, list[float]]) -> pd.DataFrame:
    return embedding(
        {**{("orthogonal", d): v for d, v in orthogonal.items()}, **{("gaussian", d): v for d, v in gaussian.items()}}
    )


STEADY = {10: [30.0, -30.0, 0.0], 50: [1.0, 1.2, 0.8], 100: [1.1, 1.0, 0.9], 150: [0.9, 1.1, 1.0]}
SWINGING = {10: [1.0, 1.0, 1.0], 50: [0.0, 1.0, 0.0], 100: [3.0, 4.0, 2.0], 150: [6.0, 6.0, 5.0]}


def test_c3_holds_when_gaussian_spreads_more_over_d_and_ignores_d_below_50() -> None:
    row = result(evidence(trials={"embedding": _codes(STEADY, SWINGING)}), "C3")
    # seed 1: sd(0, 3, 6) = 3 vs sd(1.0, 1.1, 0.9) = 0.1 -> 2.9 (d = 10 with its ±30 left out)
    assert C.spread_over_d(_codes(STEADY, SWINGING), "gaussian", 50)[1] == pytest.approx(3.0)
    assert row["verdict"] == C.HOLDS and row["effect"] > 2


def test_c3_fails_when_orthogonal_spreads_more() -> None:
    assert result(evidence(trials={"embedding": _codes(SWINGING, STEADY)}), "C3")["verdict"] == C.FAILS


def test_c3_is_inconclusive_when_seeds_disagree_or_one_d_only() -> None:
    mixed = {50: [0.0, 1.0, 1.0], 100: [3.0, 1.1, 1.0], 150: [6.0, 0.9, 1.0]}  # seed 1 swings, seeds 2, 3 steady
    mixed_orth = {50: [1.0, 0.0, 0.0], 100: [1.0, 3.0, 1.0], 150: [1.0, 6.0, 1.0]}
    assert result(evidence(trials={"embedding": _codes(mixed_orth, mixed)}), "C3")["verdict"] == C.INCONCLUSIVE
    one_d = result(evidence(trials={"embedding": _codes({50: [1.0] * 3}, {50: [2.0] * 3})}), "C3")
    assert one_d["verdict"] == C.INCONCLUSIVE and one_d["note"].startswith("missing: orthogonal, gaussian runs")


# ------------------------------------------------------------------------------------------------ C4
def test_epochs_to_95_percent_follow_each_task_s_direction() -> None:
    frame = history({"tsn": [(2, 4)]})
    # semseg (↑) reaches 60 at epoch 2, normals (↓) reaches 15 at epoch 4: both first within 5 % of the final
    assert C.epochs_to_fraction(frame, HIGHER, 0.95).tolist() == [3.0]
    near = frame.assign(value=frame["value"].where(~((frame["task"] == "normals") & (frame["epoch"] == 3)), 15.7))
    assert C.epochs_to_fraction(near, HIGHER, 0.95).tolist() == [2.5]  # 15.7 <= 15 / 0.95 = 15.79 at epoch 3


def test_c4_holds_when_tsn_reaches_its_final_value_earlier_than_in_and_bn() -> None:
    fast, slow = [(2, 2), (2, 2), (1, 1)], [(4, 4), (3, 3), (3, 3)]
    frame = C.evaluate(evidence(history={"convergence": history({"tsn": fast, "task_in": slow, "task_bn": slow})}))
    frame = frame.set_index("claim")
    assert frame.loc[["C4.1", "C4.2", "C4"], "verdict"].tolist() == [C.HOLDS] * 3
    half = T_975_2 * math.sqrt(1 / 3) / math.sqrt(3)  # differences 2, 1, 2: mean 5/3, variance 1/3
    assert (frame.loc["C4.1", "ci_low"], frame.loc["C4.1", "ci_high"]) == pytest.approx((5 / 3 - half, 5 / 3 + half))
    assert frame.loc["C4.1", "note"] == "from the convergence study"


def test_c4_fails_when_tsn_is_slower() -> None:
    fast, slow = [(2, 2), (2, 2), (1, 1)], [(4, 4), (3, 3), (3, 3)]
    frame = C.evaluate(evidence(history={"convergence": history({"tsn": slow, "task_in": fast, "task_bn": fast})}))
    assert frame.set_index("claim").loc[["C4.1", "C4"], "verdict"].tolist() == [C.FAILS, C.FAILS]


def test_c4_is_inconclusive_when_seeds_disagree_or_an_architecture_has_no_history() -> None:
    tsn, task_in = [(2, 2), (4, 4), (3, 3)], [(4, 4), (2, 2), (3, 3)]  # differences 2, -2, 0
    ev = evidence(history={"baselines": history({"tsn": tsn, "task_in": task_in})})
    frame = C.evaluate(ev).set_index("claim")
    assert frame.loc["C4.1", "verdict"] == C.INCONCLUSIVE and frame.loc["C4.1", "note"] == "from the baselines study"
    assert frame.loc["C4.2", "note"] == "missing: per-epoch history of task_bn in the baselines study"


# ------------------------------------------------------------------------------------------------ C5
def test_c5_is_exact_holds_when_flat_fails_otherwise_and_needs_the_scaling_table() -> None:
    flat = pd.DataFrame({1: [911_477, 719_000], 2: [911_477, 1_437_000]}, index=["tsn", "single_task"])
    row = result(evidence(scaling_params=flat), "C5")
    assert row["verdict"] == C.HOLDS and row["interval"] == C.EXACT and row["effect"] == 0
    grows = flat.copy()
    grows.loc["tsn", 2] = 911_500
    row = result(evidence(scaling_params=grows), "C5")
    assert row["verdict"] == C.FAILS and row["effect"] == 23
    assert result(evidence(), "C5")["note"] == "missing: the scaling table scaling-params-synthetic-cpu"
