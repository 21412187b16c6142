"""Edge odsF: thinning, tolerance, one-to-one matching, for the SEISM-compatible and the fast evaluator."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from seism_reference import _NEIGHBOURS, _THIN_LUTS, ReferenceSeismEdgeMetric

from tsn.evaluate import evaluate
from tsn.metrics import FastEdgeMetric, SeismEdgeMetric
from tsn.metrics.edge import HED_THRESHOLDS, _deletable, thin
from tsn.metrics.pool import MetricPool
from tsn.tasks import dataset_tasks

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


def test_bitwise_deletion_test_equals_the_lookup_tables_on_all_256_neighbourhoods():
    codes = np.arange(256)
    neighbours = [((codes >> bit) & 1).astype(bool) for bit in range(8)]
    for sub, lut in enumerate(_THIN_LUTS):
        assert np.array_equal(_deletable(neighbours, sub), lut)
    assert _THIN_LUTS[0].sum() > 0 and not np.array_equal(*_THIN_LUTS)


def test_thinning_stack_matches_the_dense_reference_on_random_masks():
    rng = np.random.default_rng(0)
    masks = ndimage.uniform_filter(rng.random((70, 24, 24)), size=(1, 3, 3)) > 0.45  # two words of 64 images
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


# ------------------------------------------------------------- the fast SEISM path against today's implementation
def _blurred_curves(rng, n, size):
    """Ground truth: random 1-pixel curves; logits: the curves shifted, blurred and noisy."""
    gt = np.zeros((n, 1, size, size), dtype=np.float32)
    for image in gt[:, 0]:
        for _ in range(3):
            y, x = rng.integers(0, size, 2)
            for step in rng.integers(-1, 2, (4 * size, 2)):
                y, x = np.clip(y + step[0], 0, size - 1), np.clip(x + step[1], 0, size - 1)
                image[y, x] = 1.0
    blurred = ndimage.gaussian_filter(np.roll(gt, 1, axis=3), (0, 0, 1, 1)) * 8
    return blurred + rng.normal(scale=1.5, size=gt.shape) - 2, gt


def _thick_edges(rng, n, size):
    gt = np.zeros((n, 1, size, size), dtype=np.float32)
    gt[:, :, size // 3, 2:-2] = gt[:, :, 3:-3, size // 2] = 1.0
    thick = ndimage.maximum_filter(gt, size=(1, 1, 5, 5))
    return thick * 6 - 3 + rng.normal(scale=0.5, size=gt.shape), gt


def _border_edges(rng, n, size):
    gt = np.zeros((n, 1, size, size), dtype=np.float32)
    gt[:, :, 0, :] = gt[:, :, :, -1] = 1.0  # ground truth on the first row and the last column
    pred = np.zeros_like(gt)
    pred[:, :, :2, :] = pred[:, :, :, -3:] = 4.0
    return pred + rng.normal(size=gt.shape), gt


def _ties(rng, n, size):
    """Few distinct probabilities (many thresholds give equal maps) and crowded, equally good assignments."""
    gt = (rng.random((n, 1, size, size)) < 0.15).astype(np.float32)
    levels = torch.logit(torch.tensor([0.005, 0.3, 0.7]))
    return levels[rng.integers(0, 3, gt.shape)].numpy(), gt


def _random(rng, n, size):
    return rng.normal(scale=2.0, size=(n, 1, size, size)), (rng.random((n, 1, size, size)) < 0.1).astype(np.float32)


def _empty_prediction(rng, n, size):
    return np.full((n, 1, size, size), -20.0), _blurred_curves(rng, n, size)[1]


def _empty_ground_truth(rng, n, size):
    return _blurred_curves(rng, n, size)[0], np.zeros((n, 1, size, size), dtype=np.float32)


def _all_on(rng, n, size):
    return np.full((n, 1, size, size), 20.0), _blurred_curves(rng, n, size)[1]


def _ignored_band(rng, n, size):
    pred, gt = _blurred_curves(rng, n, size)
    gt[:, :, : size // 4] = 255.0
    return pred, gt


def _nan_logits(rng, n, size):
    pred, gt = _blurred_curves(rng, n, size)
    pred[rng.random(pred.shape) < 0.2] = np.nan  # NaN >= t is false: never an edge
    return pred, gt


MAPS = {
    f.__name__.lstrip("_"): f
    for f in (
        _random,
        _empty_prediction,
        _empty_ground_truth,
        _all_on,
        _thick_edges,
        _border_edges,
        _ties,
        _blurred_curves,
        _ignored_band,
        _nan_logits,
    )
}


def _counts(metric_cls, pred, gt, max_dist, thresholds=HED_THRESHOLDS):
    metric = metric_cls(max_dist, thresholds=thresholds)
    metric.update(torch.as_tensor(pred, dtype=torch.float32), torch.as_tensor(gt))
    return metric.state_dict()


@pytest.mark.parametrize("max_dist", [0.0075, 0.03, 0.1])
@pytest.mark.parametrize("kind", sorted(MAPS))
def test_seism_counts_equal_the_reference_implementation(kind, max_dist):
    pred, gt = MAPS[kind](np.random.default_rng(len(kind)), 3, 40)  # three images, summed
    fast = _counts(SeismEdgeMetric, pred, gt, max_dist)
    reference = _counts(ReferenceSeismEdgeMetric, pred, gt, max_dist)
    for key, value in reference.items():
        assert np.array_equal(fast[key], value), key


def test_seism_counts_equal_the_reference_with_unsorted_thresholds_on_a_non_square_image():
    rng = np.random.default_rng(7)
    pred, gt = _blurred_curves(rng, 2, 48)
    pred, gt = pred[..., 5:41], gt[..., 5:41]
    thresholds = (0.5, 0.05, 0.9, 0.2, 0.05)
    fast = _counts(SeismEdgeMetric, pred, gt, 0.05, thresholds)
    reference = _counts(ReferenceSeismEdgeMetric, pred, gt, 0.05, thresholds)
    for key, value in reference.items():
        assert np.array_equal(fast[key], value), key
    assert fast["pred_hit"][1] == fast["pred_hit"][4] and fast["pred_total"][1] == fast["pred_total"][4]


class _Replay(torch.nn.Module):
    """A stand-in model whose outputs are carried by its input: channel 0 edge logits, channels 1: semseg logits."""

    def forward_tasks(self, images, names):
        return {"edge": images[:, :1], "semseg": images[:, 1:]}


@pytest.mark.slow  # starts two worker processes
def test_evaluate_with_two_workers_equals_one_process():
    tasks = dataset_tasks("pascal_context", ["edge", "semseg"])
    rng = np.random.default_rng(3)
    pred, gt = (torch.as_tensor(x, dtype=torch.float32) for x in _blurred_curves(rng, 5, 32))
    semseg = torch.as_tensor(rng.integers(0, 21, (5, 32, 32)))
    images = torch.cat([pred, torch.nn.functional.one_hot(semseg, 21).permute(0, 3, 1, 2).float()], dim=1)
    batches = [
        {"image": images[i : i + 2], "targets": {"edge": gt[i : i + 2], "semseg": semseg[i : i + 2]}}
        for i in range(0, 5, 2)
    ]
    weights = {"edge": 1.0, "semseg": 1.0}
    one, two = (
        evaluate(
            _Replay(), batches, tasks, weights, edge_evaluator="seism", device=torch.device("cpu"), workers=workers
        )
        for workers in (1, 2)
    )
    assert one.results["edge"].values == two.results["edge"].values
    assert one.results["semseg"].values == two.results["semseg"].values == pytest.approx({"miou": 100.0}, abs=1e-6)
    assert one.losses == two.losses
    metric = SeismEdgeMetric(tasks.edge_max_dist)
    metric.update(pred, gt)
    assert two.results["edge"].values == metric.compute().values


@pytest.mark.parametrize("workers", [0, -1, 1.5])
def test_metric_pool_rejects_a_bad_worker_count(workers):
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        MetricPool(workers)
