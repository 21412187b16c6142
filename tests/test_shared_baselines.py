"""The shared single-task runs: the budget's reference seeds (runs that widen every baseline configuration's
reference, trained once by whichever sweep finishes its points first, pooled by the analysis), and single-task points
of an experiment (Table 1's row), recorded from the shared run of their configuration instead of trained again."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from test_sweeps import ENCODINGS, ONE_TASK, SHARED, TINY, complete, write_experiment

import sweeps.experiment as experiment_module
from analysis.runs import load_study
from analysis.tables import ablation_table
from sweeps import export as E
from sweeps import records as R
from sweeps.driver import Sweep
from sweeps.experiment import SEED_KEY, budget_reference_seeds, load_experiment
from sweeps.tracking import TrackingConfig
from tsn.config import ConfigError, load_budgets


def reference_seeds_at_smoke(monkeypatch: pytest.MonkeyPatch, seeds: object) -> None:
    budgets = load_budgets()
    smoke = {**budgets["smoke"], "sweep": {**budgets["smoke"]["sweep"], "reference_seeds": seeds}}
    monkeypatch.setattr(experiment_module, "load_budgets", lambda: {**budgets, "smoke": smoke})


def sweep_of(tmp_path: Path, lines: list[str], experiment: Path | None = None) -> Sweep:
    return Sweep(
        load_experiment(experiment or write_experiment(tmp_path, ENCODINGS)),
        "smoke",
        f"sqlite:///{tmp_path / 'studies.db'}",
        overrides=[*TINY, ONE_TASK],
        runs_dir=tmp_path / "runs",
        tracking=TrackingConfig(enabled=False),
        log=lines.append,
    )


def test_reference_seeds_train_once_after_the_points_and_widen_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference_seeds_at_smoke(monkeypatch, [1337, 1338, 1340])  # 1337 is the grid's own seed (smoke: one seed)
    lines: list[str] = []
    sweep = sweep_of(tmp_path, lines)
    assert sweep.run() == {"complete": 2}
    assert sorted(t.params[SEED_KEY] for t in complete(sweep.baseline_study)) == [1337, 1338, 1340]
    started = [line for line in lines if line.endswith(" ...")]
    assert [line.split(":")[0] for line in started[-2:]] == ["reference 1/2", "reference 2/2"]
    assert all("reference" not in line for line in started[:-2]) and len(started) == 4  # 2 points, then 2 references

    lines.clear()
    assert sweep_of(tmp_path, lines).run() == {"complete": 2}  # everything is done: nothing trains again
    assert not [line for line in lines if line.endswith(" ...")]
    assert len(complete(sweep.baseline_study)) == 3

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    table, trials = ablation_table(load_study(sweep.study_name, storage), load_study(SHARED, storage))
    assert trials["reference_seeds"].tolist() == [3, 3]
    assert trials["reference_spread"].notna().all() and "(3 seeds)" in " ".join(table.notes)


def test_a_timeout_leaves_the_reference_seeds_for_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sweep_of(tmp_path, []).run() == {"complete": 2}  # the points, without reference seeds
    reference_seeds_at_smoke(monkeypatch, [1338])
    lines: list[str] = []
    sweep = sweep_of(tmp_path, lines)
    assert sweep.run(timeout=1e-9) == {"complete": 2}
    assert any("before the reference seeds" in line for line in lines)
    assert [t.params[SEED_KEY] for t in complete(sweep.baseline_study)] == [1337]


@pytest.mark.parametrize("seeds", [[1, 1], "1337", [True], [-1], [2**31], [1.5], {"a": 1}])
def test_reference_seeds_must_be_distinct_seeds(monkeypatch: pytest.MonkeyPatch, seeds: object) -> None:
    reference_seeds_at_smoke(monkeypatch, seeds)
    with pytest.raises(ConfigError, match=r"smoke\.sweep\.reference_seeds must be a list of distinct seeds"):
        budget_reference_seeds("smoke")


def test_no_reference_seeds_by_default() -> None:
    assert budget_reference_seeds("smoke") == []


ARCHITECTURES = "  scientific:\n    model.architecture: [single_task, tsn]\n  nuisance:\n    train.seed: [1337]\n"


def test_a_single_task_point_carries_the_shared_run_trained_elsewhere(tmp_path: Path) -> None:
    """Table 1's single-task row on a machine that imported the baselines: recorded from them, not retrained."""
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir(), here.mkdir()
    assert sweep_of(elsewhere, []).run() == {"complete": 2}  # trains the seed-1337 single-task baseline there
    E.export(f"sqlite:///{elsewhere / 'studies.db'}", tmp_path / "trials", [SHARED])
    E.restore(f"sqlite:///{here / 'studies.db'}", tmp_path / "trials")
    lines: list[str] = []
    table1 = sweep_of(here, lines, write_experiment(here, ARCHITECTURES, name="table", fixed="{}"))
    assert table1.run() == {"complete": 2}
    (baseline,) = complete(table1.baseline_study)
    single, tsn = sorted(complete(table1.study), key=lambda t: t.params["model.architecture"])
    assert single.params["model.architecture"] == "single_task"
    assert single.user_attrs[R.RECORDED_FROM] == {
        "study": SHARED,
        "trial": baseline.number,
        "config_hash": baseline.user_attrs[R.CONFIG_HASH],
    }
    assert single.user_attrs[R.PRIMARY] == baseline.user_attrs[R.PRIMARY] and single.user_attrs[R.DELTA_M] == 0.0
    assert single.user_attrs[R.CONFIG_HASH] == baseline.user_attrs[R.CONFIG_HASH] and single.value == 0.0
    assert tsn.user_attrs[R.BASELINE_RUNS][0]["trial"] == baseline.number
    assert sum(line.endswith("the shared single-task run") for line in lines) == 1
    (trained,) = [line for line in lines if line.endswith(" ...")]  # the TSN point only
    assert "tsn" in trained
    assert len(list((here / "runs").glob("*/*"))) == 1  # the TSN run; no single-task run was trained here


def test_a_point_another_experiment_finished_elsewhere_is_recorded_from_it_not_trained_again(tmp_path: Path) -> None:
    """The embedding ablation's Gaussian d = 100 point is the d-sweep's too: one configuration, one run, even when
    it ran on another machine and only its export came here (no run folder)."""
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir(), here.mkdir()
    assert sweep_of(elsewhere, []).run() == {"complete": 2}  # mini: TSN orthogonal and Gaussian, d = 100
    mini = "mini-synthetic-smoke"
    E.export(f"sqlite:///{elsewhere / 'studies.db'}", tmp_path / "trials", [mini, SHARED])
    E.restore(f"sqlite:///{here / 'studies.db'}", tmp_path / "trials")
    dims = "  scientific:\n    model.embedding_dim: [100, 50]\n  nuisance:\n    train.seed: [1337]\n"
    fixed = "{model: {architecture: tsn, encoding: gaussian}}"
    lines: list[str] = []
    sweep = sweep_of(here, lines, write_experiment(here, dims, name="dims", fixed=fixed))
    assert sweep.run() == {"complete": 2}

    stored = optuna.load_study(study_name=mini, storage=f"sqlite:///{here / 'studies.db'}")
    (source,) = [t for t in complete(stored) if t.params["model.encoding"] == "gaussian"]
    twin, trained = sorted(complete(sweep.study), key=lambda t: -t.params["model.embedding_dim"])
    assert twin.user_attrs[R.CONFIG_HASH] == source.user_attrs[R.CONFIG_HASH] and twin.value == source.value
    assert twin.user_attrs[R.RECORDED_FROM] == {
        "study": mini,
        "trial": source.number,
        "config_hash": source.user_attrs[R.CONFIG_HASH],
    }
    for name in (R.PRIMARY, R.METRICS, R.HISTORY, R.DELTA_M, R.BASELINE_RUNS, R.PARAMS, R.RUN_DIR):
        assert twin.user_attrs[name] == source.user_attrs[name], name
    assert twin.user_attrs[R.WANDB_RUN_ID] is None and R.RECORDED_FROM not in trained.user_attrs
    assert sum(line.endswith(f"{mini} trial {source.number}") for line in lines) == 1
    ((run,),) = [list((here / "runs").glob("*/*"))]  # only the d = 50 point was trained here
    assert run.name == trained.user_attrs[R.CONFIG_HASH]
    table, _ = ablation_table(load_study("dims-synthetic-smoke", f"sqlite:///{here / 'studies.db'}"), None)
    assert sorted(table.mean.index.get_level_values(-1)) == [50, 100]
