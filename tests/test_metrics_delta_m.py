"""Δm against the published numbers, its sign conventions and its errors."""

import pytest

from tsn.metrics import delta_m, relative_differences

TASKS = ("edge", "semseg", "parts", "normals", "saliency")
HIGHER = dict(zip(TASKS, (True, True, True, False, True)))


def _metrics(values):
    return dict(zip(TASKS, values))


ASTMT_SINGLE = _metrics([72.7, 68.30, 60.70, 14.61, 65.40])
ASTMT_SHARED = _metrics([69.2, 63.20, 55.10, 16.04, 63.60])
TSN_SINGLE = _metrics([71.3, 64.3, 55.5, 16.3, 62.9])
TSN = _metrics([70.6, 64.2, 55.0, 16.3, 63.3])


def test_astmt_readme_resnet101_average_drop_is_6_81():
    assert round(delta_m(ASTMT_SHARED, ASTMT_SINGLE, HIGHER), 2) == 6.81


def test_tsn_readme_average_drop_is_0_28():
    assert round(delta_m(TSN, TSN_SINGLE, HIGHER, convention="astmt"), 2) == 0.28


def test_vandenhende_flips_the_sign():
    assert delta_m(TSN, TSN_SINGLE, HIGHER, convention="vandenhende") == pytest.approx(
        -delta_m(TSN, TSN_SINGLE, HIGHER, convention="astmt")
    )


def test_libmtl_is_a_fraction_averaged_within_tasks_first():
    baseline = {"seg/miou": 50.0, "seg/acc": 80.0, "depth/rmse": 2.0}
    model = {"seg/miou": 55.0, "seg/acc": 80.0, "depth/rmse": 2.2}
    higher = {"seg/miou": True, "seg/acc": True, "depth/rmse": False}
    # seg: mean(+10 %, 0 %) = +5 %; depth: -10 %; mean over tasks -2.5 % -> -0.025
    assert delta_m(model, baseline, higher, convention="libmtl") == pytest.approx(-0.025)
    # the flat mean over the three metrics would be 0 / 3 = 0
    assert delta_m(model, baseline, higher, convention="vandenhende") == pytest.approx(0.0)


def test_relative_differences_are_per_task_and_positive_when_better():
    differences = relative_differences({"a": 110.0, "b": 11.0}, {"a": 100.0, "b": 10.0}, {"a": True, "b": False})
    assert differences == pytest.approx({"a": 10.0, "b": -10.0})


def test_unknown_convention_is_rejected():
    with pytest.raises(ValueError, match="convention"):
        delta_m(TSN, TSN_SINGLE, HIGHER, convention="nash")


def test_mismatched_task_sets_are_rejected():
    with pytest.raises(ValueError, match="same metrics"):
        delta_m({"edge": 70.0}, {"edge": 71.0, "semseg": 64.0}, {"edge": True, "semseg": True})


def test_zero_baseline_is_rejected():
    with pytest.raises(ValueError, match="baseline"):
        delta_m({"edge": 70.0}, {"edge": 0.0}, {"edge": True})
