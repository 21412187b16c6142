"""Losses on tiny maps with the expected values worked out by hand."""

import math

import pytest
import torch

from tsn.losses import LOSSES, auto_balance_weight, task_loss, weighted_loss
from tsn.tasks import DATASETS

LN3 = math.log(3.0)


def test_cross_entropy_ignores_255_and_averages_valid_pixels():
    # class-0 logit ln 3, class-1 logit 0 -> p0 = 3/4, p1 = 1/4 everywhere
    pred = torch.zeros(1, 2, 2, 2)
    pred[:, 0] = LN3
    target = torch.tensor([[[0, 1], [255, 0]]])
    expected = (2 * math.log(4 / 3) + math.log(4)) / 3
    assert LOSSES["cross_entropy"](pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_balanced_bce_weights_positives_and_negatives_and_ignores_255():
    pred = torch.full((1, 1, 2, 2), LN3)  # sigmoid = 3/4
    target = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])
    w = 0.95
    expected = (-w * math.log(3 / 4) - 2 * (1 - w) * math.log(1 / 4)) / 3
    assert LOSSES["balanced_bce"](pred, target, pos_weight=w).item() == pytest.approx(expected, rel=1e-6)


def test_auto_balance_weight_is_the_fraction_of_valid_negatives():
    target = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])
    assert auto_balance_weight(target).item() == pytest.approx(2 / 3)


def test_auto_balanced_bce_uses_the_batch_weight():
    pred = torch.zeros(1, 1, 2, 2)  # sigmoid = 1/2, every valid pixel costs ln 2 before weighting
    target = torch.tensor([[[[1.0, 0.0], [0.0, 255.0]]]])
    expected = (2 / 3 * math.log(2) + 2 * (1 / 3) * math.log(2)) / 3
    assert LOSSES["auto_balanced_bce"](pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_normals_l1_is_zero_for_a_perfect_unnormalised_prediction():
    target = torch.zeros(1, 3, 2, 2)
    target[:, 2] = 1.0
    assert LOSSES["normals_l1"](5.0 * target, target).item() == pytest.approx(0.0, abs=1e-6)


def test_normals_l1_of_a_90_degree_error_is_two_thirds_over_valid_pixels():
    target = torch.zeros(1, 3, 2, 2)
    target[:, 2] = 1.0
    target[0, :, 1, 1] = 0.0  # invalid pixel: the prediction there must not count
    pred = torch.zeros(1, 3, 2, 2)
    pred[:, 0] = 3.0  # (1, 0, 0) after normalisation: |1| + |0| + |−1| = 2 over 3 elements
    assert LOSSES["normals_l1"](pred, target).item() == pytest.approx(2 / 3, rel=1e-6)


def test_depth_loss_constant_offset_has_no_gradient_term():
    target = torch.full((1, 1, 4, 4), 2.0)
    assert LOSSES["depth_l1_grad"](target + 0.5, target).item() == pytest.approx(0.5, rel=1e-6)


def test_depth_loss_adds_the_sobel_gradient_difference():
    target = torch.full((1, 1, 4, 4), 2.0)
    ramp = torch.arange(4.0).expand(4, 4)  # +1 per column: Sobel x = 8 in magnitude, y = 0
    pred = target + ramp
    expected = 1.5 + 8.0  # mean |ramp| over 16 valid pixels + gradient term on the 2x2 interior
    assert LOSSES["depth_l1_grad"](pred, target).item() == pytest.approx(expected, rel=1e-6)


def test_depth_loss_ignores_zero_depth_pixels():
    target = torch.full((1, 1, 4, 4), 2.0)
    target[0, 0, 0, 0] = 0.0
    pred = target.clone()
    pred[0, 0, 0, 0] = 100.0  # wrong only where depth is invalid
    assert LOSSES["depth_l1_grad"](pred, target).item() == pytest.approx(0.0, abs=1e-6)


EMPTY_TARGETS = {
    "cross_entropy": (torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255)),
    "balanced_bce": (torch.randn(2, 1, 4, 4), torch.full((2, 1, 4, 4), 255.0)),
    "auto_balanced_bce": (torch.randn(2, 1, 4, 4), torch.full((2, 1, 4, 4), 255.0)),
    "normals_l1": (torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)),
    "depth_l1_grad": (torch.randn(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_ignored_batch_gives_zero_loss_and_finite_zero_gradient(name):
    pred, target = EMPTY_TARGETS[name]
    pred = pred.clone().requires_grad_(True)
    kwargs = {"pos_weight": 0.95} if name == "balanced_bce" else {}
    loss = LOSSES[name](pred, target, **kwargs)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_every_registered_task_loss_exists_and_weighted_loss_scales_it():
    edge = DATASETS["pascal_context"].get("edge")
    pred = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    # pos_weight 0.95 from loss_kwargs: (0.95 + 3 * 0.05) ln 2 / 4
    assert task_loss(edge, pred, target).item() == pytest.approx(1.1 * math.log(2) / 4, rel=1e-6)
    assert weighted_loss(edge, pred, target).item() == pytest.approx(50 * 1.1 * math.log(2) / 4, rel=1e-6)
    for tasks in DATASETS.values():
        for task in tasks.tasks:
            assert task.loss in LOSSES
