"""The accumulator protocol every metric follows, and the result record that names each number's convention.

A metric keeps only additive raw accumulators (counts, sums, histograms) as float64 numpy arrays, so that results
over shards can be merged exactly (``merge``) and ``compute`` never averages per-batch results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class MetricResult:
    """Metric values and, for every value, the name of the convention that defines it."""

    values: Mapping[str, float]
    conventions: Mapping[str, str]

    def __post_init__(self) -> None:
        if set(self.values) != set(self.conventions):
            raise ValueError(f"every value needs a convention: {sorted(self.values)} vs {sorted(self.conventions)}")

    def __getitem__(self, key: str) -> float:
        return self.values[key]


class Metric:
    """Base class: subclasses declare their accumulators in ``_zero_state`` and implement ``update``/``compute``."""

    expensive = False  # updates worth a worker process (seconds per image): see tsn.metrics.pool

    def __init__(self) -> None:
        self._state = self._zero_state()

    def _zero_state(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        raise NotImplementedError

    def reset(self) -> None:
        self._state = self._zero_state()

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._state.items()}

    def merge(self, state: Mapping[str, np.ndarray]) -> None:
        """Add another shard's accumulators (a ``state_dict`` of the same metric configuration)."""
        if set(state) != set(self._state):
            raise ValueError(f"cannot merge state with keys {sorted(state)} into {sorted(self._state)}")
        for key, value in state.items():
            if np.shape(value) != self._state[key].shape:
                raise ValueError(f"state {key!r}: shape {np.shape(value)} != {self._state[key].shape}")
            self._state[key] += value


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
