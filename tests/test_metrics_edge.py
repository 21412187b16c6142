"""Edge odsF: thinning, tolerance, one-to-one matching, for the SEISM-compatible and the fast evaluator."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from tsn.metrics import FastEdgeMetric, SeismEdgeMetric
from tsn.metrics.edge import _NEIGHBOURS, _THIN_LUTS, HED_THRESHOLDS, thin

EVALUATORS = [SeismEdgeMetric, FastEdgeMetric]


def _vertical_line(size=32, column=16):
    target = torch.zeros(1, 1, size, size)
    target[0, 0, 4:-4, column] = 1.0
    return target


def _logits(binary):
    return (binary * 2 - 1) * 20


def _odsf(metric_cls, max_dist, pred, target):
    metric = metric_cls(max_dist)
    metric.update(pred, target)
    return metric.compute()


def test_hed_thresholds_are_the_101_values():
    assert len(HED_THRESHOLDS) == 101
    assert (HED_THRESHOLDS[0], HED_THRESHOLDS[1], HED_THRESHOLDS[-2], HED_THRESHOLDS[-1]) == (0.001, 0.01, 0.99, 0.999)


def test_thinning_makes_a_three_pixel_thick_line_one_pixel_thick():
    mask = np.zeros((9, 16), dtype=bool)
    mask[3:6, 2:14] = True
    thinned = thin(mask)
    assert thinned.sum(axis=0).max() == 1
    assert thinned.sum() >= 8
    assert thinned[4, 4:12].all()


def test_thinning_keeps_a_one_pixel_line():
    mask = np.zeros((9, 16), dtype=bool)
    mask[4, 2:14] = True
    assert np.array_equal(thin(mask), mask)


def _dense_thin(mask):
    """Straightforward whole-image reference of the same algorithm."""
    image = mask.astype(np.uint8)
    weights = np.zeros((3, 3), dtype=np.int64)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        weights[1 + dy, 1 + dx] = 1 << bit
    while True:
        before = image.copy()
        for lut in _THIN_LUTS:
            codes = ndimage.correlate(image.astype(np.int64), weights, mode="constant")
            image[(image == 1) & lut[codes]] = 0
        if np.array_equal(before, image):
            return image.astype(bool)


def test_thinning_stack_matches_the_dense_reference_on_random_masks():
    rng = np.random.default_rng(0)
    masks = ndimage.uniform_filter(rng.random((6, 24, 24)), size=(1, 3, 3)) > 0.45
    thinned = thin(masks)
    for mask, result in zip(masks, thinned):
        assert np.array_equal(result, _dense_thin(mask))


@pytest.mark.parametrize("metric_cls", EVALUATORS)
def test_perfect_prediction_scores_100(metric_cls):
    target = _vertical_line()
    target[0, 0, :2, :] = 255.0  # ignored band: predictions there do not count
    pred = _logits((target == 1).float())
    pred[0, 0, :2, :] = 20.0
    result = _odsf(metric_cls, 0.0075, pred, target)
    assert result["odsF"] == pytest.approx(100.0)
    assert result.conventions["odsF"] == metric_cls.convention


@pytest.mark.parametrize("metric_cls", EVALUATORS)
def test_one_pixel_shift_is_a_hit_within_tolerance_and_a_miss_beyond(metric_cls):
    target = _vertical_line()
    shifted = _logits(torch.roll(target, 1, dims=3))
    diagonal = np.hypot(32, 32)
    assert _odsf(metric_cls, 1.5 / diagonal, shifted, target)["odsF"] == pytest.approx(100.0)
    assert _odsf(metric_cls, 0.5 / diagonal, shifted, target)["odsF"] == pytest.approx(0.0)


def test_seism_matches_one_to_one_and_fast_does_not():
    target = torch.zeros(1, 1, 32, 32)
    target[0, 0, 10, 10] = 1.0
    binary = torch.zeros_like(target)
    binary[0, 0, 10, 10] = binary[0, 0, 10, 12] = 1.0  # two predictions near one ground-truth pixel
    max_dist = 3.0 / np.hypot(32, 32)
    assert _odsf(SeismEdgeMetric, max_dist, _logits(binary), target)["odsF"] == pytest.approx(200 / 3)  # P 1/2, R 1
    assert _odsf(FastEdgeMetric, max_dist, _logits(binary), target)["odsF"] == pytest.approx(100.0)


def test_seism_thins_a_thick_prediction_but_fast_does_not():
    target = _vertical_line()
    thick = target + torch.roll(target, 1, dims=3) + torch.roll(target, -1, dims=3)
    max_dist = 0.5 / np.hypot(32, 32)  # only coincident pixels match
    seism = _odsf(SeismEdgeMetric, max_dist, _logits(thick), target)["odsF"]
    fast = _odsf(FastEdgeMetric, max_dist, _logits(thick), target)["odsF"]
    assert seism > 90.0  # the thinned band is the centre line, shortened at its ends
    assert fast == pytest.approx(50.0)  # P 1/3, R 1


@pytest.mark.parametrize("metric_cls", EVALUATORS)
def test_ods_picks_the_best_threshold_and_counts_are_summed_over_images(metric_cls):
    target = torch.cat([_vertical_line(), _vertical_line()])
    prob = torch.full_like(target, 0.3) * (target == 1)  # edges at 0.3, background 0
    prob[1, 0, 0, :] = 0.2  # a spurious row at 0.2 in the second image
    metric = metric_cls(0.0075, thresholds=(0.1, 0.25, 0.5))
    metric.update(torch.logit(prob.clamp(1e-6, 1 - 1e-6)), target)
    result = metric.compute()
    assert result["ods_threshold"] == 0.25
    assert result["odsF"] == pytest.approx(100.0)


@pytest.mark.parametrize("metric_cls", EVALUATORS)
def test_edge_merge_equals_one_pass(metric_cls):
    rng = np.random.default_rng(1)
    target = torch.cat([_vertical_line(), torch.roll(_vertical_line(), 5, dims=3)])
    pred = torch.from_numpy(rng.normal(size=(2, 1, 32, 32)).astype(np.float32)) + 3 * target
    whole, first, second = metric_cls(0.02), metric_cls(0.02), metric_cls(0.02)
    whole.update(pred, target)
    first.update(pred[:1], target[:1])
    second.update(pred[1:], target[1:])
    first.merge(second.state_dict())
    assert first.compute().values == pytest.approx(whole.compute().values)
