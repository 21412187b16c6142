"""The metrics package as the trainer sees it: built from the registry, every number with its convention."""

import pytest
import torch

from tsn.metrics import EDGE_EVALUATORS, MetricResult, build_metric
from tsn.tasks import DATASETS, TaskSpec

# A perfect prediction for each target kind: (target, prediction).
_H = _W = 8


def _label(task):
    target = (torch.arange(2 * _H * _W) % task.channels).reshape(2, _H, _W)  # every class present (ASTMT: absent = 0)
    logits = torch.nn.functional.one_hot(target, task.channels).permute(0, 3, 1, 2).float()
    target[:, 0, 0] = 255
    return target, logits


def _binary(_):
    target = torch.zeros(2, 1, _H, _W)
    target[:, :, 3, 1:-1] = 1.0
    return target, (target * 2 - 1) * 20


def _normals(_):
    target = torch.nn.functional.normalize(torch.randn(2, 3, _H, _W), dim=1)
    return target, 3 * target


def _depth(_):
    target = torch.rand(2, 1, _H, _W) + 0.5
    return target, target.clone()


PERFECT = {"label": _label, "binary": _binary, "normals": _normals, "depth": _depth}


@pytest.mark.parametrize("evaluator", sorted(EDGE_EVALUATORS))
@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_every_registered_task_scores_best_on_a_perfect_prediction(dataset, evaluator):
    tasks = DATASETS[dataset]
    for task in tasks.tasks:
        metric = build_metric(task, edge_max_dist=tasks.edge_max_dist, edge_evaluator=evaluator)
        target, pred = PERFECT[task.target](task)
        metric.update(pred, target)
        result = metric.compute()
        best = 100.0 if task.higher_is_better else 0.0
        assert result[task.metric] == pytest.approx(best, abs=1e-3), task.name
        assert set(result.conventions) == set(result.values)


def test_parts_metric_skips_unlabelled_images_and_semseg_does_not():
    tasks = DATASETS["pascal_context"]
    parts = build_metric(tasks.get("parts"), edge_max_dist=tasks.edge_max_dist)
    semseg = build_metric(tasks.get("semseg"), edge_max_dist=tasks.edge_max_dist)
    assert parts.skip_unlabelled_images and not semseg.skip_unlabelled_images


def test_edge_evaluator_is_selectable_and_recorded():
    tasks = DATASETS["nyud"]
    metric = build_metric(tasks.get("edge"), edge_max_dist=tasks.edge_max_dist, edge_evaluator="seism")
    target, pred = _binary(None)
    metric.update(pred, target)
    assert metric.compute().conventions["odsF"] == "seism-compatible"
    assert metric.max_dist == 0.011


def test_unknown_evaluator_or_target_metric_pair_is_rejected():
    edge = DATASETS["nyud"].get("edge")
    with pytest.raises(ValueError, match="edge evaluator"):
        build_metric(edge, edge_max_dist=0.011, edge_evaluator="matlab")
    odd = TaskSpec("odd", 1, "depth", "depth_l1_grad", 1.0, "abs_rel", False)
    with pytest.raises(ValueError, match="no metric"):
        build_metric(odd, edge_max_dist=0.011)


def test_a_result_without_a_convention_for_every_value_is_rejected():
    with pytest.raises(ValueError, match="convention"):
        MetricResult({"miou": 50.0}, {})


def test_merge_rejects_a_state_of_another_metric():
    tasks = DATASETS["pascal_context"]
    semseg = build_metric(tasks.get("semseg"), edge_max_dist=tasks.edge_max_dist)
    normals = build_metric(tasks.get("normals"), edge_max_dist=tasks.edge_max_dist)
    with pytest.raises(ValueError, match="merge"):
        semseg.merge(normals.state_dict())
