"""Edge detection odsF without MATLAB: a SEISM-compatible matching evaluator and a fast tolerance evaluator.

Both sweep thresholds over sigmoid(logit) (``prob >= t``, as the BSDS/SEISM code does), sum the counts of every
threshold over the dataset and report odsF = max over thresholds of 2PR/(P+R) (percent) and the ODS threshold.
Ground-truth pixels are ``target == 1``; pixels labelled 255 are ignored (predictions there are dropped).
The match tolerance is ``max_dist`` × the image diagonal (0.0075 PASCAL-Context, 0.011 NYUD).

- ``seism-compatible`` (``SeismEdgeMetric``): per threshold, the binary map and the ground truth are thinned
  (MATLAB ``bwmorph(·, 'thin', inf)``) and matched one-to-one within the tolerance. SEISM's CSA finds a
  cost-optimal (minimum total distance) assignment; here an exact maximum-cardinality matching (unit-capacity
  maximum flow) is used. Both match the same number of pixels whenever CSA's assignment is of maximum
  cardinality, so counts can differ only in rare crowded configurations. All thresholds are thinned at once
  (one bit per threshold, 64 per machine word), each predicted pixel's ground-truth candidates are found once
  per image, and only the connected components whose pixels changed since the previous threshold are matched
  again; the counts equal the first Python implementation's (``tests/seism_reference.py``) exactly.
- ``fast`` (``FastEdgeMetric``): no thinning and no matching: a predicted pixel is a hit if a ground-truth pixel
  lies within the tolerance (distance transform), a ground-truth pixel is recalled if a predicted pixel does
  (disk max-filter). Fully vectorised over thresholds; thick predictions score a higher precision than under
  SEISM. Meant for validation during training.

Measured cost (BENCHMARKS.md, SEISM section): under 1 s of one core per 512² image at 101 thresholds (seism)
vs 0.03 s (fast); ``tsn.evaluate.evaluate(..., workers=N)`` runs the seism updates in N processes
(``tsn.metrics.pool.MetricPool``), with the same counts.
"""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, maximum_flow

from tsn.metrics.base import Metric, MetricResult, to_numpy
from tsn.target_kinds import IGNORE_INDEX

HED_THRESHOLDS = (0.001, *(k / 100 for k in range(1, 100)), 0.999)

# Neighbour x_i (i = 1..8, counter-clockwise from east) as a (dy, dx) offset.
_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def _deletable(x: Sequence[np.ndarray], sub: int) -> np.ndarray:
    """Deletion test of sub-iteration ``sub`` (0 or 1) of MATLAB's ``bwmorph 'thin'`` (Lam, Lee & Suen 1992),
    bitwise on the neighbour words ``x`` = (x1, …, x8): one bit per image, so 64 images are tested per word.

    G1: exactly one of b_i = ¬x_{2i−1} ∧ (x_{2i} ∨ x_{2i+1}) holds; G2: 2 ≤ min(n1, n2) ≤ 3 with
    n1 = #{x_{2k−1} ∨ x_{2k}}, n2 = #{x_{2k} ∨ x_{2k+1}}; G3: (x2 ∨ x3 ∨ ¬x8) ∧ x1 = 0 (first sub-iteration)
    or G3': (x6 ∨ x7 ∨ ¬x4) ∧ x5 = 0 (second)."""
    x1, x2, x3, x4, x5, x6, x7, x8 = x
    b1, b2, b3, b4 = ~x1 & (x2 | x3), ~x3 & (x4 | x5), ~x5 & (x6 | x7), ~x7 & (x8 | x1)
    g1 = (b1 ^ b2 ^ b3 ^ b4) & ~((b1 & b2) | (b3 & b4))  # odd count, and not three

    def at_least_two(a1: np.ndarray, a2: np.ndarray, a3: np.ndarray, a4: np.ndarray) -> np.ndarray:
        return (a1 & a2) | (a3 & a4) | ((a1 | a2) & (a3 | a4))

    n1_terms = (x1 | x2, x3 | x4, x5 | x6, x7 | x8)
    n2_terms = (x2 | x3, x4 | x5, x6 | x7, x8 | x1)
    both_four = functools.reduce(operator.and_, n1_terms + n2_terms)
    g2 = at_least_two(*n1_terms) & at_least_two(*n2_terms) & ~both_four
    g3 = ~((x2 | x3 | ~x8) & x1) if sub == 0 else ~((x6 | x7 | ~x4) & x5)
    return g1 & g2 & g3


def thin(mask: np.ndarray) -> np.ndarray:
    """Thinning to 1-pixel-wide 8-connected skeletons (``bwmorph(mask, 'thin', inf)``) of the last two axes;
    leading axes are a stack of independent images (one per threshold) thinned together."""
    h, w = mask.shape[-2:]
    stack = np.pad(mask.reshape(-1, h, w).astype(bool), ((0, 0), (1, 1), (1, 1)))
    n_words = -(-len(stack) // 64)
    packed = np.zeros((8 * n_words, stack[0].size), dtype=np.uint8)
    packed[: -(-len(stack) // 8)] = np.packbits(stack, axis=0, bitorder="little").reshape(-1, stack[0].size)
    words = np.ascontiguousarray(packed.reshape(n_words, 8, -1).transpose(2, 0, 1)).view(np.uint64)[..., 0]
    _thin_words(words, w + 2)
    bits = _unpack(words, len(stack))
    return bits.T.reshape(stack.shape)[:, 1:-1, 1:-1].reshape(mask.shape)


def _pack_levels(prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The maps ``prob >= t`` of the ascending ``thresholds`` packed as ``_thin_words`` takes them: one bit per
    map (map ``k`` in bit ``k % 64`` of word ``k // 64``), built from each pixel's count of thresholds ≤ it."""
    level = np.searchsorted(thresholds, prob.ravel(), side="right")
    level[np.isnan(prob.ravel())] = 0  # NaN >= t is false (searchsorted would put NaN above every threshold)
    n_words = -(-len(thresholds) // 64)
    ones = np.clip(level[:, None] - 64 * np.arange(n_words), 0, 64).astype(np.uint64)  # low bits set
    return np.where(ones == 64, np.uint64(2**64 - 1), (np.uint64(1) << ones % np.uint64(64)) - np.uint64(1))


def _unpack(words: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` bits of each pixel's words ``[pixels, W]``: ``[pixels, n]`` bool."""
    return np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=1, bitorder="little")[:, :n].astype(bool)


def _thin_words(words: np.ndarray, row: int) -> None:
    """Thin the images packed in ``words`` (``[pixels, W]`` uint64 over a zero-bordered grid ``row`` pixels wide,
    one bit per image) in place, all images in parallel.

    A pixel's fate under a sub-iteration depends only on its 8-neighbourhood, so after the first pass only the
    pixels next to a deletion of the last two sub-iterations are re-examined (cost ~ pixels removed). Testing
    more pixels or images than needed changes nothing: a converged image has no deletable pixel."""
    steps = np.array([dy * row + dx for dy, dx in _NEIGHBOURS])
    window = np.concatenate([[0], steps])
    items = words.view(np.dtype((np.void, words.itemsize * words.shape[1])))[:, 0]  # a pixel's words as one item
    candidates = np.flatnonzero(words.any(axis=1))
    touched_before = candidates
    stamp = np.empty(len(items), dtype=np.int64)
    for sub in itertools.count():
        centre = _gather(items, candidates)
        delete = centre & _deletable([_gather(items, candidates + step) for step in steps], sub % 2)
        hit = delete.any(axis=0)
        deleted = candidates[hit]
        if len(deleted) == 0 and len(touched_before) == 0:
            break
        words[deleted] = (centre[:, hit] & ~delete[:, hit]).T
        touched = (deleted[:, None] + window).ravel()
        candidates = _distinct(np.concatenate([touched, touched_before]), stamp)
        candidates = candidates[words[candidates].any(axis=1)]
        touched_before = touched


def _gather(items: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The words ``[W, len(index)]`` of the pixels ``index``, taken as whole items (one copy per pixel)."""
    return items[index].view(np.uint64).reshape(len(index), items.itemsize // 8).T


def _distinct(indices: np.ndarray, stamp: np.ndarray) -> np.ndarray:
    """The distinct values of ``indices`` without sorting; ``stamp`` is scratch space indexable by them."""
    order = np.arange(len(indices))
    stamp[indices] = order
    return indices[stamp[indices] == order]


def _disk_offsets(radius: float) -> np.ndarray:
    r = int(np.floor(radius))
    offsets = np.argwhere(np.ones((2 * r + 1, 2 * r + 1), dtype=bool)) - r
    return offsets[(offsets**2).sum(axis=1) <= radius**2]


def _candidate_graph(points: np.ndarray, gt_index: np.ndarray, offsets: np.ndarray) -> csr_matrix:
    """Bipartite graph (rows: ``points`` [N, 2], columns: ground-truth pixels numbered by ``gt_index``, −1
    elsewhere) with an edge wherever a ground-truth pixel lies within the disk ``offsets`` of a point."""
    h, w = gt_index.shape
    rows, cols = [], []
    for dy, dx in offsets:
        y, x = points[:, 0] + dy, points[:, 1] + dx
        inside = np.flatnonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))
        j = gt_index[y[inside], x[inside]]
        rows.append(inside[j >= 0])
        cols.append(j[j >= 0])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(len(points), gt_index.max() + 1))


def _matching_sizes(graph: csr_matrix, active: np.ndarray) -> np.ndarray:
    """For each column ``j`` of ``active`` (``[rows, T]`` bool), the size of a maximum one-to-one matching of the
    active rows of ``graph`` to its columns. A maximum matching is the union of maximum matchings of the graph's
    connected components, so a component is matched again only where its active rows differ from column j − 1's."""
    p = graph.shape[0]
    coo = graph.tocoo()
    adjacency = csr_matrix((coo.data, (coo.row, p + coo.col)), shape=(p + graph.shape[1],) * 2)
    n_components, labels = connected_components(adjacency, connection="weak")
    labels = labels[:p]
    per_component = np.zeros(n_components, dtype=np.int64)
    sizes = np.zeros(active.shape[1], dtype=np.int64)
    previous = np.zeros(p, dtype=bool)
    for j, now in enumerate(active.T):
        changed = np.zeros(n_components, dtype=bool)
        changed[labels[now != previous]] = True
        if changed.any():
            rows = np.flatnonzero(now & changed[labels])
            matched = np.bincount(labels[rows[_matched_rows(graph[rows])]], minlength=n_components)
            per_component[changed] = matched[changed]
        sizes[j] = per_component.sum()
        previous = now
    return sizes


def _matched_rows(graph: csr_matrix) -> np.ndarray:
    """The rows that a maximum one-to-one matching of rows to columns matches: a unit-capacity maximum flow
    (Dinic). Exact, like the ``maximum_bipartite_matching`` used before, which takes seconds per call on some
    nearly perfect matchings."""
    p, g = graph.shape
    if graph.nnz == 0:
        return np.zeros(0, dtype=np.int64)
    source, sink = p + g, p + g + 1  # nodes: rows, columns, source, sink
    indices = np.concatenate([graph.indices + p, np.full(g, sink), np.arange(p)])
    indptr = np.concatenate([graph.indptr, graph.nnz + np.arange(1, g + 1), [graph.nnz + g + p] * 2])
    network = csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=(p + g + 2,) * 2)
    flow = maximum_flow(network, source, sink, method="dinic").flow
    out = slice(flow.indptr[source], flow.indptr[source + 1])
    return flow.indices[out][flow.data[out] > 0]


class _EdgeMetric(Metric):
    """Shared accumulators: per threshold, hits and totals for precision (predicted) and recall (ground truth)."""

    convention = ""

    def __init__(self, max_dist: float, thresholds: Sequence[float] = HED_THRESHOLDS) -> None:
        self.max_dist = max_dist
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        super().__init__()

    def _zero_state(self) -> dict[str, np.ndarray]:
        return {k: np.zeros(len(self.thresholds)) for k in ("pred_hit", "pred_total", "gt_hit", "gt_total")}

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: logits ``[B, 1, H, W]``; ``target``: ``[B, 1, H, W]`` of 0/1, 255 ignored."""
        probs = torch.sigmoid(pred.detach().float()).cpu().numpy()[:, 0]
        gts = to_numpy(target)[:, 0]
        for prob, gt in zip(probs, gts):
            valid = gt != IGNORE_INDEX
            radius = self.max_dist * float(np.hypot(*gt.shape))
            self._update_image(np.where(valid, prob, -1.0), (gt == 1) & valid, radius)

    def _update_image(self, prob: np.ndarray, gt: np.ndarray, radius: float) -> None:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        s = self._state
        precision = np.where(s["pred_total"] > 0, s["pred_hit"] / np.maximum(s["pred_total"], 1), 0.0)
        recall = np.where(s["gt_total"] > 0, s["gt_hit"] / np.maximum(s["gt_total"], 1), 0.0)
        f = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        best = int(np.argmax(f))
        values = {"odsF": float(f[best]) * 100, "ods_threshold": float(self.thresholds[best])}
        return MetricResult(values, dict.fromkeys(values, self.convention))


class SeismEdgeMetric(_EdgeMetric):
    """SEISM-compatible: the thresholds of an image thinned together (bit-parallel), the ground-truth candidates
    of every predicted pixel found once, and per threshold a matching of the components that changed."""

    convention = "seism-compatible"
    expensive = True

    def _update_image(self, prob: np.ndarray, gt: np.ndarray, radius: float) -> None:
        gt_thin = thin(gt)
        gt_index = np.full(gt.shape, -1)
        gt_index[gt_thin] = np.arange(gt_thin.sum())
        order = np.argsort(self.thresholds, kind="stable")
        words = _pack_levels(np.pad(prob, 1, constant_values=-1.0), self.thresholds[order])
        _thin_words(words, gt.shape[1] + 2)
        on = np.flatnonzero(words.any(axis=1))  # padded pixels on at some threshold after thinning
        bits = _unpack(words[on], len(order))[:, np.argsort(order)]  # [pixels, T], columns as self.thresholds
        points = np.stack(np.divmod(on, gt.shape[1] + 2), axis=1) - 1
        near = _within(gt_thin, radius)[points[:, 0], points[:, 1]]
        graph = _candidate_graph(points[near], gt_index, _disk_offsets(radius))
        matched = _matching_sizes(graph, bits[near])
        s = self._state
        s["pred_hit"] += matched
        s["gt_hit"] += matched
        s["pred_total"] += bits.sum(axis=0)
        s["gt_total"] += gt_thin.sum()


class FastEdgeMetric(_EdgeMetric):
    """Distance-transform tolerance without thinning or matching, vectorised over thresholds."""

    convention = "fast"

    def _update_image(self, prob: np.ndarray, gt: np.ndarray, radius: float) -> None:
        near_gt = _within(gt, radius)
        r = int(np.floor(radius))
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
        best_nearby = ndimage.maximum_filter(prob, footprint=yy**2 + xx**2 <= radius**2, mode="constant", cval=-1.0)
        s = self._state
        s["pred_total"] += _count_at_least(prob.ravel(), self.thresholds)
        s["pred_hit"] += _count_at_least(prob[near_gt], self.thresholds)
        s["gt_hit"] += _count_at_least(best_nearby[gt], self.thresholds)
        s["gt_total"] += gt.sum()


def _within(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels at distance ≤ radius from a pixel of ``mask``."""
    if not mask.any():
        return np.zeros_like(mask)
    return ndimage.distance_transform_edt(~mask) <= radius


def _count_at_least(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, how many values are ≥ it."""
    ordered = np.sort(values)
    return len(ordered) - np.searchsorted(ordered, thresholds, side="left")
