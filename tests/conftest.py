"""Shared fixtures. Tests run on CPU, single-threaded where timing would otherwise vary, W&B offline."""

from __future__ import annotations

import os
import signal
import sys

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The cores are shared out among pytest-xdist's workers (`make test` runs two), so that they never oversubscribe
# the machine; TSN_TEST_THREADS overrides it (TSN_TEST_THREADS=1 lets two test runs share a 2-core machine).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(int(os.environ.get("TSN_TEST_THREADS", max(1, min(2, os.cpu_count() or 1) // _WORKERS))))
# A suite started in the background (`make test &`) inherits SIGINT ignored, and so would every process it starts;
# the Ctrl-C tests need it delivered as KeyboardInterrupt, as in an interactive shell.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session renders the synthetic data into its own cache, never the user's."""
    monkeypatch.setenv("TSN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tsn-cache"))


@pytest.fixture(autouse=True)
def _isolated_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point given a storage URL with a password moves it to the environment and redacts ``sys.argv``;
    neither may leak into the next test."""
    monkeypatch.delenv("TSN_STORAGE_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
