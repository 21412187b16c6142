"""Shared fixtures. Tests run on CPU, single-threaded where timing would otherwise vary, W&B offline."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session renders the synthetic data into its own cache, never the user's."""
    monkeypatch.setenv("TSN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tsn-cache"))
