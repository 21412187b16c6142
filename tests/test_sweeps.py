"""The sweep driver: a grid completes once, stores everything, resumes, survives failures and many workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from wandb_offline import read_offline_run

from analysis.runs import load_study
from sweeps import records as R
from sweeps import runner
from sweeps.__main__ import main as sweeps_main
from sweeps.driver import DUPLICATE_OF, STRAY, WORKER, Sweep
from sweeps.experiment import SEED_KEY, load_experiment
from sweeps.runner import TrialRunner, TrialTiming
from sweeps.storage import open_storage
from sweeps.tracking import TrackingConfig
from tsn.config import ConfigError, config_hash
from tsn.engine import NonFiniteLossError
from tsn.metrics.delta_m import delta_m
from tsn.train import Trainer

TINY = [  # a step per task and epoch: the sweep tests check records and claims, not learning
    "data.train_samples=8",
    "data.val_samples=4",
    "train.batch_size=8",
    "train.progress=false",
    "train.threads=1",
    "train.epochs=1",
]
REPO = Path(__file__).resolve().parent.parent
# For the tests of the driver's bookkeeping, which read records, not per-task metrics: a trial of one task does a fifth
# of the training work of all five (a single-task baseline is one network instead of five).
ONE_TASK = "data.tasks=[semseg]"
SHARED = R.baseline_study_name("synthetic", "smoke")


def write_experiment(
    tmp_path: Path, axes: str, name: str = "mini", fixed: str = "{model: {architecture: tsn}}"
) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\nfixed: {fixed}\naxes:\n{axes}\nbaseline: single_task\n")
    return path


ENCODINGS = "  scientific:\n    model.encoding: [orthogonal, gaussian]\n  nuisance:\n    train.seed: [1337]\n"


def sweep_argv(
    experiment: Path | str,
    storage: str,
    runs_dir: Path,
    overrides: Sequence[str] = (),
    *,
    command: str = "run",
    wandb: bool = False,
    tables: bool = False,
) -> list[str]:
    """``python -m sweeps COMMAND`` arguments for a smoke sweep of ``experiment`` into ``runs_dir``, each override a
    ``--set``; W&B and the tables at the end only when asked for."""
    return [
        command,
        str(experiment),
        "--budget",
        "smoke",
        *[arg for override in overrides for arg in ("--set", override)],
        "--storage",
        storage,
        "--runs-dir",
        str(runs_dir),
        *([] if wandb else ["--no-wandb"]),
        *([] if tables else ["--no-tables"]),
    ]


def make_sweep(
    tmp_path: Path, experiment: Path, storage: str | None = None, wandb: bool = False, extra=(), log=lambda line: None
) -> Sweep:
    return Sweep(
        load_experiment(experiment),
        "smoke",
        storage or f"sqlite:///{tmp_path / 'studies.db'}",
        overrides=[*TINY, *extra],
        runs_dir=tmp_path / "runs",
        tracking=TrackingConfig(enabled=wandb, mode="offline", dir=str(tmp_path / "runs")),
        log=log,
    )


def complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE,))


SECRET = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sweep, Path, dict[str, int]]:
    """One finished smoke sweep that the tests reading it share: W&B on (offline) with an API key in the environment;
    two seeds listed, of which the smoke budget runs the first. (sweep, its folder, what ``run`` returned)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    two_seeds = ENCODINGS.replace("[1337]", "[1337, 1338]")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_API_KEY", SECRET)
        sweep = make_sweep(tmp_path, write_experiment(tmp_path, two_seeds), wandb=True)
        counts = sweep.run()
    return sweep, tmp_path, counts


def test_smoke_grid_completes_and_stores_everything(finished) -> None:
    sweep, tmp_path, counts = finished
    assert counts == {"complete": 2}
    stored = load_study(sweep.study_name, f"sqlite:///{tmp_path / 'studies.db'}")
    assert stored.missing_points() == [] and len(stored.grid) == 2
    trials = complete(sweep.study)
    assert sorted(t.params["model.encoding"] for t in trials) == ["gaussian", "orthogonal"]
    (baseline,) = complete(sweep.baseline_study)
    assert baseline.user_attrs[R.ARCHITECTURE] == "single_task" and baseline.user_attrs[R.JOB_TYPE] == "baseline"
    for trial in trials:
        attrs = trial.user_attrs
        for key in (
            R.METRICS,
            R.PRIMARY,
            R.DELTA_M,
            R.PARAMS,
            R.MACS,
            R.WALL_TIME,
            R.HISTORY,
            R.CONFIG,
            R.CONFIG_HASH,
            R.GIT_COMMIT,
            R.WANDB_RUN_ID,
            R.BASELINE_RUNS,
            R.RUN_DIR,
        ):
            assert attrs.get(key) is not None, key
        assert attrs[R.METRICS]["semseg"]["conventions"]["miou"] == "astmt"
        assert attrs[R.BASELINE_RUNS] == [
            {"study": SHARED, "trial": baseline.number, "config_hash": baseline.user_attrs[R.CONFIG_HASH]}
        ]
        higher = {t: m["higher_is_better"] for t, m in attrs[R.METRICS].items()}
        expected = delta_m(attrs[R.PRIMARY], baseline.user_attrs[R.PRIMARY], higher, "astmt")
        assert trial.value == pytest.approx(expected) == pytest.approx(attrs[R.DELTA_M])
        assert attrs[R.CONFIG_HASH] == config_hash(sweep.by_hash[attrs[R.CONFIG_HASH]].config)
        assert (Path(attrs[R.RUN_DIR]) / "checkpoint.pt").is_file()


def test_wandb_offline_record_matches_the_trial(finished) -> None:
    sweep, tmp_path, _ = finished
    trial = complete(sweep.study)[0]
    (run_dir,) = (tmp_path / "runs" / "wandb").glob(f"offline-run-*-{trial.user_attrs[R.WANDB_RUN_ID]}")
    logged = read_offline_run(run_dir)
    assert logged["run"]["group"] == "mini-synthetic-smoke" and logged["run"]["job_type"] == "trial"
    assert {"synthetic", "smoke", "tsn"} <= set(logged["run"]["tags"])
    assert logged["config"]["config_hash"] == trial.user_attrs[R.CONFIG_HASH]
    assert logged["config"]["model"]["encoding"] == trial.params["model.encoding"]
    assert logged["summary"]["delta_m"] == pytest.approx(trial.user_attrs[R.DELTA_M])
    assert logged["summary"]["final/semseg"] == pytest.approx(trial.user_attrs[R.PRIMARY]["semseg"])
    assert [h["val/semseg"] for h in logged["history"]] == [e["metrics"]["semseg"] for e in trial.user_attrs[R.HISTORY]]


def test_no_secret_reaches_the_stored_or_logged_config(finished) -> None:
    _, tmp_path, _ = finished
    stored = (tmp_path / "studies.db").read_bytes()
    assert SECRET.encode() not in stored
    files = [path for path in (tmp_path / "runs").rglob("*") if path.is_file()]
    assert any(path.suffix == ".wandb" for path in files)
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path


def test_rerunning_a_finished_sweep_trains_nothing(finished, monkeypatch) -> None:
    _, tmp_path, _ = finished
    calls = []
    monkeypatch.setattr(TrialRunner, "run", lambda self, *a, **k: calls.append(a))
    assert make_sweep(tmp_path, tmp_path / "mini.yaml").run() == {"complete": 2}
    assert calls == []


def test_without_a_baseline_the_objective_and_the_wandb_summary_are_the_runs_mean_validation_loss(tmp_path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("name: plain\nfixed: {model: {architecture: tsn}}\naxes:\n" + ENCODINGS + "baseline: none\n")
    sweep = make_sweep(tmp_path, path, wandb=True)
    assert sweep.run() == {"complete": 2} and sweep.baseline_study is None
    for trial in complete(sweep.study):
        stored = json.loads((Path(trial.user_attrs[R.RUN_DIR]) / "metrics.json").read_text())
        losses = stored["val_loss"]
        assert trial.value == stored["mean_val_loss"] == pytest.approx(sum(losses.values()) / len(losses), rel=1e-12)
        assert R.DELTA_M not in trial.user_attrs
        (run_dir,) = (tmp_path / "runs" / "wandb").glob(f"offline-run-*-{trial.user_attrs[R.WANDB_RUN_ID]}")
        assert read_offline_run(run_dir)["summary"]["mean_val_loss"] == trial.value


def test_single_task_baselines_are_shared_across_studies(tmp_path: Path) -> None:
    make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS), extra=[ONE_TASK]).run()
    schedule = "  scientific:\n    train.schedule: [joint]\n  nuisance:\n    train.seed: [1337]\n"
    other = make_sweep(tmp_path, write_experiment(tmp_path, schedule, name="sched"), extra=[ONE_TASK])
    other.run()
    assert len(other.baseline_study.get_trials()) == 1  # trained once, by the first study


def test_failed_trial_is_recorded_with_its_reason_and_the_sweep_goes_on(tmp_path: Path, monkeypatch) -> None:
    # A learning rate that diverges is no longer a valid config (tsn.config domains): the divergence is injected.
    class Diverging(Trainer):
        def fit(self, *args, **kwargs):
            if self.cfg.train.lr_decoder == 10.0 and self.cfg.model.architecture != "single_task":
                raise NonFiniteLossError("non-finite loss (injected)")
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(runner, "Trainer", Diverging)
    axes = "  scientific:\n    train.lr_decoder: [10.0, 0.001]\n  nuisance:\n    train.seed: [1337]\n"
    experiment = write_experiment(tmp_path, axes, fixed="{model: {architecture: tsn}, train: {schedule: joint}}")
    sweep = make_sweep(tmp_path, experiment, extra=[ONE_TASK])
    assert sweep.run() == {"complete": 1, "failed": 1}
    (failed,) = sweep.study.get_trials(states=(TrialState.FAIL,))
    assert failed.params["train.lr_decoder"] == 10.0
    assert failed.user_attrs[R.FAIL_REASON].startswith("NonFiniteLossError: non-finite")
    assert make_sweep(tmp_path, experiment, extra=[ONE_TASK]).run() == {"complete": 1, "failed": 1}  # kept, not retried
    assert len(sweep.study.get_trials()) == 2


def test_on_trial_complete_is_told_every_completed_trial_and_its_training_time(tmp_path: Path, monkeypatch) -> None:
    class Diverging(Trainer):
        def fit(self, *args, **kwargs):
            if self.cfg.train.lr_decoder == 10.0 and self.cfg.model.architecture != "single_task":
                raise NonFiniteLossError("non-finite loss (injected)")
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(runner, "Trainer", Diverging)
    axes = "  scientific:\n    train.lr_decoder: [10.0, 0.001]\n  nuisance:\n    train.seed: [1337]\n"
    experiment = write_experiment(tmp_path, axes, fixed="{model: {architecture: tsn}, train: {schedule: joint}}")
    told: list[TrialTiming] = []
    sweep = Sweep(
        load_experiment(experiment),
        "smoke",
        f"sqlite:///{tmp_path / 'studies.db'}",
        overrides=[*TINY, ONE_TASK],
        runs_dir=tmp_path / "runs",
        log=lambda line: None,
        on_trial_complete=told.append,
        tracking=TrackingConfig(mode="offline", dir=str(tmp_path / "runs")),
    )
    assert sweep.run() == {"complete": 1, "failed": 1}
    (trial,), baselines = complete(sweep.study), complete(sweep.baseline_study)  # one baseline per lr_decoder
    stored = {(SHARED, b.number): b for b in baselines} | {(sweep.study_name, trial.number): trial}
    assert len(told) == 3 and {(t.study, t.number) for t in told} == set(stored)  # the failed trial is not told
    for timing in told:
        trial = stored[timing.study, timing.number]
        assert config_hash(timing.config) == trial.user_attrs[R.CONFIG_HASH]
        # fit's own wall time is inside the reported one; W&B's callbacks (offline) took part of it
        assert 0 < timing.tracking_seconds < timing.fit_seconds and timing.fit_seconds >= trial.user_attrs[R.WALL_TIME]


def test_a_second_claim_of_the_same_point_is_pruned_as_duplicate(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS))
    key, point = next(iter(sweep.by_hash.items()))
    first = sweep.ledger.claim(point.params, key)
    second = sweep.ledger.claim(point.params, key)
    assert first is not None and second is None
    (pruned,) = sweep.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned.user_attrs[DUPLICATE_OF] == first.number


def test_a_worker_whose_waiting_point_another_took_closes_the_stray_and_runs_what_still_waits(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS), extra=[ONE_TASK])
    (key_a, point_a), (key_b, point_b) = list(sweep.by_hash.items())[:2]
    sweep.study.enqueue_trial(dict(point_a.params), user_attrs={R.CONFIG_HASH: key_a})
    other = sweep.study.ask()  # another worker takes the waiting point first
    stray = sweep.ledger.claim(None, key_a)  # ask() finds nothing waiting: a fresh trial
    assert other.user_attrs[R.CONFIG_HASH] == key_a and stray is None
    (pruned,) = sweep.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned.user_attrs[STRAY] and R.CONFIG_HASH not in pruned.user_attrs
    # a point enqueued by a worker that died before asking waits; run() takes it over instead of leaving it
    sweep.study.enqueue_trial(dict(point_b.params), user_attrs={R.CONFIG_HASH: key_b})
    sweep.study.tell(other, 0.0)  # the other worker finished point a
    sweep.run()
    assert not sweep.study.get_trials(states=(TrialState.WAITING, TrialState.RUNNING))
    keys = [t.user_attrs[R.CONFIG_HASH] for t in complete(sweep.study)]
    assert sorted(keys) == sorted(sweep.by_hash)  # every point exactly once


def test_a_shared_baseline_trial_of_another_sweep_is_handed_back_to_it(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS))
    study = sweep.baseline_study
    study.enqueue_trial({"train.seed": 7}, user_attrs={R.CONFIG_HASH: "another-sweeps-hash"})
    assert sweep.baseline_ledger.claim(None, "unused") is None
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    assert waiting.system_attrs["fixed_params"] == {"train.seed": 7}  # what a waiting trial will be asked with
    assert waiting.user_attrs[R.CONFIG_HASH] == "another-sweeps-hash"
    assert study.get_trials(states=(TrialState.PRUNED,))[0].user_attrs[STRAY]


def test_trial_of_a_dead_worker_is_retried_and_each_point_completes_once(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS), extra=[ONE_TASK])
    key, point = next(iter(sweep.by_hash.items()))
    orphan = sweep.ledger.claim(point.params, key)
    orphan.set_user_attr(WORKER, f"{os.uname().nodename}:{2**22 + 12345}")  # a pid that does not exist
    sweep.run()
    keys = [t.user_attrs[R.CONFIG_HASH] for t in complete(sweep.study)]
    assert sorted(keys) == sorted(sweep.by_hash)
    assert sweep.study.get_trials()[orphan.number].state == TrialState.FAIL


def _run_cli(*args: str, storage: str, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sweeps",
            *args,
            "--storage",
            storage,
            "--runs-dir",
            str(tmp_path / "runs"),
            "--no-wandb",
            "--no-tables",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _postgres_url() -> str:
    url = os.environ.get("TSN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg2

        psycopg2.connect(url, connect_timeout=3).close()
    except Exception as err:  # noqa: BLE001
        reason = f"PostgreSQL not reachable at {url} ({type(err).__name__})"
        if os.environ.get("TSN_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; TSN_REQUIRE_SERVICES=1 requires it")
        pytest.skip(reason)
    return url


EXPERIMENT_FILES = sorted(
    p
    for p in [*(REPO / "experiments").glob("*.yaml"), *(REPO / "experiments" / "diagnosis").glob("*.yaml")]
    if p.name != "budgets.yaml"
)


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.stem)
def test_every_experiment_file_resolves_at_the_smoke_budget(path: Path) -> None:
    experiment = load_experiment(path)
    tiny = [o for o in TINY if o.split("=")[0] not in experiment.axes]  # an override would collapse its own axis
    points = experiment.grid("smoke", overrides=tiny, max_seeds=1)
    assert points and all(p.config.data.dataset == "synthetic" for p in points)
    assert len({config_hash(p.config) for p in points}) == len(points)


@pytest.mark.parametrize("name", ["embedding", "baselines", "schedule"])
def test_wandb_sweep_files_declare_the_same_grid_as_the_experiment_files(name: str) -> None:
    import yaml

    native = yaml.safe_load((REPO / "sweeps" / "wandb" / f"{name}.yaml").read_text())
    experiment = load_experiment(REPO / "experiments" / f"{name}.yaml")
    grid = {k: v["values"] for k, v in native["parameters"].items() if "values" in v}
    assert grid == dict(experiment.axes)
    assert native["method"] == "grid" and "${args_no_hyphens}" in native["command"]


def test_wandb_agent_entry_point_trains_one_tracked_run(tmp_path: Path) -> None:
    code = sweeps_main(
        [
            "trial",
            "--budget",
            "smoke",
            "--group",
            "embedding",
            "--runs-dir",
            str(tmp_path),
            *TINY,
            "model.encoding=gaussian",
            "model.embedding_dim=50",
        ]
    )
    assert code == 0
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    logged = read_offline_run(run_dir)
    assert logged["config"]["model"]["encoding"] == "gaussian" and logged["run"]["group"] == "embedding"
    assert "mean_val_loss" in logged["summary"] and "final/semseg" in logged["summary"]


# ------------------------------------------------------------------------------------------------ study names
@pytest.mark.parametrize(
    "experiment, dataset",
    [
        ("embedding", "synthetic"),
        ("task-embedding-v2", "pascal_context"),
        ("baselines", "nyud"),
        (R.SHARED_BASELINES, "synthetic"),
    ],
)
def test_a_study_name_parses_back_into_its_parts_hyphens_in_the_experiment_included(experiment, dataset) -> None:
    name = R.study_name(experiment, dataset, "smoke")
    assert R.parse_study_name(name) == (experiment, dataset, "smoke")


@pytest.mark.parametrize(
    "name",
    [
        "embedding",
        "embedding-synthetic",
        "-synthetic-cpu",
        "_x-synthetic-cpu",
        "embedding-synthetic-",
        "a b-synthetic-cpu",
    ],
)
def test_a_name_that_no_study_can_have_is_a_one_line_error(name: str) -> None:
    with pytest.raises(ValueError, match=f"study name {name!r} is not of the form experiment-dataset-budget"):
        R.parse_study_name(name)


@pytest.mark.parametrize("name", ["_single_task", "_mine", "-x", "a.b", "", 3])
def test_experiment_names_outside_the_pattern_are_rejected_and_the_shared_study_name_is_reserved(
    tmp_path: Path, name
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: {name!r}\naxes: {{nuisance: {{train.seed: [1]}}}}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: name must be letters, digits, '-' or '_', not starting with '_'"):
        load_experiment(path)


def test_a_hyphenated_experiment_is_stored_under_a_name_that_parses_back(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS, name="my-ablation"), extra=["train.epochs=1"])
    assert sweep.study_name == "my-ablation-synthetic-smoke"
    assert R.parse_study_name(sweep.study_name) == ("my-ablation", "synthetic", "smoke")


def test_table_1_and_the_shared_baseline_study_coexist_on_one_storage(tmp_path: Path) -> None:
    """Table 1's experiment is named ``baselines``: its study and the shared single-task study are two studies."""
    axes = "  scientific:\n    model.architecture: [single_task, tsn]\n  nuisance:\n    train.seed: [1337]\n"
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, axes, name="baselines", fixed="{}"), extra=[ONE_TASK])
    assert sweep.run() == {"complete": 2}
    names = optuna.get_all_study_names(open_storage(f"sqlite:///{tmp_path / 'studies.db'}"))
    assert sorted(names) == [SHARED, "baselines-synthetic-smoke"]
    (baseline,) = complete(sweep.baseline_study)
    assert baseline.params == {"train.seed": 1337} and baseline.user_attrs[R.EXPERIMENT] == R.SHARED_BASELINES
    arch = {t.params["model.architecture"]: t for t in complete(sweep.study)}
    assert sorted(arch) == ["single_task", "tsn"]
    assert arch["tsn"].user_attrs[R.BASELINE_RUNS][0]["study"] == SHARED


def test_a_shared_baseline_study_under_its_old_name_is_renamed_when_a_sweep_opens_the_storage(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    legacy = optuna.create_study(study_name="baselines-synthetic-smoke", storage=storage)
    dist = {SEED_KEY: optuna.distributions.IntDistribution(0, 2**31 - 1)}
    legacy.add_trial(
        optuna.trial.create_trial(
            params={SEED_KEY: 1337},
            distributions=dist,
            value=0.0,
            user_attrs={R.CONFIG_HASH: "old", R.PRIMARY: {"semseg": 1.0}},
        )
    )
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS), storage)
    assert sorted(optuna.get_all_study_names(open_storage(storage))) == [SHARED, "mini-synthetic-smoke"]
    (moved,) = sweep.baseline_study.get_trials()
    assert moved.params == {SEED_KEY: 1337} and moved.user_attrs == {R.CONFIG_HASH: "old", R.PRIMARY: {"semseg": 1.0}}
    assert moved.state == TrialState.COMPLETE and moved.number == 0


def test_table_1_on_a_storage_with_both_baseline_names_stops_in_one_line(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    for name in ("baselines-synthetic-smoke", SHARED):
        optuna.create_study(study_name=name, storage=storage)
    axes = "  scientific:\n    model.architecture: [tsn]\n  nuisance:\n    train.seed: [1337]\n"
    with pytest.raises(ValueError, match="study baselines-synthetic-smoke in .* is an old shared baseline study"):
        make_sweep(tmp_path, write_experiment(tmp_path, axes, name="baselines", fixed="{}"), storage)
