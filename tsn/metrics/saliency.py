"""Saliency: ASTMT's per-image threshold sweep (mIoU, maxF) and the ATRC / InvPT pooled maxF (β² = 0.3)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tsn.metrics.base import Metric, MetricResult, to_numpy
from tsn.target_kinds import IGNORE_INDEX

ASTMT_THRESHOLDS = tuple(np.linspace(0.2, 0.9, 15))
POOLED_THRESHOLDS = tuple(np.linspace(0.05, 0.95, 19))
POOLED_BETA_SQ = 0.3
EPS = 1e-12  # ASTMT's: precision = tp / (tp + fp + 1e-12)


class SaliencyMetric(Metric):
    """A pixel is salient in the prediction when sigmoid(logit) > threshold; pixels labelled 255 are ignored.

    ASTMT (``eval_sal`` / ``jaccard.py``), per image and threshold: Jaccard with 0/0 = 1 (nothing salient in
    either map), precision tp/(tp+fp+1e-12) and recall tp/(tp+fn+1e-12), so 0/0 = 0 for both. ``miou`` = max
    over thresholds of the image-averaged Jaccard (primary); ``maxF`` = max of 2·mP·mR/(mP+mR+1e-12).
    ``maxF_pooled_b0.3`` (ATRC / InvPT): tp, fp, fn pooled over the dataset per threshold, F_β with β² = 0.3.
    """

    def __init__(
        self,
        thresholds: Sequence[float] = ASTMT_THRESHOLDS,
        pooled_thresholds: Sequence[float] = POOLED_THRESHOLDS,
    ) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.pooled_thresholds = np.asarray(pooled_thresholds, dtype=np.float64)
        super().__init__()

    def _zero_state(self) -> dict[str, np.ndarray]:
        t, tp = len(self.thresholds), len(self.pooled_thresholds)
        return {
            "images": np.zeros(1),
            "jaccard": np.zeros(t),
            "precision": np.zeros(t),
            "recall": np.zeros(t),
            "pooled_tp": np.zeros(tp),
            "pooled_fp": np.zeros(tp),
            "pooled_fn": np.zeros(tp),
        }

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, 1, H, W]``; ``target``: ``[B, 1, H, W]`` of 0/1, 255 ignored."""
        prob = torch.sigmoid(pred.detach().float()).cpu().numpy().reshape(len(pred), -1)
        gt = to_numpy(target).reshape(len(target), -1)
        valid = gt != IGNORE_INDEX
        positive = valid & (gt > 0.5)
        tp, fp, fn = _counts(prob, positive, valid, self.thresholds)  # [B, T] each
        union = tp + fp + fn
        s = self._state
        s["images"] += len(prob)
        s["jaccard"] += np.where(union == 0, 1.0, tp / np.maximum(union, 1)).sum(axis=0)
        s["precision"] += (tp / (tp + fp + EPS)).sum(axis=0)
        s["recall"] += (tp / (tp + fn + EPS)).sum(axis=0)
        ptp, pfp, pfn = _counts(prob, positive, valid, self.pooled_thresholds)
        s["pooled_tp"] += ptp.sum(axis=0)
        s["pooled_fp"] += pfp.sum(axis=0)
        s["pooled_fn"] += pfn.sum(axis=0)

    def compute(self) -> MetricResult:
        s = self._state
        n = s["images"][0]
        if n == 0:
            values = dict.fromkeys(("miou", "maxF", "maxF_pooled_b0.3"), float("nan"))
        else:
            mp, mr = s["precision"] / n, s["recall"] / n
            precision = s["pooled_tp"] / np.maximum(s["pooled_tp"] + s["pooled_fp"], EPS)
            recall = s["pooled_tp"] / np.maximum(s["pooled_tp"] + s["pooled_fn"], EPS)
            f_beta = (1 + POOLED_BETA_SQ) * precision * recall / np.maximum(POOLED_BETA_SQ * precision + recall, EPS)
            values = {
                "miou": float(np.max(s["jaccard"] / n)) * 100,
                "maxF": float(np.max(2 * mp * mr / (mp + mr + EPS))) * 100,
                "maxF_pooled_b0.3": float(np.max(f_beta)) * 100,
            }
        conventions = {"miou": "astmt", "maxF": "astmt", "maxF_pooled_b0.3": "atrc-pooled"}
        return MetricResult(values, conventions)


def _counts(
    prob: np.ndarray, positive: np.ndarray, valid: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Per image and threshold: tp, fp, fn of ``prob > threshold`` over valid pixels, each ``[B, T]``."""
    counts = np.zeros((3, len(prob), len(thresholds)))
    negative = valid & ~positive
    for j, threshold in enumerate(thresholds):  # a loop keeps memory at one [B, H*W] mask
        predicted = prob > threshold
        counts[0, :, j] = (predicted & positive).sum(axis=1)
        counts[1, :, j] = (predicted & negative).sum(axis=1)
        counts[2, :, j] = (~predicted & positive).sum(axis=1)
    return counts[0], counts[1], counts[2]
