"""The exactly-once bookkeeping of one Optuna study: which grid point is done, who runs what, who died.

A ledger trains nothing and knows nothing of W&B; it reads and writes trial states and the attributes below, so
any number of ledgers (one per worker) can share a study. The protocol (see :mod:`sweeps.driver`):

- Every grid point is identified by the hash of its resolved config (``records.CONFIG_HASH``); the ledger of a
  search study by the slot a sampled configuration fills (``records.SEARCH_SLOT``, :mod:`sweeps.search`).
- :meth:`Ledger.claim` enqueues a pending point and ``ask``s: the storage hands each waiting trial to one worker
  only, so the trial taken may be another worker's point, which the caller runs instead. A fresh, untagged trial
  (another worker took the only waiting one) or a point this ledger cannot run (another experiment's single-task
  baseline in the shared study, enqueued again for its owner) is closed as PRUNED with :data:`STRAY`. A trial
  whose point has a live trial of a lower number is closed as PRUNED with :data:`DUPLICATE_OF`.
- :meth:`Ledger.status`: a point is pending while it has no COMPLETE trial, no final failure (:func:`final_failures`)
  and no RUNNING trial. :meth:`Ledger.reap` fails (without a reason) a RUNNING trial whose worker died, so its point
  is pending again: a dead pid on this host at once, another host's by its stale heartbeat (:meth:`Ledger.heartbeat`),
  and a trial that never named its worker (it died right after its ``ask``) once the heartbeat's grace has passed.
  It also closes, as PRUNED with :data:`DUPLICATE_OF`, a WAITING trial whose point is settled (COMPLETE or failed for
  good): a worker that enqueued a point and died before its ``ask`` leaves one behind once another worker finishes the
  point, and no ``ask`` would ever take it, as nothing of that point is pending any more.
- A trial ends by :meth:`Ledger.complete`, :meth:`Ledger.fail` (a reason: final until :meth:`Ledger.requeue_failed`)
  or :meth:`Ledger.interrupted` (no reason: pending again).
"""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import TrialState

from . import records as R
from .storage import GRACE_SECONDS, HEARTBEAT_SECONDS

optuna.logging.set_verbosity(optuna.logging.WARNING)
# We drive heartbeats ourselves (see Ledger.heartbeat) and rely on fail_stale_trials on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

# Bookkeeping attributes of a trial (trial.user_attrs), beside those of sweeps.records
WORKER = "worker"  # "host:pid" of the worker that claimed the trial
DUPLICATE_OF = "duplicate_of"  # int: the number of the live trial of the same point; this one never trained
STRAY = "stray"  # True: a trial closed unrun (nothing was waiting for it, or its point belongs to another sweep)
INTERRUPTED = "interrupted"  # True: stopped by a signal or a fault of the environment; its point is pending again

RANK = {"complete": 4, "failed": 3, "running": 2, "waiting": 1}  # what status() says of a point (else pending)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def final_failures(trials: Iterable[optuna.trial.FrozenTrial], key: str = R.CONFIG_HASH) -> set[int]:
    """Numbers of the trials that failed for good: FAIL with a recorded reason, and no later trial of their point
    (identified by the trial attribute ``key``) enqueued by ``retry --failed`` (a trial stopped by an interrupt or the
    environment has no reason)."""
    trials = list(trials)
    retried: dict[str, int] = {}  # point -> the number of its latest retry
    for trial in trials:
        if R.RETRY_OF in trial.user_attrs:
            point = trial.user_attrs[key]
            retried[point] = max(retried.get(point, -1), trial.number)
    return {
        t.number
        for t in trials
        if t.state == TrialState.FAIL
        and R.FAIL_REASON in t.user_attrs
        and t.number >= retried.get(t.user_attrs.get(key), -1)
    }


class Ledger:
    """The bookkeeping of study ``name`` in ``storage`` (created if missing) for the points this worker can run.

    A point is identified by the trial attribute ``key`` (the config hash of a grid point; a search's slot).
    ``runnable`` maps the key of every point this worker can run to whatever the caller runs it from (the ledger only
    tests membership); ``distributions`` are the parameters a point is enqueued with.
    """

    def __init__(
        self,
        storage: optuna.storages.BaseStorage,
        name: str,
        runnable: Mapping[str, Any],
        distributions: Mapping[str, BaseDistribution],
        key: str = R.CONFIG_HASH,
    ) -> None:
        self.storage = storage
        self.runnable = runnable
        self.distributions = dict(distributions)
        self.key = key
        # The caller enumerates the grid and every point is enqueued with fixed parameters, so the sampler never
        # chooses a value (Optuna's GridSampler cannot guarantee exactly-once under parallel workers).
        self.study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=optuna.samplers.RandomSampler(seed=0),
            direction="minimize",
            load_if_exists=True,
        )

    # ------------------------------------------------------------------------------------------------ reading
    def key_of(self, trial: optuna.trial.BaseTrial) -> str | None:
        """The point a trial is of (None: a stray)."""
        return trial.user_attrs.get(self.key)

    def status(self) -> dict[str, str]:
        """point -> "complete" | "failed" | "running" | "waiting" (absent: pending), over the whole study."""
        status: dict[str, str] = {}
        trials = self.study.get_trials(deepcopy=False)
        failed = final_failures(trials, self.key)
        for trial in trials:
            key = self.key_of(trial)
            if key is None or DUPLICATE_OF in trial.user_attrs:
                continue
            state = {
                TrialState.COMPLETE: "complete",
                TrialState.RUNNING: "running",
                TrialState.WAITING: "waiting",
                TrialState.FAIL: "failed" if trial.number in failed else None,
            }.get(trial.state)
            if state and RANK[state] > RANK.get(status.get(key, ""), 0):
                status[key] = state
        return status

    def counts(self) -> dict[str, int]:
        """How many runnable points are in each state, "pending" included."""
        status = self.status()
        counts: dict[str, int] = {}
        for key in self.runnable:
            state = status.get(key, "pending")
            counts[state] = counts.get(state, 0) + 1
        return counts

    def completed(self, key: str) -> optuna.trial.FrozenTrial | None:
        """The COMPLETE trial of point ``key``, if any."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if self.key_of(trial) == key:
                return trial
        return None

    # ------------------------------------------------------------------------------------------- claiming
    def claim(self, params: Mapping[str, Any] | None, key: str) -> optuna.Trial | None:
        """Enqueue point ``key`` with ``params`` (None: the point already waits) and take the next waiting trial.

        The trial taken may be another runnable point, which the caller runs (:meth:`key_of` says which). None when
        there is nothing to run: a stray, a point this ledger cannot run, or a duplicate.
        """
        if params is not None:
            self.study.enqueue_trial(dict(params), user_attrs={self.key: key})
        trial = self.study.ask(self.distributions)
        mine = self.key_of(trial)
        if mine not in self.runnable:
            if mine is not None:  # hand it back to the sweep it belongs to
                self.study.enqueue_trial(trial.params, user_attrs={self.key: mine})
            trial.set_user_attr(STRAY, True)
            self.study.tell(trial, state=TrialState.PRUNED)
            return None
        trial.set_user_attr(WORKER, worker_id())
        others = self.study.get_trials(deepcopy=False)
        failed = final_failures(others, self.key)
        for other in others:
            if other.number >= trial.number or self.key_of(other) != mine:
                continue
            live = other.state in (TrialState.COMPLETE, TrialState.RUNNING) or other.number in failed
            if DUPLICATE_OF in other.user_attrs or not live:
                continue
            trial.set_user_attr(DUPLICATE_OF, other.number)
            self.study.tell(trial, state=TrialState.PRUNED)
            return None
        return trial

    def reap(self) -> None:
        """Fail RUNNING trials whose worker is gone (a dead pid on this host at once, elsewhere by heartbeat, a
        trial that names no worker :data:`GRACE_SECONDS` after it was taken) and close the WAITING trials of settled
        points (:meth:`_close_orphans`)."""
        optuna.storages.fail_stale_trials(self.study)
        host = socket.gethostname()
        trials = self.study.get_trials(deepcopy=False)
        now = datetime.now()  # Optuna's datetime_start: the local time of the worker that took the trial
        for trial in trials:
            if trial.state != TrialState.RUNNING:
                continue
            owner = str(trial.user_attrs.get(WORKER, ""))
            owner_host, _, pid = owner.rpartition(":")
            # no owner long after it was taken: its worker died between the ask and naming itself (claim)
            started = trial.datetime_start or now
            unowned = not owner and (now - started).total_seconds() > GRACE_SECONDS
            if unowned or (owner_host == host and pid.isdigit() and not _pid_alive(int(pid))):
                try:
                    self.study.tell(trial.number, state=TrialState.FAIL)
                except (ValueError, RuntimeError):
                    pass  # finished or failed by someone else meanwhile
        self._close_orphans(trials)

    def _close_orphans(self, trials: list[optuna.trial.FrozenTrial]) -> None:
        """Close each WAITING trial whose point has a COMPLETE trial or a final failure as a duplicate of it.

        Taking the trial is the storage's atomic WAITING -> RUNNING step that ``ask`` takes, so a worker whose
        ``ask`` takes it first keeps it (and closes it as a duplicate itself); a settled point stays settled (a
        COMPLETE trial is final, and ``retry --failed`` enqueues a retry only after the failure, which a later
        reading of the trials shows as pending)."""
        failed = final_failures(trials, self.key)
        settled: dict[str, int] = {}
        for trial in trials:
            key = self.key_of(trial)
            if key is not None and (trial.state == TrialState.COMPLETE or trial.number in failed):
                settled.setdefault(key, trial.number)
        storage = self.study._storage  # the study's own (cached) storage, so that its view of the trial follows
        for trial in trials:
            of = settled.get(self.key_of(trial))
            if trial.state != TrialState.WAITING or of is None:
                continue
            try:
                if not storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                    continue  # an ask took it meanwhile
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            storage.set_trial_user_attr(trial._trial_id, DUPLICATE_OF, of)
            self.study.tell(trial.number, state=TrialState.PRUNED)

    @contextmanager
    def heartbeat(self, trial: optuna.Trial) -> Iterator[None]:
        """Record the trial's heartbeat in the background (Optuna only does this inside ``optimize``)."""
        storage = self.storage
        if not hasattr(storage, "record_heartbeat") or storage.get_heartbeat_interval() is None:
            yield
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.is_set():
                try:
                    storage.record_heartbeat(trial._trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried; a dead storage fails the trial later
                    pass
                stop.wait(HEARTBEAT_SECONDS)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------- closing
    def complete(self, trial: optuna.Trial, value: float, results: Mapping[str, Any]) -> None:
        """Store ``results`` (records keys -> values) on the trial and close it with objective ``value``."""
        for name, result in results.items():
            trial.set_user_attr(name, result)
        self.study.tell(trial, value)

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        """Close the trial as failed for good: its point is final until :meth:`requeue_failed`."""
        trial.set_user_attr(R.FAIL_REASON, reason)
        self.study.tell(trial, state=TrialState.FAIL)

    def interrupted(self, trial: optuna.Trial) -> None:
        """Close the trial as interrupted, without a fail reason, so that its point is pending again."""
        try:
            trial.set_user_attr(INTERRUPTED, True)
            self.study.tell(trial, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the storage may be the fault: then the trial is reaped as dead instead
            pass

    def requeue_failed(self) -> int:
        """Enqueue again every runnable point that failed for good (the failed trials stay for the record), so that
        the next claim trains it; how many."""
        requeued = 0
        trials = self.study.get_trials(deepcopy=False)
        failed = final_failures(trials, self.key)
        status = self.status()
        for trial in trials:
            key = self.key_of(trial)
            if trial.number in failed and key in self.runnable and status.get(key) == "failed":
                self.study.enqueue_trial(trial.params, user_attrs={self.key: key, R.RETRY_OF: trial.number})
                status[key] = "waiting"  # once per point
                requeued += 1
        return requeued
