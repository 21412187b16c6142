"""Today's (before the fast path) SEISM-compatible edge evaluator, kept verbatim as the reference the fast one
must equal count for count: per-pixel sparse thinning of the whole threshold stack, and per threshold a graph
built offset by offset and matched with ``scipy.sparse.csgraph.maximum_bipartite_matching``. Slow (seconds to
minutes per 512² image: that matcher degrades on nearly perfect matchings); tests use it on small maps only."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from tsn.metrics.edge import _EdgeMetric, _within

# Neighbour x_i (i = 1..8, counter-clockwise from east) as a (dy, dx) offset; bit i-1 of a pixel's code.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _thin_luts() -> tuple[np.ndarray, np.ndarray]:
    """Deletion tables of the two sub-iterations of MATLAB's ``bwmorph 'thin'`` (Lam, Lee & Suen 1992)."""
    first, second = np.zeros(256, dtype=bool), np.zeros(256, dtype=bool)
    for code in range(256):
        x = [None] + [(code >> i) & 1 for i in range(8)] + [code & 1]  # x[1..8], x[9] = x[1]
        crossings = sum(1 for i in range(1, 5) if not x[2 * i - 1] and (x[2 * i] or x[2 * i + 1]))
        n1 = sum(x[2 * k - 1] | x[2 * k] for k in range(1, 5))
        n2 = sum(x[2 * k] | x[2 * k + 1] for k in range(1, 5))
        g12 = crossings == 1 and 2 <= min(n1, n2) <= 3
        first[code] = g12 and ((x[2] or x[3] or not x[8]) and x[1]) == 0
        second[code] = g12 and ((x[6] or x[7] or not x[4]) and x[5]) == 0
    return first, second


_THIN_LUTS = _thin_luts()


def thin(mask: np.ndarray) -> np.ndarray:
    """Thinning to 1-pixel-wide 8-connected skeletons (``bwmorph(mask, 'thin', inf)``) of the last two axes;
    leading axes are a stack of independent images (one per threshold) thinned together.

    A pixel's fate under a sub-iteration depends only on its 8-neighbourhood, so after the first pass only the
    pixels next to a deletion of the last two sub-iterations are re-examined (cost ~ pixels removed)."""
    h, w = mask.shape[-2:]
    padded = np.pad(mask.astype(bool), [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])  # borders stay 0
    image = padded.ravel().copy()
    steps = np.array([dy * (w + 2) + dx for dy, dx in _NEIGHBOURS])
    window = np.concatenate([[0], steps])
    candidates = np.flatnonzero(image)
    touched_before = candidates
    stamp = np.empty(image.size, dtype=np.int64)
    for sub in itertools.count():
        codes = np.zeros(len(candidates), dtype=np.uint8)
        for bit, step in enumerate(steps):
            codes |= image[candidates + step].astype(np.uint8) << bit
        deleted = candidates[_THIN_LUTS[sub % 2][codes]]
        if len(deleted) == 0 and len(touched_before) == 0:
            break
        image[deleted] = False
        touched = (deleted[:, None] + window).ravel()
        candidates = _distinct(np.concatenate([touched, touched_before]), stamp)
        candidates = candidates[image[candidates]]
        touched_before = touched
    return image.reshape(padded.shape)[..., 1:-1, 1:-1]


def _distinct(indices: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """The distinct values of ``indices`` without sorting; ``stamp`` is scratch space indexable by them."""
    order = np.arange(len(indices))
    stamp[indices] = order
    return indices[stamp[indices] == order]


def _disk_offsets(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    offsets = np.argwhere(np.ones((2 * r + 1, 2 * r + 1), dtype=bool)) - r
    return offsets[(offsets**2).sum(axis=1) <= radius**2]


def _matched_pairs(pred: np.ndarray, gt_index: np.ndarray, offsets: np.ndarray) -> int:
    """Size of a maximum one-to-one matching of predicted to ground-truth pixels within the disk ``offsets``;
    ``gt_index`` numbers the ground-truth pixels (−1 elsewhere), ``pred`` holds only pixels near one of them."""
    if len(offsets) == 1:  # tolerance below one pixel: only coincident pixels match, one-to-one by construction
        return int((pred & (gt_index >= 0)).sum())
    h, w = gt_index.shape
    points = np.argwhere(pred)
    rows, cols = [], []
    for dy, dx in offsets:
        y, x = points[:, 0] + dy, points[:, 1] + dx
        inside = np.flatnonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))
        j = gt_index[y[inside], x[inside]]
        rows.append(inside[j >= 0])
        cols.append(j[j >= 0])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    if len(rows) == 0:
        return 0
    graph = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(points), int(gt_index.max()) + 1))
    return int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())


class ReferenceSeismEdgeMetric(_EdgeMetric):
    """SEISM-compatible: thinning (all thresholds of an image at once) plus one one-to-one matching per image and
    threshold, reused while the thinned map does not change."""

    convention = "seism-compatible"

    def _update_image(self, prob: np.ndarray, gt: np.ndarray, radius: float) -> None:
        gt_thin = thin(gt)
        gt_index = np.full(gt.shape, -1)
        gt_index[gt_thin] = np.arange(gt_thin.sum())
        near_gt = _within(gt_thin, radius)
        offsets = _disk_offsets(radius)
        predicted = thin(prob[None] >= self.thresholds[:, None, None])  # [T, H, W]
        s = self._state
        for j in range(len(self.thresholds)):
            if j == 0 or not np.array_equal(predicted[j], predicted[j - 1]):
                matched = _matched_pairs(predicted[j] & near_gt, gt_index, offsets)
            s["pred_hit"][j] += matched
            s["gt_hit"][j] += matched
        s["pred_total"] += predicted.sum(axis=(1, 2))
        s["gt_total"] += gt_thin.sum()
