"""Metric updates in worker processes: the expensive metrics' batches run in a process pool and each batch's raw
counts come back to be added with ``Metric.merge``, so the result is the same for any number of workers."""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from types import TracebackType

import numpy as np
import torch

from tsn.metrics.base import Metric


def _single_threaded() -> None:
    torch.set_num_threads(1)  # one worker per core: workers × threads ≤ cores


def batch_state(metric: Metric, pred: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """The accumulators of ``metric`` over this batch alone (a worker runs it on its own pickled copy)."""
    metric.reset()
    metric.update(pred, target)
    return metric.state_dict()


class MetricPool:
    """``update`` runs in-process with ``workers`` = 1 and for metrics that are not ``expensive``; otherwise in one
    of ``workers`` processes (spawned: no forked thread pools), at most two batches per worker in flight.
    Leaving the ``with`` block waits for every batch and merges it into its metric."""

    def __init__(self, workers: int = 1) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an integer >= 1 (1 = in process), got {workers!r}")
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._pending: deque[tuple[Metric, Future]] = deque()

    def __enter__(self) -> MetricPool:
        if self.workers > 1:
            self._executor = ProcessPoolExecutor(
                self.workers, multiprocessing.get_context("spawn"), initializer=_single_threaded
            )
        return self

    def update(self, metric: Metric, pred: torch.Tensor, target: torch.Tensor) -> None:
        if self._executor is None or not metric.expensive:
            metric.update(pred, target)
            return
        while len(self._pending) >= 2 * self.workers:
            self._merge_oldest()
        self._pending.append((metric, self._executor.submit(batch_state, metric, pred.cpu(), target.cpu())))

    def _merge_oldest(self) -> None:
        metric, future = self._pending.popleft()
        metric.merge(future.result())

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        try:
            while self._pending and kind is None:
                self._merge_oldest()
        finally:
            if self._executor is not None:
                self._executor.shutdown(cancel_futures=True)
            self._executor, self._pending = None, deque()
