"""Depth: RMSE over valid pixels (depth > 0), pixel-pooled over the dataset and per image."""

from __future__ import annotations

import numpy as np
import torch

from tsn.metrics.base import Metric, MetricResult, to_numpy

# Predictions are clamped to this before the log, as Vandenhende's DepthMeter does (``torch.clamp(pred, min=1e-9)``,
# evaluation/eval_depth.py of Multi-Task-Learning-PyTorch), the convention ``log_rmse`` is labelled with.
LOG_EPS = 1e-9


class DepthMetric(Metric):
    """``rmse``: sqrt of the squared error averaged over all valid pixels of the dataset (Vandenhende; primary).
    ``rmse_per_image``: mean over images of each image's RMSE (ASTMT); images without valid pixels are skipped.
    ``log_rmse``: pixel-pooled RMSE of log depth (Vandenhende).
    """

    def _zero_state(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(1) for k in ("pixels", "sq", "log_sq", "images", "image_rmse")}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``, ``target``: ``[B, 1, H, W]``; target 0 = invalid."""
        p = to_numpy(pred).astype(np.float64).reshape(len(pred), -1)
        g = to_numpy(target).astype(np.float64).reshape(len(target), -1)
        valid = g > 0
        sq = np.where(valid, (p - g) ** 2, 0.0)
        log_sq = np.where(valid, (np.log(np.maximum(p, LOG_EPS)) - np.log(np.where(valid, g, 1.0))) ** 2, 0.0)
        per_image_pixels = valid.sum(axis=1)
        has_pixels = per_image_pixels > 0
        s = self._state
        s["pixels"] += per_image_pixels.sum()
        s["sq"] += sq.sum()
        s["log_sq"] += log_sq.sum()
        s["images"] += has_pixels.sum()
        s["image_rmse"] += np.sqrt(sq.sum(axis=1)[has_pixels] / per_image_pixels[has_pixels]).sum()

    def compute(self) -> MetricResult:
        s = {k: v[0] for k, v in self._state.items()}
        nan = float("nan")
        values = {
            "rmse": float(np.sqrt(s["sq"] / s["pixels"])) if s["pixels"] else nan,
            "rmse_per_image": float(s["image_rmse"] / s["images"]) if s["images"] else nan,
            "log_rmse": float(np.sqrt(s["log_sq"] / s["pixels"])) if s["pixels"] else nan,
        }
        conventions = {"rmse": "vandenhende", "rmse_per_image": "astmt", "log_rmse": "vandenhende"}
        return MetricResult(values, conventions)
