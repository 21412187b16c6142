"""Run one claimed trial: its W&B run and records, the Trainer under heartbeat and signal handling, its outcome.

Every failure of the trial's own (user code: a bug, a non-finite loss, out of memory) is recorded on the trial with
its reason and the sweep goes on. An interrupt (SIGINT, SIGTERM) or a fault of the environment
(:func:`tsn.errors.environment_fault`: a full disk, an unwritable runs folder, a lost storage) closes the trial as
interrupted, so that it is retried next time from its checkpoint, and stops the sweep by raising
:class:`Interrupted`.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import optuna

from tsn.config import RunConfig, config_hash
from tsn.errors import environment_fault, one_line
from tsn.runtime import git_commit
from tsn.train import Baseline, Trainer

from . import records as R
from .experiment import Experiment
from .ledger import Ledger
from .tracking import TrackingConfig, WandbRun


class Interrupted(BaseException):
    """SIGINT or SIGTERM during a trial: the trial is recorded as interrupted and resumes next time.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way (W&B logging, data
    loading, user code) can swallow the signal and let the sweep run on.
    """


class EnvironmentFault(Interrupted):
    """A fault of the environment during a trial (a full disk, an unwritable runs folder, a lost storage): not the
    trial's, so the sweep stops (every next trial would hit it too) and the trial is retried next time."""


@dataclass(frozen=True)
class TrialTiming:
    """What ``Sweep(on_trial_complete=...)`` is told after each trial it trained to completion (``make bench``
    times the driver's own work with it: a sweep's wall time less its trials' training)."""

    study: str
    number: int
    config: RunConfig
    fit_seconds: float  # wall time of building the Trainer and its fit, W&B's trainer callbacks included
    tracking_seconds: float  # of which in W&B's trainer callbacks (WandbRun.callback_seconds)


def objective(summary: Mapping[str, Any]) -> float:
    """The study's objective (lower is better): Delta-m when the trial had a baseline, else the mean validation loss
    that the Trainer's summary carries (``mean_val_loss``, tsn.evaluate.mean_loss)."""
    return summary["delta_m"]["value"] if summary.get("delta_m") else summary["mean_val_loss"]


# The records a finished trial's results are: copied as they are when another trial carries the same run.
RESULTS = (R.METRICS, R.PRIMARY, R.PARAMS, R.MACS, R.WALL_TIME, R.HISTORY, R.EVALUATIONS)
DELTA_M_RESULTS = (R.DELTA_M, R.DELTA_M_CONVENTION, R.BASELINE_RUNS, R.BASELINE_METRICS)


def _copied(source: optuna.trial.FrozenTrial, names: Sequence[str]) -> dict[str, Any]:
    return {name: source.user_attrs[name] for name in names if name in source.user_attrs}


def results(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A Trainer's summary as the trial's records (sweeps.records)."""
    stored = {
        R.METRICS: summary["metrics"],
        R.PRIMARY: summary["primary"],
        R.PARAMS: summary["params"],
        R.MACS: summary["macs"],
        R.WALL_TIME: summary["wall_time_s"],
        R.HISTORY: summary["history"],
        R.EVALUATIONS: summary["evaluations"],
    }
    if summary.get("delta_m"):
        stored.update(
            {
                R.DELTA_M: summary["delta_m"]["value"],
                R.DELTA_M_CONVENTION: summary["delta_m"]["convention"],
                R.BASELINE_RUNS: [summary["delta_m"]["baseline"]],
                R.BASELINE_METRICS: summary["delta_m"]["baseline_metrics"],
            }
        )
    return stored


@dataclass
class TrialRunner:
    """Trains the trials of one experiment x dataset x budget, each in ``runs_dir/{dataset}-{budget}/{config hash}``."""

    experiment: Experiment
    dataset: str
    budget: str
    runs_dir: Path
    tracking: TrackingConfig
    log: Callable[[str], None]
    on_trial_complete: Callable[[TrialTiming], None] | None = None
    value_of: Callable[[Mapping[str, Any]], float] = objective  # what the trial tells the study (a search's own)

    def run(
        self, ledger: Ledger, trial: optuna.Trial, cfg: RunConfig, job_type: str, baseline: Baseline | None
    ) -> dict[str, Any] | None:
        """Train ``trial`` (claimed from ``ledger``) with config ``cfg``; its summary, or None when it failed.

        Raises :class:`Interrupted` (or :class:`EnvironmentFault`) after recording the trial as interrupted.
        """
        study = ledger.study
        key = config_hash(cfg)
        run_dir = self.runs_dir / f"{self.dataset}-{self.budget}" / key
        point_params = {k: v for k, v in trial.params.items()}
        tags = [self.dataset, self.budget, cfg.model.architecture, self.experiment.name, *self.experiment.scientific]
        wandb_run = WandbRun(
            self.tracking,
            study=study.study_name,
            config_hash=key,
            job_type=job_type,
            name=f"{study.study_name}-{trial.number}",
            tags=tags,
            config={**cfg.to_dict(), "config_hash": key},
        )
        self._identify(trial, cfg, job_type, str(run_dir), wandb_run.run_id)
        where = f"{study.study_name} trial {trial.number} ({point_params})"
        try:
            run_dir.mkdir(parents=True, exist_ok=True)  # an unwritable runs folder shows before any training
            with ledger.heartbeat(trial), _signals_raise_interrupted():
                started = time.perf_counter()
                summary = Trainer(cfg, run_dir, callbacks=[wandb_run], baseline=baseline).fit(resume=True)
                fit_seconds = time.perf_counter() - started
            wandb_run.log_summary(summary)  # also when fit() returned a finished run without training
            ledger.complete(trial, self.value_of(summary), results(summary))
        except (Interrupted, KeyboardInterrupt):
            _stop(ledger, trial, wandb_run, "interrupted", Interrupted(f"interrupted during {where}"))
        except Exception as err:  # noqa: BLE001 - every failure of user code is recorded and the sweep goes on
            fault = environment_fault(err)
            if fault is None:
                reason = one_line(err)
                ledger.fail(trial, reason)
                wandb_run.finish(exit_code=1, reason=reason)
                self.log(f"  failed: {reason}")
                return None
            # The atomic writes kept the last checkpoint, from which the retry resumes.
            what, remedy = fault
            _stop(
                ledger,
                trial,
                wandb_run,
                one_line(err),
                EnvironmentFault(f"{what} during {where}: {one_line(err)}; {remedy}"),
            )
        wandb_run.finish()
        if self.on_trial_complete is not None:
            self.on_trial_complete(
                TrialTiming(study.study_name, trial.number, cfg, fit_seconds, wandb_run.callback_seconds)
            )
        return summary

    def record(
        self, ledger: Ledger, trial: optuna.Trial, cfg: RunConfig, source: optuna.trial.FrozenTrial, provenance: dict
    ) -> None:
        """Close ``trial``, a single-task point of the experiment, with the results of ``source``: the shared
        baseline run of the same configuration. One configuration is trained once, and Table 1's single-task row
        is the very run the other rows' Δm compares with (trained twice, on two machines, the two would differ)."""
        self._identify(trial, cfg, "trial", source.user_attrs.get(R.RUN_DIR), None)
        results = _copied(source, RESULTS)
        results.update(
            {
                R.DELTA_M: 0.0,  # against itself
                R.DELTA_M_CONVENTION: "astmt",
                R.BASELINE_RUNS: [provenance],
                R.BASELINE_METRICS: source.user_attrs[R.PRIMARY],
                R.RECORDED_FROM: provenance,
            }
        )
        ledger.complete(trial, 0.0, results)

    def record_twin(
        self, ledger: Ledger, trial: optuna.Trial, cfg: RunConfig, study: str, source: optuna.trial.FrozenTrial
    ) -> None:
        """Close ``trial`` with the results of ``source``, the COMPLETE trial of the same configuration in another
        experiment's ``study`` (Table 1's TSN row is the embedding ablation's orthogonal d = 100 point and the
        convergence figure's TSN): trained once, by whichever experiment ran it first, on whichever machine. A
        second run of it elsewhere, from an export, would give other floats for the same row."""
        self._identify(trial, cfg, "trial", source.user_attrs.get(R.RUN_DIR), None)
        origin = {"study": study, "trial": source.number, "config_hash": source.user_attrs[R.CONFIG_HASH]}
        results = _copied(source, (*RESULTS, *DELTA_M_RESULTS))
        results[R.RECORDED_FROM] = source.user_attrs.get(R.RECORDED_FROM, origin)  # the run, not a copy of it
        ledger.complete(trial, source.value, results)

    def _identify(
        self, trial: optuna.Trial, cfg: RunConfig, job_type: str, run_dir: str | None, wandb_run_id: str | None
    ) -> None:
        """The trial's identity and provenance records (sweeps.records), set before anything can fail."""
        attrs = {
            R.EXPERIMENT: self.experiment.name if job_type == "trial" else R.SHARED_BASELINES,
            R.DATASET: self.dataset,
            R.BUDGET: self.budget,
            R.ARCHITECTURE: cfg.model.architecture,
            R.SEED: cfg.train.seed,
            R.CONFIG: cfg.to_dict(),
            R.CONFIG_HASH: config_hash(cfg),
            R.GIT_COMMIT: git_commit(),
            R.WANDB_RUN_ID: wandb_run_id,
            R.RUN_DIR: run_dir,
            R.JOB_TYPE: job_type,
        }
        for name, value in attrs.items():
            trial.set_user_attr(name, value)


def _stop(ledger: Ledger, trial: optuna.Trial, wandb_run: WandbRun, reason: str, stop: Interrupted) -> NoReturn:
    """Close the trial as interrupted (retried next time), finish its W&B run as failed, raise ``stop``."""
    ledger.interrupted(trial)
    wandb_run.finish(exit_code=1, reason=reason)
    raise stop from None


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
