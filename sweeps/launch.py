"""``python -m sweeps launch``: N workers on one study through submitit, on this machine or on a Slurm cluster.

The launcher creates (or validates) the study as ``sweeps run`` does, submits N jobs that each run
``python -m sweeps worker`` in-process (:class:`Worker`), waits for them and prints one summary line. The driver's
exactly-once claims make any number of workers safe; what this module adds is the placement of each worker:

- **Threads.** Workers sharing one machine split its cores: each runs on ``cores // workers`` of them (at least
  one), pinned by CPU affinity, which the trainer's ``train.threads=0`` ("one thread per core") reads; an explicit
  ``--set train.threads=K`` still wins. On Slurm each job has its own allocation (``cpus_per_task``).
- **GPUs.** ``--gpus 0,1`` gives worker i the GPU ``gpus[i]`` (``CUDA_VISIBLE_DEVICES``); on Slurm,
  ``gpus_per_node`` of the config file asks the scheduler, which sets ``CUDA_VISIBLE_DEVICES`` itself.
- **Credentials.** Nothing a job receives is secret: its arguments are pickled into the log folder. The entry
  point has already moved a password out of the storage URL into the environment (:func:`sweeps.storage.hide_password`),
  which the jobs inherit at submission, local or Slurm alike.
- **Time limits.** A job reaching Slurm's time limit (or preempted) gets submitit's signal: the worker stops as on
  Ctrl-C (its trial is recorded as interrupted and resumes from its checkpoint), then submitit requeues the job.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import submitit

from tsn.config import ConfigError, load_yaml
from tsn.domains import Domain, cli_number
from tsn.errors import redact

from .driver import Interrupted, Sweep, one_line
from .experiment import load_experiment
from .tracking import TrackingConfig

EXECUTORS = ("local", "slurm")
LOCAL_TIME_LIMIT_MIN = 365 * 24 * 60  # submitit's local executor stops a job after 2 minutes unless told otherwise
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # for the processes a worker starts (data, evaluation)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``launch`` beyond those it shares with ``run``."""
    parser.add_argument("--workers", type=cli_number(int, 1, 1024), required=True, help="how many workers to start")
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="local",
        help="local: processes on this machine; slurm: a Slurm job array (needs --slurm-config)",
    )
    parser.add_argument(
        "--gpus",
        default=None,
        metavar="0,1,...",
        help="local executor: one GPU per worker (CUDA_VISIBLE_DEVICES), worker i gets the i-th",
    )
    parser.add_argument(
        "--slurm-config",
        default=None,
        metavar="FILE.yaml",
        help="Slurm settings (see experiments/cluster/slurm.example.yaml)",
    )


# ----------------------------------------------------------------------------------------------- Slurm settings
# What a key's value must be: (how it is named in an error, the check).
KINDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "number": ("a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "text": ("a non-empty string", lambda v: isinstance(v, str) and v.strip() != ""),
    "lines": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(line, str) for line in v)),
}


def _key(submitit_name: str, kind: str, default: Any = None, bounds: Domain | None = None, what: str = "") -> Any:
    """A key of the Slurm settings file: the AutoExecutor parameter it sets, its kind, domain and meaning."""
    return field(default=default, metadata={"submitit": submitit_name, "kind": kind, "domain": bounds, "what": what})


@dataclass(frozen=True)
class SlurmConfig:
    """The keys of a ``--slurm-config`` file (experiments/cluster/slurm.example.yaml)."""

    time: int = _key(
        "timeout_min", "int", MISSING, Domain(1, 366 * 24 * 60), "the time limit of each worker in minutes"
    )
    partition: str | None = _key("slurm_partition", "text")
    gpus_per_node: int = _key("gpus_per_node", "int", 0, Domain(0, 64))
    cpus_per_task: int | None = _key("cpus_per_task", "int", None, Domain(1, 1024))
    mem_gb: float | None = _key("mem_gb", "number", None, Domain(0, 65536, open_low=True))
    array_parallelism: int | None = _key("slurm_array_parallelism", "int", None, Domain(1, 10**6))
    account: str | None = _key("slurm_account", "text")
    qos: str | None = _key("slurm_qos", "text")
    constraint: str | None = _key("slurm_constraint", "text")
    setup: tuple[str, ...] = _key("slurm_setup", "lines", (), what="shell lines run before each worker")

    def parameters(self) -> dict[str, Any]:
        """The AutoExecutor parameters of the keys that are set."""
        values = {f.metadata["submitit"]: getattr(self, f.name) for f in fields(self)}
        values["slurm_setup"] = list(self.setup)
        return {name: value for name, value in values.items() if value not in (None, [])}


def load_slurm_config(path: str | Path) -> SlurmConfig:
    """Read and check a Slurm settings file; every mistake is one line naming the file and the key."""
    data = load_yaml(path)
    keys = {f.name: f for f in fields(SlurmConfig)}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a Slurm settings file must be a mapping with keys {', '.join(keys)}")
    unknown = sorted(str(k) for k in set(data) - set(keys))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid: {', '.join(keys)}")
    if data.get("time") is None:
        raise ConfigError(f"{path}: time is required: {keys['time'].metadata['what']}, e.g. time: 1440")
    values: dict[str, Any] = {}
    for name, value in data.items():
        meta = keys[name].metadata
        if value is None:  # written but left empty: the default
            continue
        expected, valid = KINDS[meta["kind"]]
        if not valid(value):
            what = f" ({meta['what']})" if meta["what"] else ""
            raise ConfigError(f"{path}: {name} must be {expected}{what}, got {value!r}")
        if meta["domain"] is not None:
            try:
                meta["domain"].check(name, value)
            except ValueError as err:
                raise ConfigError(f"{path}: {err}") from None
        values[name] = tuple(value) if meta["kind"] == "lines" else value
    return SlurmConfig(**values)


# ------------------------------------------------------------------------------------------ worker placement
@dataclass(frozen=True)
class WorkerPlan:
    """Where one worker runs: environment variables to set (None: unset) and the cores it may use (empty: all)."""

    index: int
    env: Mapping[str, str | None]
    cpus: tuple[int, ...] = ()

    def apply(self) -> None:
        for name, value in self.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if self.cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, self.cpus)


def parse_gpus(text: str) -> list[int]:
    """``--gpus 0,1,3`` -> [0, 1, 3]; a one-line error for anything else."""
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() for item in items):
        bad = next(item for item in items if not item.isdigit())
        raise ValueError(
            f"--gpus {text}: {bad!r} is not a GPU index; give indices separated by commas, e.g. --gpus 0,1"
        )
    gpus = [int(item) for item in items]
    if len(set(gpus)) != len(gpus):
        raise ValueError(f"--gpus {text} names a GPU twice; give each GPU once (one worker per GPU)")
    return gpus


def local_plans(
    workers: int, cores: Sequence[int], gpus: Sequence[int] | None, inherited_cuda: str | None
) -> list[WorkerPlan]:
    """N workers sharing this machine: ``len(cores) // workers`` cores each (at least one; with more workers than
    cores, neighbours share), and one GPU each from ``gpus`` (else the launcher's own ``CUDA_VISIBLE_DEVICES``,
    which submitit's local executor would otherwise clear)."""
    if gpus is not None and len(gpus) < workers:
        listed = ",".join(map(str, gpus))
        raise ValueError(
            f"--gpus {listed} gives {len(gpus)} GPU{'s' if len(gpus) != 1 else ''} for {workers} workers; "
            f"give one GPU per worker, or --workers {len(gpus)}"
        )
    ordered = sorted(cores)
    share = max(1, len(ordered) // workers)
    plans = []
    for index in range(workers):
        cpus = tuple(sorted({ordered[(index * share + k) % len(ordered)] for k in range(share)}))
        env: dict[str, str | None] = {name: str(share) for name in THREAD_VARIABLES}
        env["CUDA_VISIBLE_DEVICES"] = str(gpus[index]) if gpus is not None else inherited_cuda
        plans.append(WorkerPlan(index, env, cpus))
    return plans


def slurm_plans(workers: int, config: SlurmConfig) -> list[WorkerPlan]:
    """Each Slurm job has its own cores and GPUs: the scheduler pins them and sets CUDA_VISIBLE_DEVICES."""
    threads = {name: str(config.cpus_per_task) for name in THREAD_VARIABLES} if config.cpus_per_task else {}
    return [WorkerPlan(index, threads) for index in range(workers)]


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


# ------------------------------------------------------------------------------------------------------- jobs
class Worker(submitit.helpers.Checkpointable):
    """What each job runs: ``python -m sweeps worker ARGV`` in-process, placed by its :class:`WorkerPlan`.

    Checkpointable: on Slurm's time limit or a preemption submitit requeues this same call (the worker resumes the
    study). Its signal first stops the worker as Ctrl-C does, so that a trial in progress is recorded as
    interrupted (resumed from its checkpoint later) instead of failed; then submitit's own handler requeues.
    """

    def __call__(self, argv: Sequence[str], plan: WorkerPlan, cwd: str) -> int:
        from .__main__ import main  # the CLI imports this module

        os.chdir(cwd)
        plan.apply()
        usr = submitit.JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(usr)
        caught: list[int] = []

        def stop(signum: int, frame: Any) -> None:
            caught.append(signum)
            raise Interrupted(f"{signal.Signals(signum).name} (time limit or preemption); the job is requeued")

        signal.signal(usr, stop)
        try:
            code = main(list(argv))
        except Interrupted as err:  # between the CLI's own handlers (it was not training)
            print(f"stopped: {err}", file=sys.stderr)
            code = 130
        finally:
            signal.signal(usr, submitit_handler)
        if caught and callable(submitit_handler):
            submitit_handler(caught[0], None)  # checkpoints this call, requeues it and exits
        return code


def worker_argv(args: argparse.Namespace, study: str, storage: str) -> list[str]:
    """``python -m sweeps worker`` options for each job (``storage`` as the entry point left it: without a password)."""
    argv = [
        "worker",
        "--study",
        study,
        "--storage",
        storage,
        "--runs-dir",
        str(args.runs_dir),
        "--no-tables",
        "--wandb-project",
        args.wandb_project,
    ]
    if args.wandb_entity:
        argv += ["--wandb-entity", args.wandb_entity]
    if args.no_wandb:
        argv.append("--no-wandb")
    if args.n_trials is not None:
        argv += ["--n-trials", str(args.n_trials)]
    if args.timeout is not None:
        argv += ["--timeout", str(args.timeout)]
    return argv


def workers_text(count: int) -> str:
    return f"{count} worker" if count == 1 else f"{count} workers"


def make_executor(kind: str, folder: Path, slurm: SlurmConfig | None) -> submitit.Executor:
    if kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=LOCAL_TIME_LIMIT_MIN)
        return executor
    assert slurm is not None
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(name="tsn-worker", **slurm.parameters())
    return executor


def submit(executor: submitit.Executor, plans: Sequence[WorkerPlan], argv: Sequence[str]) -> list[submitit.Job]:
    """One job per plan (a Slurm job array), each running :class:`Worker` with the environment of this process."""
    with executor.batch():
        jobs = [executor.submit(Worker(), list(argv), plan, os.getcwd()) for plan in plans]
    return jobs


def plan(args: argparse.Namespace) -> tuple[SlurmConfig | None, list[WorkerPlan]]:
    """Every launch option checked, before the study is touched; the Slurm settings and each worker's placement."""
    if args.executor == "slurm":
        if args.gpus is not None:
            raise ValueError(
                "--gpus is for --executor local; on Slurm ask for GPUs with gpus_per_node in --slurm-config"
            )
        if args.slurm_config is None:
            raise ValueError(
                "--executor slurm needs --slurm-config FILE.yaml (see experiments/cluster/slurm.example.yaml)"
            )
        slurm = load_slurm_config(args.slurm_config)
        if submitit.SlurmExecutor.affinity() <= 0:
            raise ValueError(
                "--executor slurm: Slurm's srun is not on PATH here; launch from a machine of the "
                "cluster (a login node), or use --executor local"
            )
        return slurm, slurm_plans(args.workers, slurm)
    if args.slurm_config is not None:
        raise ValueError("--slurm-config is for --executor slurm; leave it out or add --executor slurm")
    gpus = parse_gpus(args.gpus) if args.gpus is not None else None
    return None, local_plans(args.workers, available_cores(), gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))


def _wait(jobs: Sequence[submitit.Job], logs: Sequence[Path]) -> None:
    """Wait for every job; say which worker did not end well, and where its log is."""
    for index, (job, log) in enumerate(zip(jobs, logs)):
        try:
            code = job.result()
        except Exception as err:  # noqa: BLE001 - a job that crashed or was cancelled: reported, the others go on
            print(f"worker {index} (job {job.job_id}) failed: {redact(one_line(err))}; log: {log}", file=sys.stderr)
            continue
        if code:
            print(f"worker {index} (job {job.job_id}) exited with {code}; log: {log}", file=sys.stderr)


def launch(args: argparse.Namespace, tables: Callable[[argparse.Namespace, str], None]) -> int:
    """``python -m sweeps launch``; ``tables(args, study)`` writes the tables as ``sweeps run`` does."""
    slurm, plans = plan(args)
    if args.executor == "slurm" and args.storage.startswith("sqlite"):
        print(
            f"warning: {args.storage} is SQLite: every Slurm node must see this file, and SQLite on a network "
            "file system is unreliable; use a postgresql:// storage",
            file=sys.stderr,
        )
    tracking = TrackingConfig(
        enabled=not args.no_wandb, project=args.wandb_project, entity=args.wandb_entity, dir=args.runs_dir
    )
    sweep = Sweep(
        load_experiment(args.experiment),
        args.budget,
        args.storage,
        dataset=args.dataset,
        overrides=args.overrides,
        runs_dir=args.runs_dir,
        tracking=tracking,
    )
    if not sweep.experiment.train:
        print(f"{sweep.experiment.name}: nothing to train; see analysis/make_tables.py")
        return 0
    logs = Path(args.runs_dir) / "launch" / sweep.study_name
    executor = make_executor(args.executor, logs / "%j", slurm)
    jobs = submit(executor, plans, worker_argv(args, sweep.study_name, args.storage))
    print(
        f"study {sweep.study_name}: {workers_text(len(jobs))} submitted ({args.executor}), jobs "
        f"{' '.join(str(job.job_id) for job in jobs)}; logs in {logs}/"
    )
    try:
        _wait(jobs, [job.paths.stdout for job in jobs])
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        print(
            f"stopped: cancelled {workers_text(len(jobs))}; their trials resume when you launch again", file=sys.stderr
        )
        return 130
    finally:
        with contextlib.suppress(OSError):  # each local job's controller makes the folder pattern itself, empty
            (logs / "%j").rmdir()
    tables(args, sweep.study_name)
    counts = sweep.counts()
    complete, failed = counts.get("complete", 0), counts.get("failed", 0)
    pending = sweep.total - complete - failed
    print(
        f"launched {workers_text(len(jobs))} ({args.executor}): {complete} complete, {failed} failed, {pending} pending; "
        f"logs in {logs}/"
    )
    return 0 if complete == sweep.total else 1
