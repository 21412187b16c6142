"""Shared fixtures. Tests run on CPU, single-threaded where timing would otherwise vary, W&B offline."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from hypothesis.configuration import set_hypothesis_home_dir

_HYPOTHESIS_HOME = pytest.StashKey[Path]()
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The cores are shared out among pytest-xdist's workers (`make test` runs two), so that they never oversubscribe
# the machine; TSN_TEST_THREADS overrides it (TSN_TEST_THREADS=1 lets two test runs share a 2-core machine).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = int(os.environ.get("TSN_TEST_THREADS", max(1, min(2, os.cpu_count() or 1) // _WORKERS)))
torch.set_num_threads(THREADS)
# A suite started in the background (`make test &`) inherits SIGINT ignored, and so would every process it starts;
# the Ctrl-C tests need it delivered as KeyboardInterrupt, as in an interactive shell.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def _nothing_written_into_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test session renders the synthetic data into its own cache, never the user's or the checkout's.
    Session-scoped, so that it is in place before any module-scoped fixture trains a run."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TSN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tsn-cache"))
        yield


@pytest.fixture(scope="session", autouse=True)
def _trainers_keep_the_test_threads() -> Iterator[None]:
    """A Trainer given ``train.threads=0`` (one thread per core, the default) takes this worker's share instead.

    Otherwise it takes every core, and keeps them for every later test of the process: two workers then run 2 threads
    each on 2 cores (a trial 5-7x slower on a loaded machine), and a later fork (tests/test_pretrain.py) deadlocks in
    OpenMP, which cannot fork a process whose thread team has more than one thread.
    """
    import tsn.train
    from tsn.runtime import configure_threads

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tsn.train, "configure_threads", lambda threads: configure_threads(threads or THREADS))
        yield


@pytest.fixture
def tsn_cli(capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """``python -m tsn ARGS`` in this process: (exit code, stdout, stderr). A shell runs the entry point in
    tests/test_errors.py and tests/test_reliability.py; here it costs no interpreter start (~5 s each)."""
    from tsn.__main__ import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


# pytest-xdist hands each worker a contiguous half of the collection (`make test`: --dist worksteal), and a worker
# that runs out takes tests from the tail of the other's queue: a long test collected late starts late and runs alone
# at the end (test_make_sweeps, collected mid-suite, was the tail of a 2-worker run). So the slow tests run first, and
# the longest, every make sweep-* target end to end (a quarter of the suite's time), first of all.
LONGEST = "tests/test_make_sweeps.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, not item.nodeid.startswith(LONGEST)))


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis caches what it learns from the source under ``.hypothesis/`` of the current folder, even with its
    example database off; it goes into a folder of its own that is removed again at the end."""
    config.stash[_HYPOTHESIS_HOME] = Path(tempfile.mkdtemp(prefix="tsn-hypothesis-"))
    set_hypothesis_home_dir(config.stash[_HYPOTHESIS_HOME])


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HYPOTHESIS_HOME in config.stash:
        shutil.rmtree(config.stash[_HYPOTHESIS_HOME], ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point given a storage URL with a password moves it to the environment and redacts ``sys.argv``;
    neither may leak into the next test."""
    monkeypatch.delenv("TSN_STORAGE_PASSWORD", raising=False)
    monkeypatch.setattr(sys, "argv", list(sys.argv))


@pytest.fixture
def few_task_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """make_tables' scaling table for T = 1, 2 only (T = 1…9 takes tens of seconds on a laptop)."""
    from analysis import published

    monkeypatch.setattr(published, "SCALING_TASK_COUNTS", (1, 2))
