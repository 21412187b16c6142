"""The exactly-once bookkeeping on its own: claims, reaping, heartbeats, final failures and retries, no training."""

from __future__ import annotations

import os
import socket
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.storages import InMemoryStorage, RDBStorage
from optuna.trial import TrialState

import sweeps.ledger as ledger_module
from sweeps import records as R
from sweeps.ledger import DUPLICATE_OF, INTERRUPTED, STRAY, WORKER, Ledger, final_failures

POINTS = {"a": {"x": 1}, "b": {"x": 2}}  # config hash -> the point's parameters
AXES = {"x": CategoricalDistribution([1, 2])}
DEAD = f"{socket.gethostname()}:{2**22 + 12345}"  # a pid that does not exist on this host


def ledger(storage, name: str = "s", runnable=POINTS) -> Ledger:
    return Ledger(storage, name, runnable, AXES)


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


def test_two_ledgers_claiming_the_same_point_train_it_once(storage) -> None:
    mine, theirs = ledger(storage), ledger(storage)
    first = mine.claim(POINTS["a"], "a")
    assert first is not None and first.user_attrs[WORKER] == f"{socket.gethostname()}:{os.getpid()}"
    assert theirs.claim(POINTS["a"], "a") is None  # enqueued again and taken: a duplicate of the running trial
    (pruned,) = mine.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned.user_attrs[DUPLICATE_OF] == first.number
    assert mine.status() == theirs.status() == {"a": "running"}
    assert theirs.counts() == {"running": 1, "pending": 1}


def test_a_ledger_whose_waiting_point_another_took_closes_a_stray(storage) -> None:
    mine, theirs = ledger(storage), ledger(storage)
    mine.study.enqueue_trial(POINTS["b"], user_attrs={R.CONFIG_HASH: "b"})
    taken = theirs.claim(None, "b")
    assert taken is not None and taken.user_attrs[R.CONFIG_HASH] == "b"
    assert mine.claim(None, "b") is None  # nothing was waiting any more: ask() made a fresh, untagged trial
    (stray,) = mine.study.get_trials(states=(TrialState.PRUNED,))
    assert stray.user_attrs[STRAY] and R.CONFIG_HASH not in stray.user_attrs


def test_a_point_another_ledger_owns_is_handed_back_waiting(storage) -> None:
    ledger(storage, runnable={"other": {}}).study.enqueue_trial(POINTS["a"], user_attrs={R.CONFIG_HASH: "other"})
    mine = ledger(storage)
    assert mine.claim(None, "a") is None
    (waiting,) = mine.study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == POINTS["a"]  # what the owner's ask() will run
    assert waiting.user_attrs[R.CONFIG_HASH] == "other" and mine.status() == {"other": "waiting"}
    assert mine.study.get_trials(states=(TrialState.PRUNED,))[0].user_attrs[STRAY]


def test_the_ledger_runs_the_point_it_was_handed_instead_of_its_own(storage) -> None:
    mine = ledger(storage)
    mine.study.enqueue_trial(POINTS["b"], user_attrs={R.CONFIG_HASH: "b"})  # enqueued by a worker that died
    trial = mine.claim(POINTS["a"], "a")  # ask() hands out the oldest waiting trial
    assert trial.user_attrs[R.CONFIG_HASH] == "b" and trial.params == POINTS["b"]
    assert mine.status() == {"a": "waiting", "b": "running"}


def test_a_running_trial_whose_pid_is_dead_is_reaped_and_its_point_is_pending(storage) -> None:
    mine = ledger(storage)
    orphan = mine.claim(POINTS["a"], "a")
    alive = mine.claim(POINTS["b"], "b")  # this process: alive
    orphan.set_user_attr(WORKER, DEAD)
    mine.reap()
    assert mine.study.get_trials()[orphan.number].state == TrialState.FAIL
    assert mine.study.get_trials()[alive.number].state == TrialState.RUNNING
    assert mine.status() == {"b": "running"} and mine.counts() == {"pending": 1, "running": 1}
    again = mine.claim(POINTS["a"], "a")  # the reaped trial is no live trial: no duplicate
    assert again is not None and again.number > orphan.number


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_point_enqueued_by_a_worker_that_died_before_its_ask_is_closed_once_another_finishes_it(
    backend, tmp_path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    shared = InMemoryStorage()
    open_one = (lambda: shared) if backend == "memory" else (lambda: RDBStorage(url))
    mine, dying = ledger(open_one()), ledger(open_one())
    done, failed = mine.claim(POINTS["a"], "a"), mine.claim(POINTS["b"], "b")
    mine.complete(done, 0.0, {})
    mine.fail(failed, "ValueError: bad")
    for key in ("a", "b"):  # read both as pending before they settled, enqueued them, and died before its ask
        dying.study.enqueue_trial(POINTS[key], user_attrs={R.CONFIG_HASH: key})
    mine.reap()
    trials = mine.study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    closed = [t for t in trials if t.state == TrialState.PRUNED]
    assert [t.user_attrs[DUPLICATE_OF] for t in closed] == [done.number, failed.number]
    assert mine.status() == dying.status() == {"a": "complete", "b": "failed"}
    mine.requeue_failed()  # a retry is waiting for a point that is no longer settled: kept
    mine.reap()
    assert [t.user_attrs[R.RETRY_OF] for t in mine.study.get_trials(states=(TrialState.WAITING,))] == [failed.number]


def test_a_waiting_point_that_is_still_pending_is_left_for_an_ask(storage) -> None:
    mine = ledger(storage)
    mine.study.enqueue_trial(POINTS["a"], user_attrs={R.CONFIG_HASH: "a"})
    mine.claim(POINTS["b"], "b")  # running: its waiting twin would be a duplicate only once "b" is settled
    mine.study.enqueue_trial(POINTS["b"], user_attrs={R.CONFIG_HASH: "b"})
    mine.reap()
    assert len(mine.study.get_trials(states=(TrialState.WAITING,))) == 2


def test_a_trial_whose_worker_died_before_naming_itself_is_reaped_once_the_grace_has_passed(
    storage, monkeypatch
) -> None:
    mine = ledger(storage)
    mine.study.enqueue_trial(POINTS["a"], user_attrs={R.CONFIG_HASH: "a"})
    taken = mine.study.ask(AXES)  # the worker that took it died here, before claim() wrote its name
    mine.reap()
    assert mine.status() == {"a": "running"}  # a live claim names itself within milliseconds
    monkeypatch.setattr(ledger_module, "GRACE_SECONDS", -1)  # as if the grace (two minutes) had passed
    mine.reap()
    assert mine.study.get_trials()[taken.number].state == TrialState.FAIL and mine.status() == {}
    again = mine.claim(POINTS["a"], "a")
    assert again is not None and again.number > taken.number


def test_a_stale_heartbeat_on_another_host_is_reaped(tmp_path) -> None:
    beating = RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=1, grace_period=1)
    mine, theirs = ledger(beating), ledger(beating)
    trial = theirs.claim(POINTS["a"], "a")
    trial.set_user_attr(WORKER, "another-host:1")  # no pid to look at from here
    with theirs.heartbeat(trial):
        mine.reap()
        assert mine.status() == {"a": "running"}  # beating: alive
    time.sleep(2.5)  # the worker stopped beating (it died) longer than the grace period ago
    mine.reap()
    assert mine.study.get_trials()[trial.number].state == TrialState.FAIL and mine.status() == {}


def test_heartbeat_without_a_heartbeat_storage_does_nothing(storage) -> None:
    mine = ledger(storage)
    trial = mine.claim(POINTS["a"], "a")
    with mine.heartbeat(trial):
        pass
    assert mine.status() == {"a": "running"}


def test_a_failure_with_a_reason_is_final_an_interrupted_trial_is_pending(storage) -> None:
    mine = ledger(storage)
    failed, stopped = mine.claim(POINTS["a"], "a"), mine.claim(POINTS["b"], "b")
    mine.fail(failed, "KeyError: 'semseg_logits'")
    mine.interrupted(stopped)
    trials = mine.study.get_trials()
    assert trials[failed.number].user_attrs[R.FAIL_REASON] == "KeyError: 'semseg_logits'"
    assert trials[stopped.number].user_attrs[INTERRUPTED] and R.FAIL_REASON not in trials[stopped.number].user_attrs
    assert final_failures(trials) == {failed.number}
    assert mine.status() == {"a": "failed"} and mine.counts() == {"failed": 1, "pending": 1}
    assert mine.claim(POINTS["a"], "a") is None  # a final failure is a live trial of its point: a duplicate


def test_complete_stores_the_results_and_the_objective(storage) -> None:
    mine = ledger(storage)
    trial = mine.claim(POINTS["a"], "a")
    mine.complete(trial, 0.25, {R.PRIMARY: {"semseg": 0.5}})
    (done,) = mine.study.get_trials(states=(TrialState.COMPLETE,))
    assert done.value == 0.25 and done.user_attrs[R.PRIMARY] == {"semseg": 0.5}
    assert mine.completed("a").number == trial.number and mine.completed("b") is None
    assert mine.status() == {"a": "complete"}


def test_requeue_failed_enqueues_each_final_failure_once_and_only_its_own(storage) -> None:
    mine = ledger(storage)
    failed = mine.claim(POINTS["a"], "a")
    mine.fail(failed, "ValueError: bad")
    outsider = ledger(storage, runnable={"c": {}})  # another sweep's point in the same study
    lost = outsider.claim({"x": 1}, "c")
    outsider.fail(lost, "ValueError: bad")
    assert mine.requeue_failed() == 1
    assert mine.requeue_failed() == 0  # already waiting again
    (waiting,) = mine.study.get_trials(states=(TrialState.WAITING,))
    assert waiting.user_attrs == {R.CONFIG_HASH: "a", R.RETRY_OF: failed.number}
    assert waiting.system_attrs["fixed_params"] == POINTS["a"]
    assert mine.status()["a"] == "waiting" and final_failures(mine.study.get_trials()) == {lost.number}
    retry = mine.claim(None, "a")
    assert retry.number == waiting.number and retry.params == POINTS["a"]  # no duplicate of the failure it retries
    mine.complete(retry, 0.0, {})
    assert mine.status() == {"a": "complete", "c": "failed"}


def test_a_point_that_failed_twice_is_requeued_once(storage) -> None:
    mine = ledger(storage)
    for _ in range(2):  # e.g. written by an older driver: two final failures of one point
        mine.study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.FAIL,
                params=POINTS["a"],
                distributions=AXES,
                user_attrs={R.CONFIG_HASH: "a", R.FAIL_REASON: "ValueError: bad"},
            )
        )
    assert mine.requeue_failed() == 1 and len(mine.study.get_trials(states=(TrialState.WAITING,))) == 1


def test_a_retry_that_fails_again_is_final_again(storage) -> None:
    mine = ledger(storage)
    mine.fail(mine.claim(POINTS["a"], "a"), "ValueError: bad")
    mine.requeue_failed()
    second = mine.claim(None, "a")
    mine.fail(second, "ValueError: still bad")
    assert final_failures(mine.study.get_trials()) == {second.number} and mine.status() == {"a": "failed"}
    assert mine.requeue_failed() == 1


def test_two_ledgers_on_one_sqlite_file_share_one_study(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    mine, theirs = ledger(RDBStorage(url)), ledger(RDBStorage(url))
    trial = mine.claim(POINTS["a"], "a")
    assert theirs.claim(POINTS["a"], "a") is None and theirs.claim(POINTS["b"], "b") is not None
    mine.complete(trial, 1.0, {})
    assert theirs.status() == {"a": "complete", "b": "running"}
    assert optuna.load_study(study_name="s", storage=url).direction == optuna.study.StudyDirection.MINIMIZE
