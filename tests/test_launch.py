"""``python -m sweeps launch``: N submitit workers finish a grid exactly once; placement, credentials, bad input."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweeps import ONE_TASK, REPO, _postgres_url, sweep_argv

from sweeps import records as R
from sweeps import runner
from sweeps.__main__ import main as sweeps_main
from sweeps.driver import INTERRUPTED, Sweep
from sweeps.experiment import load_experiment
from sweeps.launch import (
    SlurmConfig,
    Worker,
    WorkerPlan,
    available_cores,
    load_slurm_config,
    local_plans,
    make_executor,
    slurm_plans,
    submit,
    workers_text,
)
from sweeps.storage import PASSWORD_VARIABLE, hide_password, open_storage
from sweeps.tracking import TrackingConfig
from tsn.config import baseline_config, config_hash

# Six grid points and their shared single-task baseline: the four workers wait for one of them to train it.
# One task: the workers' bookkeeping is under test, not learning (a single-task baseline is then one network, not 5).
TINY = ["data.train_samples=8", "data.val_samples=8", "train.batch_size=8", "train.epochs=1", "train.progress=false"]
TINY += [ONE_TASK]
WORKERS = 4


def write_experiment(tmp_path: Path, name: str, baseline: str = "single_task") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nfixed: {{model: {{architecture: tsn}}}}\n"
        "axes: {scientific: {model.embedding_dim: [5, 10, 15, 20, 25, 30]}, nuisance: {train.seed: [1337]}}\n"
        f"baseline: {baseline}\n"
    )
    return path


def launch(tmp_path: Path, experiment: Path, storage: str, *extra: str) -> int:
    return sweeps_main([*sweep_argv(experiment, storage, tmp_path / "runs", TINY, command="launch"), *extra])


def _workers_finish_the_grid_once(tmp_path: Path, storage: str, name: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the jobs import this checkout, wherever pytest started
    experiment = write_experiment(tmp_path, name)
    code = launch(tmp_path, experiment, storage, "--workers", str(WORKERS))
    out, err = capsys.readouterr()
    study_name = f"{name}-synthetic-smoke"
    logs = tmp_path / "runs" / "launch" / study_name
    last = f"launched {WORKERS} workers (local): 6 complete, 0 failed, 0 pending; logs in {logs}/"
    assert out.splitlines()[-1] == last, out
    assert code == 0, err
    # the workers' own logs first: a worker that crashed explains whatever the storage shows next
    outputs = [log.read_text() for log in sorted(logs.glob("*/*_0_log.out"))]
    errors = [log.read_text() for log in sorted(logs.glob("*/*_0_log.err"))]
    assert len(outputs) == len(errors) == WORKERS and all(f"study {study_name}:" in out for out in outputs)
    assert all(p.name.isdigit() for p in logs.iterdir()) and len(list(logs.iterdir())) == WORKERS  # one per job
    assert not any("locked" in text or "Traceback" in text for text in outputs + errors), err + "".join(errors)
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, create=False))
    sweep = load_experiment(experiment)
    points = [p.config for p in sweep.grid("smoke", overrides=TINY)]
    done = [t.user_attrs[R.CONFIG_HASH] for t in study.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(done) == sorted(config_hash(cfg) for cfg in points)  # each point exactly once
    unsettled = study.get_trials(states=(TrialState.FAIL, TrialState.RUNNING, TrialState.WAITING))
    assert not unsettled, [(t.number, t.state.name, t.user_attrs) for t in study.get_trials()]
    shared = optuna.load_study(study_name=R.baseline_study_name("synthetic", "smoke"), storage=open_storage(storage))
    (baseline,) = {config_hash(cfg) for cfg in map(baseline_config, points)}  # one seed: one single-task configuration
    assert [t.user_attrs[R.CONFIG_HASH] for t in shared.get_trials(states=(TrialState.COMPLETE,))].count(baseline) == 1
    # each worker ran on its share of the cores: train.threads=0 became cores // workers threads
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        metrics = json.loads((Path(trial.user_attrs[R.RUN_DIR]) / "metrics.json").read_text())
        assert metrics["config"]["train"]["threads"] == 0
        assert metrics["threads"] == max(1, len(available_cores()) // WORKERS)


@pytest.mark.slow  # 15-25 s: each job imports torch and the suite afresh
def test_four_local_workers_finish_a_grid_and_its_baseline_exactly_once_on_sqlite(tmp_path, capsys, monkeypatch):
    _workers_finish_the_grid_once(tmp_path, f"sqlite:///{tmp_path / 'studies.db'}", "quad", capsys, monkeypatch)


@pytest.mark.slow
@pytest.mark.services
def test_four_local_workers_finish_a_grid_and_its_baseline_exactly_once_on_postgres(tmp_path, capsys, monkeypatch):
    url = _postgres_url()
    name = f"launch{os.getpid()}{int(time.time())}"
    try:
        _workers_finish_the_grid_once(tmp_path, url, name, capsys, monkeypatch)
    finally:
        storage = open_storage(url)
        if f"{name}-synthetic-smoke" in optuna.get_all_study_names(storage):
            optuna.delete_study(study_name=f"{name}-synthetic-smoke", storage=storage)


# ------------------------------------------------------------------------------------------------- placement
def test_the_launcher_counts_its_workers_in_words() -> None:
    assert [workers_text(n) for n in (1, 2, 4)] == ["1 worker", "2 workers", "4 workers"]


def test_workers_on_one_machine_split_its_cores_and_take_one_gpu_each() -> None:
    two = local_plans(2, [0, 1], None, None)
    assert [p.cpus for p in two] == [(0,), (1,)]
    assert [p.env for p in two] == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": None}] * 2
    three = local_plans(3, list(range(8)), [2, 5, 7], "0,1")
    assert [p.cpus for p in three] == [(0, 1), (2, 3), (4, 5)]  # 8 // 3 = 2 cores each
    assert [p.env["OMP_NUM_THREADS"] for p in three] == ["2"] * 3
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in three] == ["2", "5", "7"]
    crowded = local_plans(3, [4, 6], None, "1")  # more workers than cores: one core each, shared in turn
    assert [p.cpus for p in crowded] == [(4,), (6,), (4,)]
    assert {p.env["CUDA_VISIBLE_DEVICES"] for p in crowded} == {"1"}  # the launcher's, which submitit would clear
    with pytest.raises(ValueError, match=r"--gpus 0,1 gives 2 GPUs for 3 workers; give one GPU per worker"):
        local_plans(3, [0, 1], [0, 1], None)


def test_slurm_workers_keep_the_schedulers_placement() -> None:
    (plan,) = slurm_plans(1, SlurmConfig(time=60, cpus_per_task=8, gpus_per_node=1))
    assert plan.cpus == () and plan.env == {"OMP_NUM_THREADS": "8", "MKL_NUM_THREADS": "8"}  # no CUDA_VISIBLE_DEVICES
    assert slurm_plans(2, SlurmConfig(time=60))[1].env == {}


def _apply_and_report(plan: WorkerPlan, results: multiprocessing.Queue) -> None:
    plan.apply()
    results.put((dict(os.environ), sorted(os.sched_getaffinity(0))))


def test_a_plan_applied_in_a_worker_process_sets_its_environment_and_cores(monkeypatch) -> None:
    core = available_cores()[-1]
    monkeypatch.setenv("TSN_GONE", "x")
    plan = WorkerPlan(0, {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "3", "TSN_GONE": None}, (core,))
    fork = multiprocessing.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_apply_and_report, args=(plan, results))
    child.start()
    env, cores = results.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0 and cores == [core]
    assert (env["OMP_NUM_THREADS"], env["CUDA_VISIBLE_DEVICES"], "TSN_GONE" in env) == ("1", "3", False)


# ----------------------------------------------------------------------------------------------- credentials
def _fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``srun`` and an ``sbatch`` that keeps the script and the environment it was given, and answers a job id."""
    bin_dir, record = tmp_path / "bin", tmp_path / "sbatch"
    bin_dir.mkdir()
    record.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\nfor last; do :; done\ncp "$last" {record}/script.sh\n'
        f'env > {record}/env\necho "Submitted batch job 4242"\n'
    )
    for tool in ("srun", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_a_slurm_array_gets_the_configured_resources_and_the_password_only_through_the_environment(
    tmp_path, monkeypatch
) -> None:
    record = _fake_slurm(tmp_path, monkeypatch)
    shipped = load_slurm_config(REPO / "experiments" / "cluster" / "slurm.example.yaml")
    config = replace(shipped, array_parallelism=2, setup=("module load cuda",))
    monkeypatch.setenv(PASSWORD_VARIABLE, "restored after the test")
    storage = hide_password("postgresql://tsn:hunter2@db.example/optuna")  # as every entry point does
    executor = make_executor("slurm", tmp_path / "logs" / "%j", config)
    argv = ["worker", "--study", "duo-synthetic-smoke", "--storage", storage]
    jobs = submit(executor, slurm_plans(3, config), argv)
    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2"]
    script = (record / "script.sh").read_text()
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --time=1440",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --mem=64GB",
        "#SBATCH --array=0-2%2",
        "module load cuda",
    ):
        assert line in script, line
    assert f"{PASSWORD_VARIABLE}=hunter2" in (record / "env").read_text().splitlines()  # what the jobs inherit
    written = [p for p in tmp_path.rglob("*") if p.is_file() and record not in p.parents]
    assert written and not [p for p in written if b"hunter2" in p.read_bytes()]  # not in the pickles nor the script


# ----------------------------------------------------------------------------------------------- time limits
def test_a_worker_at_its_time_limit_records_its_trial_as_interrupted_then_lets_submitit_requeue(
    tmp_path, monkeypatch
) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    sweep = Sweep(
        load_experiment(write_experiment(tmp_path, "limit", baseline="none")),
        "smoke",
        storage,
        overrides=TINY,
        runs_dir=tmp_path / "runs",
        tracking=TrackingConfig(enabled=False),
        log=lambda _: None,
    )

    class SignalledTrainer(runner.Trainer):
        def fit(self, *args, **kwargs):  # Slurm's warning arrives during the first epoch
            os.kill(os.getpid(), signal.SIGUSR2)
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(runner, "Trainer", SignalledTrainer)
    requeued: list[int] = []

    def submitit_handler(signum, frame):  # what submitit installs: checkpoint, requeue, exit
        requeued.append(signum)
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        with pytest.raises(SystemExit):
            Worker()(
                [
                    "worker",
                    "--study",
                    sweep.study_name,
                    "--storage",
                    storage,
                    "--runs-dir",
                    str(tmp_path / "runs"),
                    "--no-wandb",
                    "--no-tables",
                ],
                WorkerPlan(0, {}),
                os.getcwd(),
            )
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert requeued == [signal.SIGUSR2]
    (trial,) = sweep.study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs[INTERRUPTED] and R.FAIL_REASON not in trial.user_attrs
    assert sweep.counts() == {"pending": 6}  # nothing lost: the requeued worker trains every point


# --------------------------------------------------------------------------------------------------- bad input
SLURM_MISTAKES = [
    ("partion: gpu\ntime: 60\n", "slurm.yaml: unknown key 'partion'; valid: time, partition, gpus_per_node"),
    ("partition: gpu\n", "slurm.yaml: time is required: the time limit of each worker in minutes, e.g. time: 1440"),
    ("time: 2h\n", "slurm.yaml: time must be an integer (the time limit of each worker in minutes), got '2h'"),
    ("time: 60\ngpus_per_node: -1\n", "slurm.yaml: gpus_per_node must be in [0, 64], got -1"),
    ("time: 60\nmem_gb: 0\n", "slurm.yaml: mem_gb must be in (0, 65536], got 0"),
    ("time: 60\nsetup: module load cuda\n", "slurm.yaml: setup must be a list of strings (shell lines run before"),
    ("- time: 60\n", "slurm.yaml: a Slurm settings file must be a mapping with keys time, partition"),
]


@pytest.mark.parametrize("text, message", SLURM_MISTAKES, ids=[m.split(": ")[1][:20] for _, m in SLURM_MISTAKES])
def test_a_bad_slurm_settings_file_is_one_line_naming_the_key_before_any_study_exists(
    tmp_path, capsys, text, message
) -> None:
    (tmp_path / "slurm.yaml").write_text(text)
    code = launch(
        tmp_path,
        write_experiment(tmp_path, "bad"),
        f"sqlite:///{tmp_path / 'studies.db'}",
        "--workers",
        "2",
        "--executor",
        "slurm",
        "--slurm-config",
        str(tmp_path / "slurm.yaml"),
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "studies.db").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--workers", "3", "--gpus", "0,1"], "--gpus 0,1 gives 2 GPUs for 3 workers; give one GPU per worker"),
        (["--workers", "2", "--gpus", "0,x"], "--gpus 0,x: 'x' is not a GPU index"),
        (["--workers", "2", "--gpus", "1,1"], "--gpus 1,1 names a GPU twice"),
        (["--workers", "0"], "argument --workers: must be in [1, 1024], got 0"),
        (["--workers", "2", "--executor", "slurm"], "--executor slurm needs --slurm-config FILE.yaml"),
        (["--workers", "2", "--executor", "slurm", "--gpus", "0,1"], "--gpus is for --executor local"),
        (["--workers", "2", "--slurm-config", "slurm.yaml"], "--slurm-config is for --executor slurm"),
        (
            [
                "--workers",
                "2",
                "--executor",
                "slurm",
                "--slurm-config",
                str(REPO / "experiments/cluster/slurm.example.yaml"),
            ],
            "--executor slurm: Slurm's srun is not on PATH here",
        ),
    ],
)
def test_bad_launch_options_are_one_line_before_any_study_exists(tmp_path, capsys, monkeypatch, options, message):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no srun here, whatever the machine
    code = launch(tmp_path, write_experiment(tmp_path, "bad"), f"sqlite:///{tmp_path / 'studies.db'}", *options)
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "studies.db").exists()
