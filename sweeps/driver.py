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

The protocol's bookkeeping (claims, reaping, heartbeats, retries) is :class:`sweeps.ledger.Ledger`, one per study;
training one claimed trial and recording its outcome is :class:`sweeps.runner.TrialRunner`; :class:`Sweep` is the
loop over the points of a :class:`Plan`, each point's single-task baseline first. A grid's points are its grid points
(:class:`GridPlan`); a search's are the slots of its sampled configurations (:class:`sweeps.search.SearchPlan`).
A point that is its own baseline (a single-task point) carries the baseline's results instead of training again, and
so does a point that another experiment's study in the storage has finished (its twin: one configuration, one run);
once every point is done, the budget's reference seeds' single-task runs are trained (the same claims).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from tsn.config import RunConfig, baseline_config, config_hash
from tsn.errors import redact
from tsn.train import Baseline

from . import records as R
from .experiment import SEED_KEY, Experiment, GridPoint, budget_max_seeds, budget_reference_seeds, parse_experiment
from .grow import grown_distributions
from .ledger import DUPLICATE_OF, INTERRUPTED, STRAY, WORKER, Ledger
from .notes import write_study_note
from .rehash import rehash
from .runner import EnvironmentFault, Interrupted, TrialRunner, TrialTiming, objective, one_line
from .search import SearchPlan
from .storage import open_storage
from .tracking import TrackingConfig

POLL_SECONDS = 5.0


@dataclass
class Progress:
    total: int
    started: float

    def line(self, done: int, trained: int, text: str) -> str:
        elapsed = time.perf_counter() - self.started
        left = self.total - done
        eta = f"eta {time.strftime('%H:%M:%S', time.gmtime(elapsed / trained * left))}" if trained and left else ""
        return f"[{done}/{self.total}] {text} {eta}".rstrip()


class Plan(Protocol):
    """What the loop works through: points named by the trial attribute ``key``, each trained once."""

    key: str  # the trial attribute that names a point (the ledger's key)
    units: Mapping[str, Any]  # every point of the study, by name, in the order they are tried
    distributions: Mapping[str, BaseDistribution]  # the parameters a point is enqueued with

    def describe(self) -> str: ...

    def params(self, key: str, ledger: Ledger) -> dict[str, Any]:
        """The parameters pending point ``key`` is enqueued with."""

    def config(self, trial: optuna.Trial) -> RunConfig:
        """The config a claimed trial trains."""

    def label(self, trial: optuna.Trial) -> str: ...

    def objective(self, summary: Mapping[str, Any]) -> float: ...

    def study_attrs(self) -> dict[str, Any]: ...


class GridPlan:
    """A grid's points, by config hash: each is enqueued with its axes' values."""

    key = R.CONFIG_HASH

    def __init__(self, experiment: Experiment, by_hash: Mapping[str, GridPoint]) -> None:
        self.units = by_hash
        self.distributions = {axis: CategoricalDistribution(v) for axis, v in experiment.axes.items()}

    def describe(self) -> str:
        return f"{len(self.units)} grid points"

    def params(self, key: str, ledger: Ledger) -> dict[str, Any]:
        return dict(self.units[key].params)

    def config(self, trial: optuna.Trial) -> RunConfig:
        return self.units[trial.user_attrs[R.CONFIG_HASH]].config

    def label(self, trial: optuna.Trial) -> str:
        return self.units[trial.user_attrs[R.CONFIG_HASH]].label()

    def objective(self, summary: Mapping[str, Any]) -> float:
        return objective(summary)

    def study_attrs(self) -> dict[str, Any]:
        return {}


class Sweep:
    """One experiment x dataset x budget as one Optuna study, plus the shared single-task baseline study: the loop
    that reaps, picks the next ready point, claims it (:class:`sweeps.ledger.Ledger`) and trains it
    (:class:`sweeps.runner.TrialRunner`), its single-task baseline first."""

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
        self.by_hash = {config_hash(p.config): p for p in self.points}
        self.plan: Plan = (
            SearchPlan(experiment, self.points, budget, self.dataset, self.overrides)  # validates its space's ends
            if experiment.search is not None
            else GridPlan(experiment, self.by_hash)
        )
        self.storage_url = storage
        self.storage = open_storage(storage)
        self.log = lambda line: log(redact(line))
        self.runner = TrialRunner(
            experiment,
            self.dataset,
            budget,
            Path(runs_dir),
            tracking,
            self.log,
            on_trial_complete,
            value_of=self.plan.objective,
        )
        self.study_name = experiment.study_name(self.dataset, budget)
        self._migrate_legacy_baselines(self.dataset, budget)
        rehash(self.storage, self.log)  # records of an older config identity: found under today's hashes
        distributions = grown_distributions(self.storage, self.study_name, self.plan.distributions, self.log)
        self.ledger = Ledger(self.storage, self.study_name, self.plan.units, distributions, self.plan.key)
        self.study = self.ledger.study
        self.study.set_user_attr(R.STUDY_EXPERIMENT_ATTR, dict(experiment.source))
        self.study.set_user_attr("experiment_path", experiment.path)
        self.study.set_user_attr("budget", budget)
        self.study.set_user_attr("dataset", self.dataset)
        self.study.set_user_attr("overrides", self.overrides)
        self.study.set_user_attr(R.GRID, [p.params for p in self.points])  # after the budget's seed cap
        for name, value in self.plan.study_attrs().items():
            self.study.set_user_attr(name, value)
        write_study_note(self.study, experiment, self.dataset, budget)  # what optuna-dashboard shows of the study
        self.baseline_ledger: Ledger | None = None
        self.baseline_study = None
        self.baseline_by_hash: dict[str, RunConfig] = {}  # every single-task run this sweep's points compare with
        self.reference_keys: list[str] = []  # ... and those of the budget's reference seeds (trained last)
        if experiment.baseline == "single_task":
            own = {config_hash(cfg): cfg for cfg in (baseline_config(p.config) for p in self.points)}
            reference = {
                config_hash(cfg): cfg
                for cfg in (
                    replace(base, train=replace(base.train, seed=seed))
                    for base in own.values()
                    for seed in budget_reference_seeds(budget)
                )
            }
            self.reference_keys = [key for key in reference if key not in own]
            self.baseline_by_hash = {**own, **reference}
            self.baseline_ledger = Ledger(
                self.storage,
                R.baseline_study_name(self.dataset, budget),
                self.baseline_by_hash,
                {SEED_KEY: IntDistribution(0, 2**31 - 1)},
            )
            self.baseline_study = self.baseline_ledger.study

    @classmethod
    def from_storage(cls, study_name: str, storage: str, **kwargs: Any) -> Sweep:
        """Rebuild a running sweep from what its study stored (``python -m sweeps worker``)."""
        backend = open_storage(storage, create=False)
        try:
            attrs = optuna.load_study(study_name=study_name, storage=backend).user_attrs
        except KeyError:
            attrs = None
        if attrs is None or R.STUDY_EXPERIMENT_ATTR not in attrs:  # missing, or the shared single-task baselines
            names = sorted(n for n in optuna.get_all_study_names(backend) if not R.is_baseline_study(n))
            raise ValueError(
                f"no experiment study {study_name!r} in {redact(storage)}; valid: {', '.join(names) or 'none yet'}"
            ) from None
        experiment = parse_experiment(attrs[R.STUDY_EXPERIMENT_ATTR], attrs.get("experiment_path", study_name))
        return cls(
            experiment, attrs["budget"], storage, dataset=attrs["dataset"], overrides=attrs["overrides"], **kwargs
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
                raise ValueError(
                    f"study {legacy} in {redact(self.storage_url)} is an old shared baseline study and "
                    f"{current} exists too; compare them, then `optuna delete-study --study-name "
                    f"{legacy} --storage {redact(self.storage_url)}`"
                )
            return
        try:
            optuna.copy_study(
                from_study_name=legacy, from_storage=self.storage, to_storage=self.storage, to_study_name=current
            )
        except optuna.exceptions.DuplicatedStudyError:  # another worker is copying it
            return
        optuna.delete_study(study_name=legacy, storage=self.storage)
        self.log(f"renamed the shared baseline study {legacy} -> {current}")

    # ------------------------------------------------------------------------------------------------ baselines
    def _baseline_for(self, cfg: RunConfig, wait: bool) -> optuna.trial.FrozenTrial | None:
        """The COMPLETE baseline trial of config ``cfg``, training it here if nobody has; None if it failed/is busy."""
        ledger = self.baseline_ledger
        assert ledger is not None
        key, seed = config_hash(cfg), cfg.train.seed
        while True:
            ledger.reap()
            trial = ledger.completed(key)
            if trial is not None:
                return trial
            state = ledger.status().get(key)
            if state == "failed":
                return None
            if state == "running":
                if not wait:
                    return None
                time.sleep(POLL_SECONDS)
                continue
            params = None if state == "waiting" else {SEED_KEY: seed}
            trial = ledger.claim(params, key)
            if trial is not None:
                taken = self.baseline_by_hash[trial.user_attrs[R.CONFIG_HASH]]
                self.runner.run(ledger, trial, taken, job_type="baseline", baseline=None)

    def _baseline(self, cfg: RunConfig, wait: bool) -> tuple[Baseline | None, bool]:
        """(baseline, ready): ready is False when the baseline is still being trained elsewhere."""
        if self.baseline_ledger is None:
            return None, True
        single_task = baseline_config(cfg)
        trial = self._baseline_for(single_task, wait)
        if trial is None:
            status = self.baseline_ledger.status().get(config_hash(single_task))
            return None, status == "failed"
        provenance = self._provenance(trial)
        by_epoch = {epoch: e["primary"] for epoch, e in (trial.user_attrs.get(R.EVALUATIONS) or {}).items()}
        return Baseline(trial.user_attrs[R.PRIMARY], provenance, by_epoch), True

    def _provenance(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """How a record names a baseline trial (records.BASELINE_RUNS)."""
        return {
            "study": self.baseline_ledger.study.study_name,
            "trial": trial.number,
            "config_hash": trial.user_attrs[R.CONFIG_HASH],
        }

    def _own_baseline(self, cfg: RunConfig) -> optuna.trial.FrozenTrial | None:
        """For a point that is its own single-task baseline (Table 1's single-task row): that baseline's COMPLETE
        trial, trained here first if nobody has; None for any other point, or when the baseline failed."""
        if self.baseline_ledger is None or config_hash(baseline_config(cfg)) != config_hash(cfg):
            return None
        return self._baseline_for(cfg, wait=True)

    # ------------------------------------------------------------------------------------------------- the loop
    def run(self, n_trials: int | None = None, timeout: float | None = None) -> dict[str, int]:
        """Work on the plan until every point is done (or running elsewhere), n_trials ran, or timeout passed."""
        progress = Progress(self.total, time.perf_counter())
        twins = self._finished_twins()
        trained = 0
        deadline = time.monotonic() + timeout if timeout else None
        self.log(f"study {self.study_name}: {self.plan.describe()}, storage {self.storage_url}")
        while True:
            self.ledger.reap()
            status = self.ledger.status()
            pending = [k for k in self.plan.units if status.get(k) in (None, "waiting")]
            done = sum(status.get(k) in ("complete", "failed") for k in self.plan.units)
            if not pending:
                self._train_references(deadline)
                break
            if n_trials is not None and trained >= n_trials:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.log("timeout reached; run the same command again to continue")
                break
            ready = self._next_ready(pending)
            if ready is None:  # every pending point waits for a baseline that another worker is training
                time.sleep(POLL_SECONDS)
                continue
            key, baseline = ready
            trial = self.ledger.claim(None if status.get(key) == "waiting" else self.plan.params(key, self.ledger), key)
            if trial is None:
                continue
            cfg = self.plan.config(trial)
            source = self._own_baseline(cfg)
            if source is not None:  # trained once, as the shared baseline: recorded, not trained again
                self.log(progress.line(done + 1, trained, f"{self.plan.label(trial)}: the shared single-task run"))
                self.runner.record(self.ledger, trial, cfg, source, self._provenance(source))
                continue
            twin = twins.get(self.ledger.key_of(trial))
            if twin is not None:  # finished by another experiment: recorded, not trained again
                study, source = twin
                recorded = f"{self.plan.label(trial)}: recorded from {study} trial {source.number}"
                self.log(progress.line(done + 1, trained, recorded))
                self.runner.record_twin(self.ledger, trial, cfg, study, source)
                continue
            if self.ledger.key_of(trial) != key:  # another worker's point, waiting: run it, with its own baseline
                baseline, _ = self._baseline(cfg, wait=True)
            self.log(progress.line(done + 1, trained, f"{self.plan.label(trial)} ..."))
            started = time.perf_counter()
            summary = self.runner.run(self.ledger, trial, cfg, job_type="trial", baseline=baseline)
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

    def _finished_twins(self) -> dict[str, tuple[str, optuna.trial.FrozenTrial]]:
        """Config hash -> (study, trial) for each point of this grid that another experiment's grid study of the
        same dataset and budget has finished, in this storage (an import of another machine's export included).

        Read once per :meth:`run`: a point that another experiment finishes meanwhile is trained here too, as before.
        A search has no twins: its points are sampled, and its objective is its own.
        """
        if self.baseline_ledger is None:
            return {}
        twins: dict[str, tuple[str, optuna.trial.FrozenTrial]] = {}
        for summary in optuna.get_all_study_summaries(self.storage, include_best_trial=False):
            name, attrs = summary.study_name, summary.user_attrs
            if name == self.study_name or R.GRID not in attrs or R.SEARCH in attrs:
                continue
            if (attrs.get(R.DATASET), attrs.get(R.BUDGET)) != (self.dataset, self.budget):
                continue
            study = optuna.load_study(study_name=name, storage=self.storage)
            for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                key = trial.user_attrs.get(R.CONFIG_HASH)
                if key in self.plan.units and key not in twins:
                    twins[key] = (name, trial)
        return twins

    def _train_references(self, deadline: float | None) -> None:
        """Once every point is done: the single-task runs of the budget's reference seeds
        (:func:`sweeps.experiment.budget_reference_seeds`), each trained here unless done, failed or running
        elsewhere (then its worker finishes it)."""
        if not self.reference_keys:
            return
        status = self.baseline_ledger.status()
        todo = [k for k in self.reference_keys if status.get(k) in (None, "waiting")]
        for number, key in enumerate(todo, 1):
            if deadline is not None and time.monotonic() > deadline:
                self.log("timeout reached before the reference seeds' single-task runs; run the same command again")
                return
            cfg = self.baseline_by_hash[key]
            self.log(f"reference {number}/{len(todo)}: single-task, seed {cfg.train.seed} ...")
            self._baseline_for(cfg, wait=False)

    def _next_ready(self, pending: list[str]) -> tuple[str, Baseline | None] | None:
        if self.baseline_ledger is None:  # nothing to wait for (a search has no baselines: sweeps.experiment)
            return pending[0], None
        for key in pending:
            baseline, ready = self._baseline(self.by_hash[key].config, wait=False)
            if ready:
                return key, baseline
        return None

    def requeue_failed(self) -> int:
        """Enqueue again every point of this sweep that failed for good, its single-task baselines included, so
        that the next run or worker trains it; the failed trials stay in the study for the record. How many."""
        return sum(ledger.requeue_failed() for ledger in (self.ledger, self.baseline_ledger) if ledger is not None)

    def counts(self) -> dict[str, int]:
        return self.ledger.counts()

    @property
    def total(self) -> int:
        """How many trials the study must finish (grid points, or a search's slots)."""
        return len(self.plan.units)


def _result_line(summary: Mapping[str, Any]) -> str:
    metrics = " ".join(f"{t}={v:.2f}" for t, v in summary["primary"].items())
    dm = summary.get("delta_m")
    return (f"Δm={dm['value']:+.2f}% " if dm else "") + metrics


__all__ = [
    "Sweep",
    "TrialTiming",
    "Interrupted",
    "EnvironmentFault",
    "baseline_config",
    "GridPoint",
    "one_line",
    "DUPLICATE_OF",
    "INTERRUPTED",
    "STRAY",
    "WORKER",
]
