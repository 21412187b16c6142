"""Checkpoints: written atomically, loaded with ``weights_only=True``, every failure explained in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import first_line

# A run folder's files (tsn.train writes them, tsn.official imports into them, the analysis reads them)
CHECKPOINT = "checkpoint.pt"  # the last epoch's state, from which a run resumes
METRICS = "metrics.json"  # the finished run's summary: only a run that finished has one


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, not a checkpoint of this suite)."""


def load_weights(model: torch.nn.Module, weights: Any, source: str | Path) -> None:
    """``model.load_state_dict(weights)``; weights that do not fit are a CheckpointError naming ``source`` and
    the first key that is missing, unexpected or of another shape."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"{source}: its 'model' entry is not a state dict")
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in weights:
            problem = f"key {key!r} is missing"
            break
        if not isinstance(weights[key], torch.Tensor) or weights[key].shape != tensor.shape:
            got = tuple(weights[key].shape) if isinstance(weights[key], torch.Tensor) else type(weights[key]).__name__
            problem = f"key {key!r} has shape {got}, the model's is {tuple(tensor.shape)}"
            break
    else:
        extra = sorted(set(weights) - set(expected))
        if not extra:
            model.load_state_dict(weights)
            return
        problem = f"key {extra[0]!r} is not in the model"
    raise CheckpointError(f"checkpoint {source}: its weights do not fit the model its config builds: {problem}")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load with ``weights_only=True`` (tensors and plain containers only); explain any failure in one line."""
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint not found: {file}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - truncation, corruption or a pickle that is not weights-only
        raise CheckpointError(f"checkpoint {file} is unreadable (truncated or corrupt?): {first_line(err)}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{file} is not a checkpoint of this suite (no model/config entries)")
    return state
