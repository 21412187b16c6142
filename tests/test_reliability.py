"""Reliability (issues 8 and 16), beyond tests/test_failures.py and tests/test_sweeps.py: nothing finished is lost,
every failure is explained in one line, a fault of the environment never fails a grid point for good, a failed
point can be requeued on purpose, and W&B never holds two runs for one grid point.

Covered elsewhere and reused here: kill -9 + rerun, SIGTERM/SIGINT resume, 35 malformed files, OOM, full disk,
dead PostgreSQL, damaged NYUD labels and 4 SQLite/PostgreSQL workers (test_failures.py); truncated checkpoints and
non-finite losses (test_train.py, test_sweeps.py); corrupt dataset caches (test_data_synthetic.py).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import scipy.io
import torch
from optuna.trial import TrialState
from test_data_real import pascal_root  # noqa: F401 - fixture
from test_sweeps import ENCODINGS, ONE_TASK, REPO, SHARED, TINY, complete, make_sweep, sweep_argv, write_experiment
from wandb.proto import wandb_internal_pb2
from wandb_offline import _payloads, finished_records, read_offline_run

from analysis.make_tables import main as tables_main
from sweeps import records as R
from sweeps.__main__ import main as sweeps_main
from sweeps.driver import INTERRUPTED, Interrupted
from sweeps.tracking import WandbRun
from tsn.__main__ import main as tsn_main
from tsn.checkpoint import load_checkpoint
from tsn.data import build_dataset
from tsn.train import Trainer

SECRET = "0123456789abcdef0123456789abcdef0badc0de"
DIMS = "  scientific:\n    model.embedding_dim: [5, 10, 15]\n  nuisance:\n    train.seed: [1337]\n"


# ----------------------------------------------------------------------------------------------- helpers
def wandb_runs(root: Path) -> dict[str, list[int | None]]:
    """W&B run id -> the exit code of each offline attempt in order (None: no exit record, i.e. crashed)."""
    runs: dict[str, list[int | None]] = {}
    for run_dir in sorted(root.glob("wandb/offline-run-*")):
        run_id, exit_code = None, None
        for log in run_dir.glob("run-*.wandb"):
            for payload in _payloads(log.read_bytes()):
                record = wandb_internal_pb2.Record()
                try:
                    record.ParseFromString(payload)
                except Exception:  # noqa: BLE001 - the tail of a killed run's log may be cut
                    break
                kind = record.WhichOneof("record_type")
                if kind == "run":
                    run_id = record.run.run_id
                elif kind == "exit":
                    exit_code = record.exit.exit_code
        if run_id is None:  # killed before its first record was flushed: the folder name ends in the id
            run_id = run_dir.name.rsplit("-", 1)[-1]
        runs.setdefault(run_id, []).append(exit_code)
    return runs


def snapshot(study: optuna.Study) -> dict[int, tuple]:
    return {t.number: (t.state, t.values, t.params, t.user_attrs) for t in complete(study)}


def _wait_for(predicate, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.2)


# The crash tests' trials: a kill or signal after a trial's first checkpoint leaves it two epochs of two steps per
# task (~2.5 s) to land in.
EPOCHS = 3
CRASH = [*TINY[:-1], "data.train_samples=16", f"train.epochs={EPOCHS}"]


def _sweep_process(experiment: Path, storage: str, tmp_path: Path) -> subprocess.Popen:
    """``python -m sweeps run`` of ``EPOCHS`` epochs a trial, with W&B on (offline) and an API key in the environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_API_KEY": SECRET}
    # An earlier in-process W&B test made this process a W&B service and exported its address; a child that
    # inherits it logs through that service, which outlives a kill -9 of the child (as a login shell's would not).
    env.pop("WANDB_SERVICE", None)
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", *sweep_argv(experiment, storage, tmp_path / "runs", CRASH, wandb=True)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def _checkpoints(tmp_path: Path) -> list[Path]:
    return list((tmp_path / "runs").glob("*/*/checkpoint.pt"))


# ------------------------------------------------------------------------------------ malformed input
# Run configs for ``python -m tsn train`` that tests/test_config.py and tests/test_failures.py do not cover.
BAD_RUN_CONFIGS = [
    ("model: {encodings: orthogonal}\n", "unknown key model.encodings; valid keys in model: architecture"),
    ("model: {embedding_dim: 7}\n", "divisible by the number of tasks (5); got 7, valid: 5, 10"),
    ("model: {embedding_dim: 0}\n", "model.embedding_dim must be in [1, 4096]"),
    ("model: {encoding: gaussian, embedding_dim: -5}\n", "model.embedding_dim must be in [1, 4096]"),
    ("data: {image_size: 50}\n", "data.image_size must be in [64, 4096], got 50"),
    ("data: {dataset: nyud, root: /missing/NYUD}\n", "data.root: folder not found: /missing/NYUD"),
    ("data: {train_samples: 0}\n", "data.train_samples must be in [1, 1e+08], got 0"),
    (
        "data: {tasks: []}\n",
        "data.tasks is empty; name at least one task (or leave the key out for all); valid: semseg",
    ),
    ("train: {batch_size: 2.5}\n", "train.batch_size: expected an integer, got 2.5"),
    ("train: {epochs: true}\n", "train.epochs: expected an integer, got True"),
    ("train: {lr_decoder: -0.1}\n", "train.lr_decoder must be in [0, 10], got -0.1"),
    ("model: {architecture: [tsn]}\n", "model.architecture: expected a string, got ['tsn']"),
    ("just a string\n", "a configuration must be a mapping of sections ['model', 'data', 'train']"),
    ("model: {architecture: tsm}\n", "unknown architecture 'tsm'"),
    ("train: {epochs: -3}\n", "train.epochs must be in [1, 100000], got -3"),
    ("data: {dataset: pascal_context, root: /missing/PASCAL_MT}\n", "data.root: folder not found: /missing/PASCAL_MT"),
    ("train: [1, 2]\n", "section 'train' must be a mapping"),
    ("train: {epochs: 2\n", "YAML syntax error"),
]


@pytest.mark.parametrize("text, message", BAD_RUN_CONFIGS)
def test_more_malformed_run_configs_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, text, message) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    code = tsn_main(["train", "--budget", "smoke", "--config", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_empty_task_list_in_an_experiment_or_override_is_an_error_not_the_default(tmp_path, capsys) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nfixed: {data: {tasks: []}}\naxes: {nuisance: {train.seed: [1]}}\n")
    code = sweeps_main(sweep_argv(path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2 and "data.tasks is empty" in err and err.count("\n") == 1, err
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "runs").exists()
    assert tsn_main(["train", "--budget", "smoke", "--out", str(tmp_path / "out"), "data.tasks="]) == 2
    assert "data.tasks is empty" in capsys.readouterr().err and not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- storage
@pytest.mark.parametrize("kind", ["missing_root", "file_as_folder", "not_a_database", "journal_under_a_file"])
def test_unusable_study_storage_is_one_line_exit_2_naming_the_url(tmp_path, capsys, kind) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not an SQLite database" * 10)
    url = {
        "missing_root": "sqlite:////proc/no-such-folder/studies.db",  # cannot be created, even by root
        "file_as_folder": f"sqlite:///{blocker}/studies.db",
        "not_a_database": f"sqlite:///{garbage}",
        "journal_under_a_file": f"journal:{blocker}/journal.log",
    }[kind]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = sweeps_main(sweep_argv(REPO / "experiments" / "embedding.yaml", url, tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: cannot open study storage {url}: ") and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing written, nothing trained


# ---------------------------------------------------------------------- failures in user code, in tables
def test_failures_in_user_code_are_missing_cells_with_reasons_and_a_full_disk_keeps_the_reports(
    tmp_path, monkeypatch, capsys
) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, DIMS, name="dims"))
    original = Trainer.train_step

    def step(self, tasks, batch, where=""):
        if self.cfg.model.architecture == "tsn" and self.cfg.model.embedding_dim == 10:
            raise KeyError("semseg_logits")  # a bug in user code
        if self.cfg.model.architecture == "tsn" and self.cfg.model.embedding_dim == 15:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return original(self, tasks, batch, where)

    monkeypatch.setattr(Trainer, "train_step", step)
    assert sweep.run() == {"complete": 1, "failed": 2}
    reasons = {
        t.params["model.embedding_dim"]: t.user_attrs[R.FAIL_REASON]
        for t in sweep.study.get_trials(states=(TrialState.FAIL,))
    }
    assert reasons == {
        10: "KeyError: 'semseg_logits'",
        15: "OutOfMemoryError: CUDA out of memory. Tried to allocate 8.00 GiB",
    }
    assert make_sweep(tmp_path, write_experiment(tmp_path, DIMS, name="dims")).run() == {"complete": 1, "failed": 2}

    out = tmp_path / "reports"
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = ["--storage", storage, "--study", sweep.study_name, "--out", str(out), "--no-figures"]
    assert tables_main(args) == 0
    capsys.readouterr()
    markdown = (out / f"{sweep.study_name}.md").read_text()
    assert "missing: 2 of 3 grid points not finished" in markdown
    assert (
        "model.embedding_dim=10, train.seed=1337: trial" in markdown and "FAIL: KeyError: 'semseg_logits'" in markdown
    )
    assert "FAIL: OutOfMemoryError: CUDA out of memory" in markdown
    table = pd.read_csv(out / f"{sweep.study_name}.csv")
    numbers = table.set_index("d").drop(columns=["n"])
    assert numbers.loc[5, [c for c in numbers.columns if c.endswith("_mean")]].notna().all()
    for d in (10, 15):  # no number for a failed point (its row is absent or empty); the notes give the reason
        assert d not in numbers.index or numbers.loc[d].isna().all(), table
        assert f"| {d} |" not in markdown.split("missing:")[0]

    # A full disk while the reports are rewritten leaves the previous ones intact and no temporary file.
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_text = Path.write_text

    def full_disk(self, data, *args, **kwargs):
        if self.name.endswith(".tmp"):
            write_text(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert tables_main(args) == 1  # a failed run (the boundary's one line), not bad input
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_disk_full_during_a_trial_stops_the_sweep_keeps_the_checkpoint_and_the_rerun_resumes(
    tmp_path, monkeypatch, capsys
) -> None:
    experiment = write_experiment(tmp_path, ENCODINGS)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = sweep_argv(experiment, storage, tmp_path / "runs", [*TINY[:-1], "train.epochs=2", ONE_TASK])
    save, full = torch.save, []

    def disk_fills_up(obj, file, *a, **k):  # the first grid trial's second epoch hits a full disk
        if full or (obj.get("config", {}).get("model", {}).get("architecture") == "tsn" and obj.get("epoch") == 2):
            full.append(file)
            Path(file).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return save(obj, file, *a, **k)

    monkeypatch.setattr(torch, "save", disk_fills_up)
    assert sweeps_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stopped: disk full during mini-synthetic-smoke trial 0"), err
    assert "OSError: [Errno 28] No space left on device; free some space; run the same command again" in err, err
    assert len(full) == 1  # the sweep stopped instead of failing every next trial the same way
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    (stopped,) = study.get_trials()
    assert stopped.state == TrialState.FAIL and stopped.user_attrs[INTERRUPTED]
    assert R.FAIL_REASON not in stopped.user_attrs  # so it is retried
    run_dir = Path(stopped.user_attrs[R.RUN_DIR])
    saved = load_checkpoint(run_dir / "checkpoint.pt")
    assert saved["epoch"] == 1 and [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []

    monkeypatch.setattr(torch, "save", save)  # space freed: the same command finishes, resuming the checkpoint
    assert sweeps_main(args) == 0
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    keys = [t.user_attrs[R.CONFIG_HASH] for t in complete(study)]
    assert len(keys) == len(set(keys)) == 2
    (resumed,) = [t for t in complete(study) if t.user_attrs[R.CONFIG_HASH] == stopped.user_attrs[R.CONFIG_HASH]]
    assert resumed.user_attrs[R.HISTORY][:1] == saved["history"]


# ------------------------------------------------------------------------------------ environment faults
@pytest.mark.parametrize("fault", ["file_in_the_way", "read_only"])
def test_an_unwritable_runs_folder_stops_the_sweep_and_the_rerun_completes_every_point(tmp_path, capsys, fault) -> None:
    if fault == "read_only" and os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder anyway; file_in_the_way hits the same write boundary")
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = sweep_argv(write_experiment(tmp_path, ENCODINGS), storage, tmp_path / "runs", [*TINY, ONE_TASK])
    blocked = tmp_path / "runs" / "synthetic-smoke"  # where every run folder of the sweep goes
    blocked.parent.mkdir()
    if fault == "file_in_the_way":
        blocked.write_text("not a folder")
    else:
        blocked.mkdir()
        blocked.chmod(0o555)
    try:
        assert sweeps_main(args) == 1
    finally:
        blocked.chmod(0o755)
    err = capsys.readouterr().err
    what = {"file_in_the_way": "a file is in the way of a folder", "read_only": "permission denied"}[fault]
    assert err.count("\n") == 1 and err.startswith(f"stopped: {what} during {SHARED} trial 0 "), err
    assert str(blocked) in err and err.endswith("; run the same command again to resume\n"), err
    baselines = optuna.load_study(study_name=SHARED, storage=storage)
    (stopped,) = baselines.get_trials()  # the first trial stopped the sweep; the grid trained nothing
    assert stopped.state == TrialState.FAIL and stopped.user_attrs[INTERRUPTED]
    assert R.FAIL_REASON not in stopped.user_attrs  # so it is retried
    assert not optuna.load_study(study_name="mini-synthetic-smoke", storage=storage).get_trials()

    blocked.unlink() if blocked.is_file() else blocked.rmdir()  # the fault fixed: the same command finishes
    assert sweeps_main(args) == 0
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    assert sorted(t.params["model.encoding"] for t in complete(study)) == ["gaussian", "orthogonal"]
    assert [t.user_attrs[R.CONFIG_HASH] for t in complete(baselines)] == [stopped.user_attrs[R.CONFIG_HASH]]
    assert all(t.user_attrs.get(R.DELTA_M) is not None for t in complete(study))


def test_retry_failed_requeues_failed_points_once_and_the_next_worker_trains_them(
    tmp_path, monkeypatch, capsys
) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = sweep_argv(write_experiment(tmp_path, ENCODINGS), storage, tmp_path / "runs", [*TINY, ONE_TASK])
    original = Trainer.train_step

    def step(self, tasks, batch, where=""):
        if self.cfg.model.architecture == "tsn" and self.cfg.model.encoding == "gaussian":
            raise KeyError("semseg_logits")  # a bug in user code
        return original(self, tasks, batch, where)

    monkeypatch.setattr(Trainer, "train_step", step)
    assert sweeps_main(args) == 1
    assert sweeps_main(args) == 1  # a failure is kept, not retried by a rerun
    monkeypatch.setattr(Trainer, "train_step", original)  # the bug fixed
    capsys.readouterr()
    retry = ["retry", "--failed", "mini-synthetic-smoke", "--storage", storage]
    assert sweeps_main(retry) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("requeued 1 failed point(s) of mini-synthetic-smoke; "), out
    assert sweeps_main(retry) == 0 and capsys.readouterr().out.startswith("requeued 0 failed point(s)")

    worker = ["worker", "--study", "mini-synthetic-smoke", *args[args.index("--storage") :]]
    assert sweeps_main(worker) == 0
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))  # kept for the record
    assert failed.params["model.encoding"] == "gaussian"
    assert failed.user_attrs[R.FAIL_REASON] == "KeyError: 'semseg_logits'"
    keys = [t.user_attrs[R.CONFIG_HASH] for t in complete(study)]
    assert len(keys) == len(set(keys)) == 2
    (retried,) = [t for t in complete(study) if t.params["model.encoding"] == "gaussian"]
    assert retried.user_attrs[R.RETRY_OF] == failed.number and retried.user_attrs[R.DELTA_M] is not None
    trials = len(study.get_trials())
    assert sweeps_main(args) == 0  # nothing failed any more: the rerun trains nothing and succeeds
    assert len(study.get_trials()) == trials


# --------------------------------------------------------------------------------------- damaged files
def test_damaged_pascal_files_are_named_in_the_error(pascal_root) -> None:  # noqa: F811
    first, second = build_dataset("pascal_context", "val", [], 32, root=str(pascal_root)).ids
    parts = pascal_root / "human_parts" / f"{first}.mat"
    parts.write_bytes(parts.read_bytes()[:60])  # truncated
    with pytest.raises(ValueError, match=f"damaged file {parts}"):
        build_dataset("pascal_context", "val", ["parts"], 32, root=str(pascal_root))[0]
    image = pascal_root / "JPEGImages" / f"{first}.jpg"
    image.write_bytes(image.read_bytes()[:30])
    with pytest.raises(ValueError, match=f"damaged file {image}"):
        build_dataset("pascal_context", "val", ["saliency"], 32, root=str(pascal_root))[0]
    label_map = pascal_root / "pascal-context" / "trainval" / f"{second}.mat"
    scipy.io.savemat(label_map, {"NotALabelMap": [[1]]})  # readable, but not the release's content
    with pytest.raises(ValueError, match=f"damaged file {label_map}: no 'LabelMap' entry"):
        build_dataset("pascal_context", "val", ["edge"], 32, root=str(pascal_root))[1]


def test_a_signal_during_wandb_logging_is_not_swallowed_by_its_error_handling(tmp_path, monkeypatch) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS), wandb=True, extra=["train.epochs=2"])
    original = WandbRun.on_epoch_end

    def on_epoch_end(self, trainer, record):  # SIGTERM arrives while W&B is logging the grid trial's first epoch
        if self.run is not None and trainer.cfg.model.architecture == "tsn":
            log = self.run.log
            self.run.log = lambda *a, **k: (signal.raise_signal(signal.SIGTERM), log(*a, **k))
        return original(self, trainer, record)

    monkeypatch.setattr(WandbRun, "on_epoch_end", on_epoch_end)
    with pytest.raises(Interrupted, match="interrupted during mini-synthetic-smoke trial 0"):
        sweep.run()
    (trial,) = sweep.study.get_trials()
    assert trial.state == TrialState.FAIL and trial.user_attrs[INTERRUPTED] and R.FAIL_REASON not in trial.user_attrs
    run_id = trial.user_attrs[R.WANDB_RUN_ID]
    (run_dir,) = (tmp_path / "runs" / "wandb").glob(f"offline-run-*-{run_id}")
    finished_records(run_dir)  # finished in this process: W&B's service may still be writing the exit record
    assert wandb_runs(tmp_path / "runs")[run_id] == [1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_trials_stops_in_one_line_with_exit_130(tmp_path, monkeypatch, capsys, sig) -> None:
    from sweeps.driver import Sweep

    monkeypatch.setattr(Sweep, "_next_ready", lambda self, pending: signal.raise_signal(sig))
    before = signal.getsignal(signal.SIGTERM)
    code = sweeps_main(
        sweep_argv(write_experiment(tmp_path, ENCODINGS), f"sqlite:///{tmp_path / 's.db'}", tmp_path / "runs")
    )
    err = capsys.readouterr().err
    assert code == 130 and err == "stopped: interrupted between trials; run the same command again to resume\n"
    assert signal.getsignal(signal.SIGTERM) == before  # the CLI's handler is removed again


def test_every_torch_load_in_the_code_is_weights_only() -> None:
    import re

    calls = []
    for folder in ("tsn", "sweeps", "analysis"):
        for path in (REPO / folder).rglob("*.py"):
            text = path.read_text()
            assert "pickle.load" not in text and "torch.jit.load" not in text, path
            calls += [(path, m.group(0)) for m in re.finditer(r"torch\.load\([^)]*\)", text)]
    assert calls and all("weights_only=True" in call for _, call in calls), calls


# ------------------------------------------------------------------------------------------------ secrets
def test_no_secret_in_cli_output_stored_config_wandb_config_or_reports(
    tmp_path, monkeypatch, capsys, few_task_counts
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    experiment = write_experiment(tmp_path, ENCODINGS.replace("[orthogonal, gaussian]", "[orthogonal]"))
    assert sweeps_main(sweep_argv(experiment, storage, tmp_path / "runs", [*TINY, ONE_TASK], wandb=True)) == 0
    assert tables_main(["--storage", storage, "--out", str(tmp_path / "reports")]) == 0
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    (trial,) = complete(optuna.load_study(study_name="mini-synthetic-smoke", storage=storage))
    logged = read_offline_run(next((tmp_path / "runs" / "wandb").glob(f"*-{trial.user_attrs[R.WANDB_RUN_ID]}")))
    assert logged["config"]["config_hash"] == trial.user_attrs[R.CONFIG_HASH]  # the W&B config was written
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".md" for p in files) and any(p.suffix == ".wandb" for p in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------------------- crashes and interrupts
@pytest.mark.slow
def test_kill_9_keeps_finished_trials_unchanged_and_one_wandb_run_per_point(tmp_path) -> None:
    experiment = write_experiment(tmp_path, ENCODINGS)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    proc = _sweep_process(experiment, storage, tmp_path)
    # baseline and first grid trial finished, the second grid trial has checkpointed an epoch
    _wait_for(lambda: len(_checkpoints(tmp_path)) >= 3 or proc.poll() is not None, 300)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    baselines = optuna.load_study(study_name=R.baseline_study_name("synthetic", "smoke"), storage=storage)
    finished = {"main": snapshot(study), "baselines": snapshot(baselines)}
    assert len(finished["main"]) == 1 and len(finished["baselines"]) == 1
    (killed,) = study.get_trials(states=(TrialState.RUNNING,))

    rerun = _sweep_process(experiment, storage, tmp_path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    baselines = optuna.load_study(study_name=R.baseline_study_name("synthetic", "smoke"), storage=storage)
    after = {"main": snapshot(study), "baselines": snapshot(baselines)}
    for name, trials in finished.items():  # every finished trial kept, unchanged
        assert {n: after[name][n] for n in trials} == trials
    keys = [t.user_attrs[R.CONFIG_HASH] for t in complete(study)]
    assert len(keys) == len(set(keys)) == 2 and killed.user_attrs[R.CONFIG_HASH] in keys
    assert study.get_trials()[killed.number].state == TrialState.FAIL  # reaped, then retried once
    (retried,) = [t for t in complete(study) if t.user_attrs[R.CONFIG_HASH] == killed.user_attrs[R.CONFIG_HASH]]
    assert [h["epoch"] for h in retried.user_attrs[R.HISTORY]] == list(range(1, EPOCHS + 1))

    # W&B: one run per grid point; the killed attempt has no exit record (crashed) and was resumed under its id.
    ids = [t.user_attrs[R.WANDB_RUN_ID] for t in [*complete(study), *complete(baselines)]]
    runs = wandb_runs(tmp_path / "runs")
    assert len(ids) == len(set(ids)) == 3 and set(runs) == set(ids), (runs, out)
    assert retried.user_attrs[R.WANDB_RUN_ID] == killed.user_attrs[R.WANDB_RUN_ID]
    assert runs[killed.user_attrs[R.WANDB_RUN_ID]] == [None, 0]
    assert all(runs[i] == [0] for i in ids if i != killed.user_attrs[R.WANDB_RUN_ID])


def _interrupt(proc: subprocess.Popen, sig: int, storage: str, tmp_path: Path) -> tuple[optuna.trial.FrozenTrial, dict]:
    """Send ``sig`` to a sweep mid-trial; check the one-line stop, the trial recorded as interrupted and its W&B
    run closed as failed. The interrupted trial and its checkpoint."""
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    stopped = [line for line in out.splitlines() if "stopped:" in line]
    assert len(stopped) == 1 and stopped[0].startswith("stopped: interrupted during mini-synthetic-smoke trial")
    assert "Traceback" not in out
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    interrupted = max(
        (t for t in study.get_trials(states=(TrialState.FAIL,)) if t.user_attrs.get(INTERRUPTED)),
        key=lambda t: t.number,
    )  # this run's: an earlier run's interrupted trial stays on record
    assert R.FAIL_REASON not in interrupted.user_attrs
    run_id = interrupted.user_attrs[R.WANDB_RUN_ID]
    assert wandb_runs(tmp_path / "runs")[run_id] == [1]  # closed, marked failed
    (first,) = (tmp_path / "runs" / "wandb").glob(f"offline-run-*-{run_id}")
    assert read_offline_run(first)["summary"]["fail_reason"] == "interrupted"
    return interrupted, load_checkpoint(Path(interrupted.user_attrs[R.RUN_DIR]) / "checkpoint.pt")


@pytest.mark.slow
def test_a_signal_mid_trial_is_recorded_closes_the_wandb_run_and_the_rerun_resumes_from_checkpoint(tmp_path) -> None:
    """SIGTERM stops the sweep in its first grid trial; the rerun resumes it, and SIGINT stops the rerun in the second;
    a third run resumes that one: each trial ends as one W&B run, its history continuing its checkpoint's."""
    experiment = write_experiment(tmp_path, ENCODINGS)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    interrupted = []
    for sig, checkpoints in ((signal.SIGTERM, 2), (signal.SIGINT, 3)):  # the baseline's, then each grid trial's
        proc = _sweep_process(experiment, storage, tmp_path)
        _wait_for(lambda n=checkpoints, p=proc: len(_checkpoints(tmp_path)) >= n or p.poll() is not None, 300)
        interrupted.append(_interrupt(proc, sig, storage, tmp_path))
    assert interrupted[0][0].user_attrs[R.CONFIG_HASH] != interrupted[1][0].user_attrs[R.CONFIG_HASH]

    rerun = _sweep_process(experiment, storage, tmp_path)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    study = optuna.load_study(study_name="mini-synthetic-smoke", storage=storage)
    resumed = {t.user_attrs[R.CONFIG_HASH]: t for t in complete(study)}
    assert len(resumed) == len(complete(study)) == 2  # every grid point completed exactly once
    runs = wandb_runs(tmp_path / "runs")
    for trial, saved in interrupted:
        done = resumed[trial.user_attrs[R.CONFIG_HASH]]
        run_id = trial.user_attrs[R.WANDB_RUN_ID]
        assert done.user_attrs[R.WANDB_RUN_ID] == run_id and runs[run_id] == [1, 0]
        history = done.user_attrs[R.HISTORY]
        assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
        assert history[: saved["epoch"]] == saved["history"]
