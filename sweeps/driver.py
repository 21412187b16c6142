"""Run an experiment as an Optuna study: exactly once per grid point, resumable, any number of workers.

How exactly-once works (Optuna's grid sampler alone can hand one point to two workers):

1. Every grid point is identified by the hash of its resolved config.
2. A worker enqueues a pending point (tagged with its hash) and ``ask``s; the storage hands each waiting trial
   to one worker only, so a worker may receive another worker's point, which it runs instead. When another
   worker took the only waiting trial, ``ask`` creates a fresh, untagged trial: it is closed as PRUNED
   (``stray``) without training. A tagged point this sweep cannot run (another experiment's single-task
   baseline in the shared baseline study) is enqueued again for its owner and closed the same way.
3. If another live trial of the same hash has a lower number, this one is a duplicate: it is closed as PRUNED
   (``duplicate_of``) and never trains.
4. A point is pending while it has no COMPLETE trial, no final failure (a FAIL trial with a recorded reason:
   kept, not retried, unless ``python -m sweeps retry --failed`` enqueued the point again since), and no RUNNING
   trial. A RUNNING trial whose worker died is failed (without a reason) and so becomes pending again: a dead
   process on this host is detected at once, one on another host by its stale heartbeat. So is a trial stopped by
   a fault of the environment (:func:`tsn.errors.environment_fault`: a full disk, an unwritable runs folder, a lost
   storage), which also stops the sweep. A retry resumes the checkpoint in the run folder (named by the config
   hash) and the W&B run (its id derives from the hash).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, NoReturn, Sequence

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from tsn.config import RunConfig, config_hash
from tsn.errors import environment_fault, one_line, redact
from tsn.models import ModelConfig
from tsn.runtime import git_commit
from tsn.train import Baseline, Trainer

from . import records as R
from .experiment import SEED_KEY, Experiment, GridPoint, budget_max_seeds, parse_experiment
from .notes import write_study_note
from .storage import HEARTBEAT_SECONDS, open_storage
from .tracking import TrackingConfig, WandbRun

optuna.logging.set_verbosity(optuna.logging.WARNING)
# We drive heartbeats ourselves (see _heartbeat) and rely on fail_stale_trials on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")

WORKER = "worker"
DUPLICATE_OF = "duplicate_of"
STRAY = "stray"
INTERRUPTED = "interrupted"
POLL_SECONDS = 5.0


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a trial: the trial is recorded as interrupted and resumes next time.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way (W&B logging, data
    loading, user code) can swallow the signal and let the sweep run on.
    """


class EnvironmentFault(Interrupted):
    """A fault of the environment during a trial (a full disk, an unwritable runs folder, a lost storage): not the
    trial's, so the sweep stops (every next trial would hit it too) and the trial is retried next time."""


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


def final_failures(trials: Iterable[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of the trials that failed for good: FAIL with a recorded reason, and no later trial of their point
    enqueued by ``retry --failed`` (a trial stopped by an interrupt or the environment has no reason)."""
    trials = list(trials)
    retried: dict[str, int] = {}  # config hash -> the number of its latest retry
    for trial in trials:
        if R.RETRY_OF in trial.user_attrs:
            key = trial.user_attrs[R.CONFIG_HASH]
            retried[key] = max(retried.get(key, -1), trial.number)
    return {t.number for t in trials if t.state == TrialState.FAIL and R.FAIL_REASON in t.user_attrs
            and t.number >= retried.get(t.user_attrs.get(R.CONFIG_HASH), -1)}


def baseline_config(cfg: RunConfig) -> RunConfig:
    """The single-task run that ``cfg``'s Delta-m is measured against: same data, encoder, widths, seed."""
    model = ModelConfig(
        architecture="single_task",
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained,
        decoder_width=cfg.model.decoder_width,
    )
    return replace(cfg, model=model, train=replace(cfg.train, schedule="epoch"))


@dataclass(frozen=True)
class TrialTiming:
    """What ``Sweep(on_trial_complete=...)`` is told after each trial it trained to completion (``make bench``
    times the driver's own work with it: a sweep's wall time less its trials' training)."""

    study: str
    number: int
    config: RunConfig
    fit_seconds: float  # wall time of building the Trainer and its fit, W&B's trainer callbacks included
    tracking_seconds: float  # of which in W&B's trainer callbacks (WandbRun.callback_seconds)


@dataclass
class Progress:
    total: int
    started: float

    def line(self, done: int, trained: int, text: str) -> str:
        elapsed = time.perf_counter() - self.started
        left = self.total - done
        eta = f"eta {time.strftime('%H:%M:%S', time.gmtime(elapsed / trained * left))}" if trained and left else ""
        return f"[{done}/{self.total}] {text} {eta}".rstrip()


class Sweep:
    """One experiment x dataset x budget as one Optuna study, plus the shared single-task baseline study."""

    def __init__(
        self,
        experiment: Experiment,
        budget: str,
        storage: str,
        *,
        dataset: str | None = None,
        overrides: Sequence[str] = (),
        runs_dir: str | Path = "runs",
        tracking: TrackingConfig = TrackingConfig(),
        log=print,
        on_trial_complete: Callable[[TrialTiming], None] | None = None,
    ) -> None:
        self.experiment = experiment
        self.budget = budget
        self.overrides = list(overrides)
        self.points = experiment.grid(budget, dataset, overrides, budget_max_seeds(budget))  # validates everything
        self.dataset = self.points[0].config.data.dataset
        self.storage_url = storage
        self.storage = open_storage(storage)
        self.runs_dir = Path(runs_dir)
        self.tracking = tracking
        self.log = lambda line: log(redact(line))
        self.on_trial_complete = on_trial_complete
        self.study_name = experiment.study_name(self.dataset, budget)
        self._migrate_legacy_baselines(self.dataset, budget)
        self.study = self._open_study(self.study_name)
        self.study.set_user_attr(R.STUDY_EXPERIMENT_ATTR, dict(experiment.source))
        self.study.set_user_attr("experiment_path", experiment.path)
        self.study.set_user_attr("budget", budget)
        self.study.set_user_attr("dataset", self.dataset)
        self.study.set_user_attr("overrides", self.overrides)
        self.study.set_user_attr(R.GRID, [p.params for p in self.points])  # after the budget's seed cap
        write_study_note(self.study, experiment, self.dataset, budget)  # what optuna-dashboard shows of the study
        self.by_hash = {config_hash(p.config): p for p in self.points}
        self.baseline_study = None
        self.baseline_by_hash: dict[str, RunConfig] = {}  # every single-task run this sweep's points compare with
        if experiment.baseline == "single_task":
            self.baseline_study = self._open_study(R.baseline_study_name(self.dataset, budget))
            baselines = [baseline_config(p.config) for p in self.points]
            self.baseline_by_hash = {config_hash(cfg): cfg for cfg in baselines}

    @classmethod
    def from_storage(cls, study_name: str, storage: str, **kwargs: Any) -> "Sweep":
        """Rebuild a running sweep from what its study stored (``python -m sweeps worker``)."""
        backend = open_storage(storage, create=False)
        try:
            attrs = optuna.load_study(study_name=study_name, storage=backend).user_attrs
        except KeyError:
            attrs = None
        if attrs is None or R.STUDY_EXPERIMENT_ATTR not in attrs:  # missing, or the shared single-task baselines
            names = sorted(n for n in optuna.get_all_study_names(backend) if not R.is_baseline_study(n))
            raise ValueError(f"no experiment study {study_name!r} in {redact(storage)}; valid: "
                             f"{', '.join(names) or 'none yet'}") from None
        experiment = parse_experiment(attrs[R.STUDY_EXPERIMENT_ATTR], attrs.get("experiment_path", study_name))
        return cls(experiment, attrs["budget"], storage, dataset=attrs["dataset"], overrides=attrs["overrides"], **kwargs)

    def _open_study(self, name: str) -> optuna.Study:
        # The driver enumerates the grid itself and enqueues every point with fixed parameters, so the sampler
        # never chooses a value (Optuna's GridSampler cannot guarantee exactly-once under parallel workers).
        return optuna.create_study(
            study_name=name, storage=self.storage, sampler=optuna.samplers.RandomSampler(seed=0),
            direction="minimize", load_if_exists=True,
        )

    def _migrate_legacy_baselines(self, dataset: str, budget: str) -> None:
        """Rename a shared baseline study stored as ``baselines-{dataset}-{budget}`` (before experiment names were
        validated) to :func:`records.baseline_study_name`, so that Table 1's experiment can take its name.

        Optuna cannot rename a study: it is copied (trials, attributes, numbers), then the old one is deleted, only
        by the worker whose copy succeeded. Should both names exist (another worker is copying it now, or a copy
        was interrupted), nothing is deleted, and the ``baselines`` experiment alone stops with the command to run.
        """
        legacy, current = R.legacy_baseline_study_name(dataset, budget), R.baseline_study_name(dataset, budget)
        names = set(optuna.get_all_study_names(self.storage))
        if legacy not in names:
            return
        attrs = optuna.load_study(study_name=legacy, storage=self.storage).user_attrs
        if not R.is_legacy_baseline_study(legacy, attrs):
            return
        if current in names:
            if self.study_name == legacy:
                raise ValueError(f"study {legacy} in {redact(self.storage_url)} is an old shared baseline study and "
                                 f"{current} exists too; compare them, then `optuna delete-study --study-name "
                                 f"{legacy} --storage {redact(self.storage_url)}`")
            return
        try:
            optuna.copy_study(from_study_name=legacy, from_storage=self.storage, to_storage=self.storage,
                              to_study_name=current)
        except optuna.exceptions.DuplicatedStudyError:  # another worker is copying it
            return
        optuna.delete_study(study_name=legacy, storage=self.storage)
        self.log(f"renamed the shared baseline study {legacy} -> {current}")

    # ------------------------------------------------------------------------------------------- bookkeeping
    def _reap_dead_trials(self, study: optuna.Study) -> None:
        """Fail RUNNING trials whose worker is gone: a dead pid on this host at once, elsewhere by heartbeat."""
        optuna.storages.fail_stale_trials(study)
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = str(trial.user_attrs.get(WORKER, ""))
            owner_host, _, pid = owner.rpartition(":")
            if owner_host == host and pid.isdigit() and not _pid_alive(int(pid)):
                try:
                    study.tell(trial.number, state=TrialState.FAIL)
                except (ValueError, RuntimeError):
                    pass  # finished or failed by someone else meanwhile

    @staticmethod
    def _status(study: optuna.Study) -> dict[str, str]:
        """config hash -> "complete" | "failed" | "running" | "waiting" (absent: pending)."""
        rank = {"complete": 4, "failed": 3, "running": 2, "waiting": 1}
        status: dict[str, str] = {}
        trials = study.get_trials(deepcopy=False)
        failed = final_failures(trials)
        for trial in trials:
            key = trial.user_attrs.get(R.CONFIG_HASH)
            if key is None or DUPLICATE_OF in trial.user_attrs:
                continue
            state = {
                TrialState.COMPLETE: "complete",
                TrialState.RUNNING: "running",
                TrialState.WAITING: "waiting",
                TrialState.FAIL: "failed" if trial.number in failed else None,
            }.get(trial.state)
            if state and rank[state] > rank.get(status.get(key, ""), 0):
                status[key] = state
        return status

    def _distributions(self, study: optuna.Study) -> dict[str, BaseDistribution]:
        if study is self.baseline_study:
            return {SEED_KEY: IntDistribution(0, 2**31 - 1)}
        return {k: CategoricalDistribution(v) for k, v in self.experiment.axes.items()}

    def _claim(
        self, study: optuna.Study, params: Mapping[str, Any] | None, key: str, runnable: Mapping[str, Any]
    ) -> optuna.Trial | None:
        """Enqueue ``params`` (None: the point already waits) and take the next waiting trial.

        The trial taken may be another point of ``runnable`` (config hash -> config), which the caller runs. None
        when there is nothing to run: a stray (another worker took the waiting trial), a point this sweep
        cannot run, or a duplicate.
        """
        if params is not None:
            study.enqueue_trial(dict(params), user_attrs={R.CONFIG_HASH: key})
        trial = study.ask(self._distributions(study))
        mine = trial.user_attrs.get(R.CONFIG_HASH)
        if mine not in runnable:
            if mine is not None:  # hand it back to the sweep it belongs to
                study.enqueue_trial(trial.params, user_attrs={R.CONFIG_HASH: mine})
            trial.set_user_attr(STRAY, True)
            study.tell(trial, state=TrialState.PRUNED)
            return None
        trial.set_user_attr(WORKER, worker_id())
        others = study.get_trials(deepcopy=False)
        failed = final_failures(others)
        for other in others:
            if other.number >= trial.number or other.user_attrs.get(R.CONFIG_HASH) != mine:
                continue
            live = other.state in (TrialState.COMPLETE, TrialState.RUNNING) or other.number in failed
            if DUPLICATE_OF in other.user_attrs or not live:
                continue
            trial.set_user_attr(DUPLICATE_OF, other.number)
            study.tell(trial, state=TrialState.PRUNED)
            return None
        return trial

    # ---------------------------------------------------------------------------------------------- running
    def _baseline_for(self, cfg: RunConfig, wait: bool) -> optuna.trial.FrozenTrial | None:
        """The COMPLETE baseline trial of config ``cfg``, training it here if nobody has; None if it failed/is busy."""
        assert self.baseline_study is not None
        key, seed = config_hash(cfg), cfg.train.seed
        while True:
            self._reap_dead_trials(self.baseline_study)
            for trial in self.baseline_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if trial.user_attrs.get(R.CONFIG_HASH) == key:
                    return trial
            state = self._status(self.baseline_study).get(key)
            if state == "failed":
                return None
            if state == "running":
                if not wait:
                    return None
                time.sleep(POLL_SECONDS)
                continue
            params = None if state == "waiting" else {SEED_KEY: seed}
            trial = self._claim(self.baseline_study, params, key, self.baseline_by_hash)
            if trial is not None:
                taken = self.baseline_by_hash[trial.user_attrs[R.CONFIG_HASH]]
                self._execute(self.baseline_study, trial, taken, job_type="baseline", baseline=None)

    def _baseline(self, cfg: RunConfig, wait: bool) -> tuple[Baseline | None, bool]:
        """(baseline, ready): ready is False when the baseline is still being trained elsewhere."""
        if self.baseline_study is None:
            return None, True
        single_task = baseline_config(cfg)
        trial = self._baseline_for(single_task, wait)
        if trial is None:
            status = self._status(self.baseline_study).get(config_hash(single_task))
            return None, status == "failed"
        provenance = {"study": self.baseline_study.study_name, "trial": trial.number,
                      "config_hash": trial.user_attrs[R.CONFIG_HASH]}
        by_epoch = {epoch: e["primary"] for epoch, e in (trial.user_attrs.get(R.EVALUATIONS) or {}).items()}
        return Baseline(trial.user_attrs[R.PRIMARY], provenance, by_epoch), True

    def _execute(
        self, study: optuna.Study, trial: optuna.Trial, cfg: RunConfig, job_type: str, baseline: Baseline | None
    ) -> dict[str, Any] | None:
        key = config_hash(cfg)
        run_dir = self.runs_dir / f"{self.dataset}-{self.budget}" / key
        point_params = {k: v for k, v in trial.params.items()}
        tags = [self.dataset, self.budget, cfg.model.architecture, self.experiment.name, *self.experiment.scientific]
        wandb_run = WandbRun(
            self.tracking, study=study.study_name, config_hash=key, job_type=job_type,
            name=f"{study.study_name}-{trial.number}", tags=tags, config={**cfg.to_dict(), "config_hash": key},
        )
        attrs = {
            R.EXPERIMENT: self.experiment.name if job_type == "trial" else R.SHARED_BASELINES,
            R.DATASET: self.dataset, R.BUDGET: self.budget, R.ARCHITECTURE: cfg.model.architecture,
            R.SEED: cfg.train.seed, R.CONFIG: cfg.to_dict(), R.CONFIG_HASH: key, R.GIT_COMMIT: git_commit(),
            R.WANDB_RUN_ID: wandb_run.run_id, R.RUN_DIR: str(run_dir), R.JOB_TYPE: job_type,
        }
        for name, value in attrs.items():
            trial.set_user_attr(name, value)
        where = f"{study.study_name} trial {trial.number} ({point_params})"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)  # an unwritable runs folder shows before any training
            with _heartbeat(self.storage, trial), _signals_raise_interrupted():
                started = time.perf_counter()
                summary = Trainer(cfg, run_dir, callbacks=[wandb_run], baseline=baseline).fit(resume=True)
                fit_seconds = time.perf_counter() - started
            wandb_run.log_summary(summary)  # also when fit() returned a finished run without training
            self._record(study, trial, summary)
        except (Interrupted, KeyboardInterrupt):
            self._stop(study, trial, wandb_run, "interrupted", Interrupted(f"interrupted during {where}"))
        except Exception as err:  # noqa: BLE001 - every failure of user code is recorded and the sweep goes on
            fault = environment_fault(err)
            if fault is None:
                self._fail(study, trial, wandb_run, err)
                return None
            # The atomic writes kept the last checkpoint, from which the retry resumes.
            what, remedy = fault
            self._stop(study, trial, wandb_run, one_line(err),
                       EnvironmentFault(f"{what} during {where}: {one_line(err)}; {remedy}"))
        wandb_run.finish()
        if self.on_trial_complete is not None:
            self.on_trial_complete(TrialTiming(study.study_name, trial.number, cfg, fit_seconds,
                                               wandb_run.callback_seconds))
        return summary

    @staticmethod
    def _record(study: optuna.Study, trial: optuna.Trial, summary: Mapping[str, Any]) -> None:
        results = {
            R.METRICS: summary["metrics"], R.PRIMARY: summary["primary"], R.PARAMS: summary["params"],
            R.MACS: summary["macs"], R.WALL_TIME: summary["wall_time_s"], R.HISTORY: summary["history"],
            R.EVALUATIONS: summary["evaluations"],
        }
        if summary.get("delta_m"):
            results.update({
                R.DELTA_M: summary["delta_m"]["value"], R.DELTA_M_CONVENTION: summary["delta_m"]["convention"],
                R.BASELINE_RUNS: [summary["delta_m"]["baseline"]], R.BASELINE_METRICS: summary["delta_m"]["baseline_metrics"],
            })
        for name, value in results.items():
            trial.set_user_attr(name, value)
        value = summary["delta_m"]["value"] if summary.get("delta_m") else sum(summary["val_loss"].values()) / len(summary["val_loss"])
        study.tell(trial, value)

    @staticmethod
    def _stop(
        study: optuna.Study, trial: optuna.Trial, wandb_run: WandbRun, reason: str, stop: Interrupted
    ) -> NoReturn:
        """Close the trial as interrupted, without a fail reason, so that the next run retries it; raise ``stop``."""
        try:
            trial.set_user_attr(INTERRUPTED, True)
            study.tell(trial, state=TrialState.FAIL)
        except Exception:  # noqa: BLE001 - the storage may be the fault: then the trial is reaped as dead instead
            pass
        wandb_run.finish(exit_code=1, reason=reason)
        raise stop from None

    def _fail(self, study: optuna.Study, trial: optuna.Trial, wandb_run: WandbRun, err: BaseException) -> None:
        reason = one_line(err)
        trial.set_user_attr(R.FAIL_REASON, reason)
        study.tell(trial, state=TrialState.FAIL)
        wandb_run.finish(exit_code=1, reason=reason)
        self.log(f"  failed: {reason}")

    def run(self, n_trials: int | None = None, timeout: float | None = None) -> dict[str, int]:
        """Work on the grid until every point is done (or running elsewhere), n_trials ran, or timeout passed."""
        progress = Progress(len(self.points), time.perf_counter())
        trained = 0
        deadline = time.monotonic() + timeout if timeout else None
        self.log(f"study {self.study_name}: {len(self.points)} grid points, storage {self.storage_url}")
        while True:
            self._reap_dead_trials(self.study)
            status = self._status(self.study)
            pending = [k for k in self.by_hash if status.get(k) in (None, "waiting")]
            done = sum(status.get(k) in ("complete", "failed") for k in self.by_hash)
            if not pending or (n_trials is not None and trained >= n_trials):
                break
            if deadline is not None and time.monotonic() > deadline:
                self.log("timeout reached; run the same command again to continue")
                break
            ready = self._next_ready(pending)
            if ready is None:  # every pending point waits for a baseline that another worker is training
                time.sleep(POLL_SECONDS)
                continue
            key, baseline = ready
            point = self.by_hash[key]
            trial = self._claim(self.study, None if status.get(key) == "waiting" else point.params, key, self.by_hash)
            if trial is None:
                continue
            point = self.by_hash[trial.user_attrs[R.CONFIG_HASH]]
            if point is not self.by_hash[key]:
                baseline, _ = self._baseline(point.config, wait=True)
            self.log(progress.line(done + 1, trained, f"{point.label()} ..."))
            started = time.perf_counter()
            summary = self._execute(self.study, trial, point.config, job_type="trial", baseline=baseline)
            trained += 1
            if summary is not None:
                self.log(f"  {_result_line(summary)} ({time.perf_counter() - started:.0f}s)")
        counts = self.counts()
        running = counts.get("running", 0)
        self.log(
            f"study {self.study_name}: {counts.get('complete', 0)} complete, {counts.get('failed', 0)} failed"
            + (f", {running} running on other workers" if running else "")
        )
        return counts

    def _next_ready(self, pending: list[str]) -> tuple[str, Baseline | None] | None:
        for key in pending:
            baseline, ready = self._baseline(self.by_hash[key].config, wait=False)
            if ready:
                return key, baseline
        return None

    def requeue_failed(self) -> int:
        """Enqueue again every point of this sweep that failed for good, its single-task baselines included, so
        that the next run or worker trains it; the failed trials stay in the study for the record. How many."""
        requeued = 0
        for study, runnable in ((self.study, self.by_hash), (self.baseline_study, self.baseline_by_hash)):
            if study is None:
                continue
            trials = study.get_trials(deepcopy=False)
            failed = final_failures(trials)
            status = self._status(study)
            for trial in trials:
                key = trial.user_attrs.get(R.CONFIG_HASH)
                if trial.number in failed and key in runnable and status.get(key) == "failed":
                    study.enqueue_trial(trial.params, user_attrs={R.CONFIG_HASH: key, R.RETRY_OF: trial.number})
                    status[key] = "waiting"  # once per point
                    requeued += 1
        return requeued

    def counts(self) -> dict[str, int]:
        status = self._status(self.study)
        counts: dict[str, int] = {}
        for key in self.by_hash:
            state = status.get(key, "pending")
            counts[state] = counts.get(state, 0) + 1
        return counts


def _result_line(summary: Mapping[str, Any]) -> str:
    metrics = " ".join(f"{t}={v:.2f}" for t, v in summary["primary"].items())
    dm = summary.get("delta_m")
    return (f"Δm={dm['value']:+.2f}% " if dm else "") + metrics


@contextmanager
def _heartbeat(storage: optuna.storages.BaseStorage, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat in the background (Optuna only does this inside ``optimize``)."""
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


@contextmanager
def _signals_raise_interrupted() -> Iterator[None]:
    """Turn SIGTERM (and SIGINT) into :class:`Interrupted` inside a trial, so it is recorded and resumable."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


__all__ = ["Sweep", "TrialTiming", "Interrupted", "EnvironmentFault", "baseline_config", "GridPoint"]
