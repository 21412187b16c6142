"""Task losses of the paper's lineage (ASTMT / Vandenhende), keyed by ``TaskSpec.loss``.

Every loss is a mean over the batch's valid elements and returns ``pred.sum() * 0`` (finite, zero gradient)
when no element is valid. Normalisation choices, against ``facebookresearch/astmt`` ``fblib/layers/loss.py``:

- ``cross_entropy``: identical to ASTMT (``NLLLoss(ignore_index=255)``, mean over valid pixels).
- ``balanced_bce`` / ``auto_balanced_bce``: the weighted sum ``w·Σ_pos + (1−w)·Σ_neg`` is divided by the number
  of *valid* pixels. ASTMT divides by all pixels of the batch (``size_average``); the two agree when nothing is
  ignored. With a fixed ``pos_weight`` ASTMT does not mask void pixels at all (it binarises 255 to positive); we
  mask them, as our target format promises. The auto weight is ASTMT's: fraction of negatives among valid pixels.
- ``normals_l1``: ASTMT's: L1 between the L2-normalised prediction and the target, summed and divided by the
  number of valid *elements* (3 per valid pixel).
- ``depth_l1_grad``: ASTMT's ``DepthLoss``: masked L1 over valid pixels plus the L1 of the Sobel-gradient
  difference (x and y summed, mean over pixels). ASTMT sums the gradient term over every pixel, including the
  image border (zero padding) and invalid regions, whose zero depth creates spurious gradients; we only count
  interior pixels whose full 3×3 neighbourhood is valid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from tsn.target_kinds import IGNORE_INDEX
from tsn.tasks import TaskSpec

LossFn = Callable[..., torch.Tensor]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    count = mask.sum()
    if count == 0:
        return pred.sum() * 0
    return (values * mask).sum() / count


def cross_entropy(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy over classes, mean over pixels whose label is not 255."""
    if not (target != IGNORE_INDEX).any():
        return pred.sum() * 0
    return F.cross_entropy(pred, target.long(), ignore_index=IGNORE_INDEX)


def _weighted_bce(pred: torch.Tensor, target: torch.Tensor, pos_weight: torch.Tensor | float) -> torch.Tensor:
    valid = target != IGNORE_INDEX
    labels = (target >= 0.5) & valid
    log_p = F.logsigmoid(pred)  # log σ(x)
    log_not_p = F.logsigmoid(-pred)  # log(1 − σ(x)), stable; ignored pixels are masked in the mean
    per_pixel = -(pos_weight * labels * log_p + (1 - pos_weight) * ~labels * log_not_p)
    return _masked_mean(per_pixel, valid, pred)


def balanced_bce(pred: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
    """−[w·y·log σ(x) + (1−w)(1−y)·log(1−σ(x))], mean over valid (≠ 255) pixels; ``w = pos_weight``."""
    return _weighted_bce(pred, target, pos_weight)


def auto_balance_weight(target: torch.Tensor) -> torch.Tensor:
    """HED-style positive weight: the fraction of negatives among the batch's valid pixels (0 if none valid)."""
    valid = target != IGNORE_INDEX
    negatives = (valid & (target < 0.5)).sum()
    return negatives / valid.sum().clamp_min(1)


def auto_balanced_bce(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Balanced BCE with ``w`` = fraction of negatives in the batch (saliency)."""
    return _weighted_bce(pred, target, auto_balance_weight(target))


def normals_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the L2-normalised prediction and the unit target, mean over valid elements (target ≠ 0)."""
    unit = pred / (pred.norm(p=2, dim=1, keepdim=True) + 1e-12)
    valid = (target != 0).any(dim=1, keepdim=True).expand_as(target)
    return _masked_mean((unit - target).abs(), valid, pred)


_SOBEL = torch.tensor([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])  # ASTMT's ImGrad x-kernel


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradients (x, y) of a one-channel map, valid convolution: ``[B, 2, H−2, W−2]``."""
    kx = _SOBEL.to(dtype=x.dtype, device=x.device)
    kernels = torch.cat([kx, kx.transpose(2, 3)])
    return F.conv2d(x, kernels)


def depth_l1_grad(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Masked L1 on depth (valid where depth > 0) plus the masked L1 of Sobel-gradient differences."""
    valid = target > 0
    l1 = _masked_mean((pred - target).abs(), valid, pred)
    interior = -F.max_pool2d(-valid.float(), kernel_size=3, stride=1) > 0.5  # whole 3×3 window valid
    grad_diff = (sobel(pred) - sobel(target)).abs().sum(dim=1, keepdim=True)
    return l1 + _masked_mean(grad_diff, interior, pred)


LOSSES: dict[str, LossFn] = {
    "cross_entropy": cross_entropy,
    "balanced_bce": balanced_bce,
    "auto_balanced_bce": auto_balanced_bce,
    "normals_l1": normals_l1,
    "depth_l1_grad": depth_l1_grad,
}


def task_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's unweighted loss, with its ``loss_kwargs`` applied."""
    if task.loss not in LOSSES:
        raise ValueError(f"task {task.name!r}: unknown loss {task.loss!r}; valid: {sorted(LOSSES)}")
    return LOSSES[task.loss](pred, target, **task.loss_kwargs)


def weighted_loss(task: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``task_loss`` scaled by the task's ``loss_weight``."""
    return task.loss_weight * task_loss(task, pred, target)
