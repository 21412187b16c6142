"""Checkpoints: written atomically, loaded with ``weights_only=True``, every failure explained in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (missing, truncated, not a checkpoint of this suite)."""


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
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {file} is unreadable (truncated or corrupt?): {reason}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{file} is not a checkpoint of this suite (no model/config entries)")
    return state
