"""Mean IoU from TP / FP / FN summed over the whole evaluation set (semantic segmentation, human parts)."""

from __future__ import annotations

import numpy as np
import torch

from tsn.metrics.base import Metric, MetricResult, to_numpy
from tsn.target_kinds import IGNORE_INDEX

ABSENT_POLICIES = ("astmt", "nan_absent")


class SegmentationMetric(Metric):
    """mIoU in percent.

    ``absent="astmt"`` (ASTMT / TSN): IoU_c = TP / max(TP+FP+FN, 1e-8), so a class absent from prediction and
    ground truth scores 0 and stays in the mean. ``absent="nan_absent"`` (mtan / LibMTL): such a class is NaN and
    left out of the mean. ``skip_unlabelled_images`` (parts): images whose label is all 0 or all 255 are skipped.
    """

    def __init__(self, num_classes: int, *, absent: str = "astmt", skip_unlabelled_images: bool = False) -> None:
        if absent not in ABSENT_POLICIES:
            raise ValueError(f"unknown absent-class policy {absent!r}; valid: {list(ABSENT_POLICIES)}")
        self.num_classes = num_classes
        self.absent = absent
        self.skip_unlabelled_images = skip_unlabelled_images
        super().__init__()

    def _zero_state(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(self.num_classes) for k in ("tp", "fp", "fn")}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, C, H, W]`` or class ids ``[B, H, W]``; ``target``: ``[B, H, W]``, 255 ignored."""
        if pred.dim() == 4 and pred.shape[1] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} logit channels, got {pred.shape[1]}")
        labels = to_numpy(pred.argmax(dim=1) if pred.dim() == 4 else pred).astype(np.int64)
        gt = to_numpy(target).astype(np.int64)
        keep = np.ones(len(gt), dtype=bool)
        if self.skip_unlabelled_images:
            flat = gt.reshape(len(gt), -1)
            keep = ~((flat == 0).all(axis=1) | (flat == IGNORE_INDEX).all(axis=1))
        labels, gt = labels[keep], gt[keep]
        valid = gt != IGNORE_INDEX
        p, g = labels[valid], gt[valid]
        n = self.num_classes
        for name, values in (("ground-truth label", g), ("predicted class", p)):
            outside = values[(values < 0) | (values >= n)]
            if outside.size:
                raise ValueError(
                    f"{name} {int(outside[0])} is outside the {n} classes: valid labels are 0..{n - 1} "
                    f"and {IGNORE_INDEX} (ignored)"
                )
        confusion = np.bincount(g * n + p, minlength=n * n).reshape(n, n)  # rows: ground truth
        tp = np.diag(confusion)
        self._state["tp"] += tp
        self._state["fp"] += confusion.sum(axis=0) - tp
        self._state["fn"] += confusion.sum(axis=1) - tp

    def compute(self) -> MetricResult:
        tp, fp, fn = self._state["tp"], self._state["fp"], self._state["fn"]
        union = tp + fp + fn
        if self.absent == "astmt":
            iou = tp / np.maximum(union, 1e-8)
        else:
            iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        miou = float(np.nanmean(iou)) * 100 if not np.isnan(iou).all() else float("nan")
        return MetricResult({"miou": miou}, {"miou": self.absent})
