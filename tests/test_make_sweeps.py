"""End to end through make: ``make sweep-all`` at ``BUDGET=smoke``, every ``make sweep-NAME`` on one storage, then the
tables.

Make runs in the repository (``make -C``) with every output moved to a tmp folder (``STORAGE``, ``RUNS``,
``REPORTS``, ``TSN_CACHE_DIR``), this interpreter instead of the venv (``PY``, and ``STAMP`` an up-to-date file so
that make installs nothing), one thread and one epoch of one step on one task a trial (``SET``) and W&B disabled; the
repository must be left as it was.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from test_sweeps import ONE_TASK

from sweeps import records as R
from sweeps.driver import DUPLICATE_OF, STRAY
from sweeps.experiment import load_experiment

REPO = Path(__file__).resolve().parent.parent
DATASET, BUDGET = "synthetic", "smoke"


def _make(target: str, variables: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), target, *variables],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, f"make {target}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _repo_state() -> set[str]:
    """Every file git sees as changed, untracked or ignored (bytecode caches aside: the test process writes them)."""
    out = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line for line in out.splitlines() if "__pycache__" not in line}


def _sweep_targets(variables: list[str], env: dict[str, str]) -> list[str]:
    listed = [line.split()[0] for line in _make("help", variables, env).splitlines() if line.strip()]
    return [t for t in listed if t.startswith("sweep-") and t != "sweep-all"]


def _trained_experiments() -> list[str]:
    names = []
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        if path.name != "budgets.yaml" and load_experiment(path).train:
            names.append(path.stem)
    return names


def _assert_complete_exactly_once(storage: optuna.storages.BaseStorage, name: str) -> None:
    study = optuna.load_study(study_name=name, storage=storage)
    trials = [t for t in study.get_trials() if DUPLICATE_OF not in t.user_attrs and STRAY not in t.user_attrs]
    assert [t.number for t in trials if t.state != TrialState.COMPLETE] == [], name
    grid = study.user_attrs.get(R.GRID)
    search = study.user_attrs.get(R.SEARCH)
    if grid is not None:  # an experiment's study: its whole grid, each point once (a search's: `trials` per point)
        axes = list(grid[0]) if grid else []
        points = [{a: t.params[a] for a in axes} for t in trials] if search else [t.params for t in trials]
        expected = grid * (search["trials"] if search else 1)
        assert sorted(map(repr, points)) == sorted(map(repr, expected)), name
    assert len({t.user_attrs[R.CONFIG_HASH] for t in trials}) == len(trials), name


def test_help_lists_a_sweep_per_trained_experiment_and_sweep_all_runs_each(tmp_path: Path) -> None:
    variables = [f"PY={sys.executable}", "STAMP=Makefile"]
    env = {**os.environ, "MAKEFLAGS": ""}
    expected = [f"sweep-{n}" for n in _trained_experiments()]
    assert "sweep-convergence" in expected and "sweep-scaling" not in expected
    assert _sweep_targets(variables, env) == expected
    dry = _make("sweep-all", ["-n", *variables, "BUDGET=smoke"], env)
    sweeps = [line.split() for line in dry.splitlines() if " -m sweeps run " in line]
    assert [argv[-1] for argv in sweeps] == [f"experiments/{n}.yaml" for n in _trained_experiments()]
    assert all("--no-tables" in argv for argv in sweeps)  # sweep-all draws every table once, at its end
    assert "--no-tables" not in _make("sweep-embedding", ["-n", *variables], env)  # one sweep draws its own
    tables = _make("tables", ["-n", *variables, "SOURCE=export", "EXPORT=elsewhere"], env).replace("\\\n", " ")
    assert tables.split()[1:] == [
        "analysis/make_tables.py",
        "--storage",
        "sqlite:///runs/studies.db",
        "--out",
        "reports",
        "--source",
        "export",
        "--export-dir",
        "elsewhere",
    ]


@pytest.mark.slow
def test_make_sweep_all_runs_every_sweep_target_then_the_tables_on_one_storage(tmp_path: Path) -> None:
    stamp = tmp_path / "requirements.stamp"
    stamp.touch()  # newer than requirements.txt: make's venv rule has nothing to do
    storage_url = f"sqlite:///{tmp_path / 'studies.db'}"
    runs, reports = tmp_path / "runs", tmp_path / "reports"
    variables = [
        f"PY={sys.executable}",
        f"STAMP={stamp}",
        f"BUDGET={BUDGET}",
        f"STORAGE={storage_url}",
        f"RUNS={runs}",
        f"REPORTS={reports}",
        # one thread, one epoch of one step on one task: make's plumbing is under test here, not learning (with all
        # 5 tasks, the 32 trials made the test a third longer)
        f"SET=train.threads=1 train.progress=false data.train_samples=8 data.val_samples=4 train.epochs=1 {ONE_TASK}",
    ]
    env = {
        **os.environ,
        "MAKEFLAGS": "",
        "WANDB_MODE": "disabled",  # W&B's records are tested in test_sweeps / test_reliability; here only make's
        "WANDB_SILENT": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "TSN_CACHE_DIR": str(tmp_path / "cache"),
    }
    before = _repo_state()
    targets = _sweep_targets(variables, env)
    printed = _make("sweep-all", variables, env)

    storage = optuna.storages.RDBStorage(storage_url)
    experiments = [t.removeprefix("sweep-") for t in targets]
    studies = [R.study_name(name, DATASET, BUDGET) for name in experiments]
    shared = R.baseline_study_name(DATASET, BUDGET)
    assert sorted(optuna.get_all_study_names(storage)) == sorted([shared, *studies])
    for name in [shared, *studies]:
        _assert_complete_exactly_once(storage, name)
    baselines = optuna.load_study(study_name=shared, storage=storage).get_trials()
    assert [t.params for t in baselines] == [{"train.seed": 1337}]  # smoke: one seed, trained once for all

    for name in [shared, *studies, f"scaling-params-{DATASET}-{BUDGET}", f"scaling-macs-{DATASET}-{BUDGET}"]:
        assert all((reports / f"{name}.{ext}").stat().st_size > 0 for ext in ("md", "tex", "csv")), name
    figures = reports / "figures"
    for stem in (
        f"lr_search-{DATASET}-{BUDGET}-lr",
        f"embedding-{DATASET}-{BUDGET}-delta-m-vs-d",
        f"baselines-{DATASET}-{BUDGET}-convergence",
        f"convergence-{DATASET}-{BUDGET}-convergence",
        f"scaling-params-{DATASET}-{BUDGET}",
    ):
        assert (figures / f"{stem}.png").stat().st_size > 0, stem
    assert "| tsn |" in printed and 'SET="train.lr_decoder=' in printed  # the search's rerun of Table 1
    after = _repo_state()
    assert (sorted(after - before), sorted(before - after)) == ([], [])  # (written, removed): both empty
