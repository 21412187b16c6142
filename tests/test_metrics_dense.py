"""Segmentation, normals, saliency and depth metrics on crafted cases computed by hand."""

import math

import numpy as np
import pytest
import torch

from tsn.metrics import DepthMetric, NormalsMetric, SaliencyMetric, SegmentationMetric

GT = torch.tensor([[[0, 0, 1], [1, 255, 0]]])
PRED = torch.tensor([[[0, 1, 1], [1, 0, 0]]])  # class 0: TP 2 FN 1; class 1: TP 2 FP 1; class 2 absent


def test_miou_astmt_keeps_an_absent_class_as_zero():
    metric = SegmentationMetric(3)
    metric.update(PRED, GT)
    result = metric.compute()
    assert result["miou"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3 * 100)
    assert result.conventions["miou"] == "astmt"


def test_miou_nan_absent_leaves_an_absent_class_out():
    metric = SegmentationMetric(3, absent="nan_absent")
    metric.update(PRED, GT)
    result = metric.compute()
    assert result["miou"] == pytest.approx(2 / 3 * 100)
    assert result.conventions["miou"] == "nan_absent"


def test_miou_accepts_logits():
    logits = torch.nn.functional.one_hot(PRED, 3).permute(0, 3, 1, 2).float()
    metric = SegmentationMetric(3)
    metric.update(logits, GT)
    assert metric.compute()["miou"] == pytest.approx(400 / 9)


def test_miou_sums_counts_over_images_instead_of_averaging_per_image():
    gt = torch.tensor([[[0, 0], [0, 0]], [[1, 1], [1, 0]]])
    pred = torch.tensor([[[0, 0], [0, 1]], [[1, 1], [1, 1]]])
    metric = SegmentationMetric(2)
    metric.update(pred, gt)
    # class 0: TP 3, FP 0, FN 2 -> 3/5; class 1: TP 3, FP 2, FN 0 -> 3/5
    assert metric.compute()["miou"] == pytest.approx(60.0)


def test_parts_skip_images_labelled_all_background_or_all_ignore():
    gt = torch.tensor([[[0, 0], [0, 0]], [[255, 255], [255, 255]], [[0, 1], [1, 0]]])
    pred = torch.tensor([[[1, 1], [1, 1]], [[1, 1], [1, 1]], [[0, 1], [1, 0]]])
    skipping = SegmentationMetric(2, skip_unlabelled_images=True)
    skipping.update(pred, gt)
    counting = SegmentationMetric(2)
    counting.update(pred, gt)
    assert skipping.compute()["miou"] == pytest.approx(100.0)
    assert counting.compute()["miou"] == pytest.approx(100 / 3)  # both classes: TP 2 of union 6


def test_segmentation_merge_equals_one_pass():
    whole, first, second = SegmentationMetric(3), SegmentationMetric(3), SegmentationMetric(3)
    gt = torch.cat([GT, GT.flip(2)])
    pred = torch.cat([PRED, PRED])
    whole.update(pred, gt)
    first.update(pred[:1], gt[:1])
    second.update(pred[1:], gt[1:])
    first.merge(second.state_dict())
    assert first.compute()["miou"] == pytest.approx(whole.compute()["miou"])


def test_unknown_absent_policy_is_rejected():
    with pytest.raises(ValueError, match="absent"):
        SegmentationMetric(3, absent="ignore")


def _normals(angles_deg):
    """Ground truth (0, 0, 1) on a 1 x len row; predictions rotated by each angle about y (unnormalised x2)."""
    rad = np.radians(angles_deg)
    pred = torch.tensor(np.stack([np.sin(rad), np.zeros_like(rad), np.cos(rad)]) * 2.0).float()[None, :, None]
    target = torch.zeros_like(pred)
    target[:, 2] = 1.0
    return pred, target


def test_normals_angles_0_90_180():
    pred, target = _normals([0.0, 90.0, 180.0])
    metric = NormalsMetric()
    metric.update(pred, target)
    r = metric.compute()
    assert r["mean"] == pytest.approx(90.0, abs=1e-3)
    assert r["median"] == pytest.approx(90.0, abs=0.01)
    assert r["rmse"] == pytest.approx(math.sqrt((90**2 + 180**2) / 3), abs=1e-3)
    assert (r["pct_11.25"], r["pct_22.5"], r["pct_30"]) == pytest.approx((100 / 3,) * 3)


def test_normals_percentages_under_each_threshold_and_invalid_pixels_ignored():
    pred, target = _normals([0.0, 20.0, 90.0, 45.0])
    target[..., 3] = 0.0  # the 45° pixel is invalid
    metric = NormalsMetric()
    metric.update(pred, target)
    r = metric.compute()
    assert r["mean"] == pytest.approx(110 / 3, abs=1e-3)
    assert r["median"] == pytest.approx(20.0, abs=0.01)
    assert (r["pct_11.25"], r["pct_22.5"], r["pct_30"]) == pytest.approx((100 / 3, 200 / 3, 200 / 3))
    assert set(r.conventions.values()) == {"pixel-pooled"}


def _saliency_case():
    # image A: tp 1 fp 0 fn 1 (J 1/2, P 1, R 1/2); image B: tp 1 fp 3 fn 0 (J 1/4, P 1/4, R 1)
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])
    predicted = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    return (predicted * 2 - 1) * 20, target  # saturated logits: the same map at every threshold


def test_saliency_astmt_averages_per_image_and_pooled_variant_differs():
    logits, target = _saliency_case()
    metric = SaliencyMetric()
    metric.update(logits, target)
    r = metric.compute()
    assert r["miou"] == pytest.approx(37.5)
    assert r["maxF"] == pytest.approx(2 * 0.625 * 0.75 / 1.375 * 100)
    p, rec = 2 / 5, 2 / 3  # pooled tp 2, fp 3, fn 1
    assert r["maxF_pooled_b0.3"] == pytest.approx(1.3 * p * rec / (0.3 * p + rec) * 100)
    assert r.conventions == {"miou": "astmt", "maxF": "astmt", "maxF_pooled_b0.3": "atrc-pooled"}


def test_saliency_empty_image_follows_astmt_zero_over_zero():
    metric = SaliencyMetric()
    metric.update(torch.full((1, 1, 2, 2), -20.0), torch.zeros(1, 1, 2, 2))
    r = metric.compute()
    assert r["miou"] == pytest.approx(100.0)  # Jaccard 0/0 = 1
    assert r["maxF"] == pytest.approx(0.0)  # precision and recall 0/0 = 0


def test_saliency_perfect_inverted_and_ignored_pixels():
    target = torch.tensor([[[[1.0, 0.0], [255.0, 1.0]]]])
    perfect = torch.tensor([[[[20.0, -20.0], [20.0, 20.0]]]])  # positive on the ignored pixel: not counted
    metric = SaliencyMetric()
    metric.update(perfect, target)
    assert metric.compute()["miou"] == pytest.approx(100.0)
    inverted = SaliencyMetric()
    inverted.update(-perfect, target)
    assert inverted.compute()["miou"] == pytest.approx(0.0)


def test_saliency_picks_the_best_threshold():
    target = torch.tensor([[[[1.0, 0.0]]]])
    prob = torch.tensor([[[[0.8, 0.5]]]])  # thresholds in [0.5, 0.8) separate the pixels
    metric = SaliencyMetric()
    metric.update(torch.logit(prob), target)
    assert metric.compute()["miou"] == pytest.approx(100.0)


def test_depth_pooled_and_per_image_rmse_differ():
    target = torch.ones(2, 1, 2, 2)
    target[1, 0, 0, 1:] = 0.0
    target[1, 0, 1, :] = 0.0  # image B: one valid pixel
    pred = target + 1.0  # image A: four errors of 1
    pred[1, 0, 0, 0] = 5.0  # image B: one error of 4
    metric = DepthMetric()
    metric.update(pred, target)
    r = metric.compute()
    assert r["rmse"] == pytest.approx(2.0)  # sqrt((4 * 1 + 16) / 5)
    assert r["rmse_per_image"] == pytest.approx(2.5)  # (1 + 4) / 2
    assert r["log_rmse"] == pytest.approx(math.sqrt((4 * math.log(2) ** 2 + math.log(5) ** 2) / 5))
    assert r.conventions == {"rmse": "vandenhende", "rmse_per_image": "astmt", "log_rmse": "vandenhende"}


def test_depth_perfect_prediction():
    target = torch.rand(2, 1, 3, 3) + 0.5
    metric = DepthMetric()
    metric.update(target, target)
    assert metric.compute()["rmse"] == pytest.approx(0.0)


def test_depth_log_rmse_clamps_non_positive_predictions_at_1e_minus_9_as_vandenhende():
    """Hand computation in float64: Vandenhende's DepthMeter clamps predictions at 1e-9 before the log."""
    target = torch.tensor([[[[2.0, 1.0, 4.0, 0.0]]]], dtype=torch.float64)  # the last pixel is invalid
    pred = torch.tensor([[[[0.0, -3.0, 2.0**-23, 7.0]]]], dtype=torch.float64)  # 2^-23: exact in float32, < 1e-6
    metric = DepthMetric()
    metric.update(pred, target)
    expected = math.sqrt(
        (
            (math.log(2.0) - math.log(1e-9)) ** 2
            + (math.log(1.0) - math.log(1e-9)) ** 2
            + (math.log(4.0) - math.log(2.0**-23)) ** 2
        )
        / 3
    )
    assert metric.compute()["log_rmse"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("bad", [3, 7, -1, 254])
def test_segmentation_label_outside_the_classes_is_a_one_line_error_naming_it(bad):
    metric = SegmentationMetric(3)
    target = torch.tensor([[[0, 1, bad, 255]]])
    with pytest.raises(ValueError) as err:
        metric.update(torch.zeros(1, 3, 1, 4), target)
    message = str(err.value)
    assert f"ground-truth label {bad} is outside the 3 classes" in message and "0..2 and 255" in message
    assert "\n" not in message
