"""W&B workspaces as code and the studies' optuna-dashboard notes: built offline from the experiment files, checked
against their axes and the task registry; nothing is ever uploaded (saving is replaced by a failure)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import wandb
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from optuna_dashboard import get_note, save_note
from wandb_workspaces import expr

from sweeps import workspace as W
from sweeps.__main__ import main as sweeps_main
from sweeps.driver import Sweep
from sweeps.experiment import experiment_files, load_experiment
from sweeps.notes import GENERATED, study_note, write_study_note
from sweeps.tracking import TrackingConfig
from tsn.tasks import DATASETS, dataset_tasks

TRAINED = [p for p in experiment_files() if load_experiment(p).train]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches W&B: offline mode, and uploading or opening the API fails the test."""
    monkeypatch.setenv("WANDB_MODE", "offline")

    def forbidden(*args, **kwargs):
        raise AssertionError("a test tried to reach W&B")

    monkeypatch.setattr(ws.Workspace, "save", forbidden)
    monkeypatch.setattr(wandb, "Api", forbidden)


def panels(workspace: ws.Workspace, section: str | None = None, kind: type | None = None) -> list:
    return [
        p
        for s in workspace.sections
        if section in (None, s.name)
        for p in s.panels
        if kind is None or isinstance(p, kind)
    ]


def keys(metrics) -> list[str]:
    return [W._key(m) for m in metrics]


def test_every_training_experiment_file_is_covered() -> None:
    names = {load_experiment(p).name for p in TRAINED}
    assert {"baselines", "embedding", "convergence", "schedule", "conditioning", "encoder", "switching"} <= names
    assert "scaling" not in names  # train: false, no W&B runs
    assert set(W.trained_experiments()) == names


@pytest.mark.parametrize("path", TRAINED, ids=lambda p: p.stem)
def test_workspace_panels_follow_the_experiment_axes(path: Path) -> None:
    experiment = load_experiment(path)
    workspace = W.build_workspace(experiment, "my-team", "tsn-ablations", budget="cpu")
    study = experiment.study_name("synthetic", "cpu")
    tasks = dataset_tasks("synthetic").names
    scientific = list(experiment.scientific)

    # The runs: this study's W&B group, grouped by the scientific axes (a group = a grid point over its seeds).
    [selected] = expr.string_to_filterexpr_list(workspace.runset_settings.filters)
    assert (selected.key, selected.op, selected.value) == (expr.Metric("Group"), "=", study)
    groups = [g.name for g in workspace.runset_settings.groupby]
    assert sorted(groups) == sorted(scientific)
    if W.ENCODING in scientific:
        assert groups[0] == W.ENCODING

    # A search's sampled keys beside its axes (log where the range is); its objective is the trial's own.
    searched = [p.key for p in experiment.search.space] if experiment.search else []
    goal = "delta_m" if experiment.baseline == "single_task" else "mean_val_loss"
    [parallel] = panels(workspace, kind=wr.ParallelCoordinatesPlot)
    assert keys(c.metric for c in parallel.columns) == [f"config:{a}" for a in scientific + searched] + [
        f"summary:{goal}"
    ]
    assert [c.log for c in parallel.columns[len(scientific) : -1]] == [
        p.log or None for p in (experiment.search.space if experiment.search else ())
    ]

    versus_d = [p for p in panels(workspace, kind=wr.ScatterPlot) if p.x == wr.Config(W.EMBEDDING_DIM)]
    assert len(versus_d) == (W.EMBEDDING_DIM in scientific)
    for panel in versus_d:
        assert panel.y == wr.SummaryMetric(goal)
        assert "by encoding" in panel.title and groups[0] == W.ENCODING

    architecture = wr.Config(W.ARCHITECTURE) if W.ARCHITECTURE in scientific else None
    final = panels(workspace, "Per-task metrics", wr.BarPlot)
    assert [keys(p.metrics) for p in final] == [[f"summary:final/{t}"] for t in tasks]
    curves = panels(workspace, "Convergence", wr.LinePlot)
    delta_m_curve = [["val/delta_m"]] if goal == "delta_m" else []  # no per-epoch objective without a baseline
    assert [keys(p.y) for p in curves] == [[f"val/{t}"] for t in tasks] + delta_m_curve
    assert {p.groupby for p in final + curves} == {architecture}
    assert all(p.groupby_aggfunc == "mean" and p.groupby_rangefunc == "stddev" for p in final + curves)

    [about] = panels(workspace, "About", wr.MarkdownPanel)
    assert experiment.description in about.markdown and f"reports/{study}.md" in about.markdown
    workspace._to_model()  # the W&B spec it would upload serialises offline (pydantic validation of every panel)


def test_architecture_axis_groups_the_convergence_curves() -> None:
    workspace = W.build_workspace(load_experiment("experiments/convergence.yaml"), "e", "p", budget="cpu")
    curves = panels(workspace, "Convergence", wr.LinePlot)
    assert curves and all(p.groupby == wr.Config("model.architecture") for p in curves)
    embedding = W.build_workspace(load_experiment("experiments/embedding.yaml"), "e", "p", budget="cpu")
    assert all(p.groupby is None for p in panels(embedding, "Convergence"))  # the runs table's groups instead


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_one_metric_panel_per_task_of_the_dataset(dataset: str) -> None:
    workspace = W.build_workspace(load_experiment("experiments/baselines.yaml"), "e", "p", dataset, "cpu")
    names = dataset_tasks(dataset).names
    assert [keys(p.metrics) for p in panels(workspace, "Per-task metrics")] == [[f"summary:final/{t}"] for t in names]
    higher = {t.name: t.higher_is_better for t in dataset_tasks(dataset).tasks}
    for panel, task in zip(panels(workspace, "Per-task metrics"), names):
        assert ("higher is better" if higher[task] else "lower is better") in panel.title
    assert workspace.name == f"TSN baselines-{dataset}-cpu"


def test_without_a_baseline_the_objective_is_the_mean_validation_loss(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text("name: plain\naxes:\n  scientific:\n    model.embedding_dim: [50, 100]\nbaseline: none\n")
    workspace = W.build_workspace(load_experiment(path), "e", "p", budget="smoke")
    [parallel] = panels(workspace, kind=wr.ParallelCoordinatesPlot)
    assert keys(c.metric for c in parallel.columns) == ["config:model.embedding_dim", "summary:mean_val_loss"]
    [versus_d] = panels(workspace, kind=wr.ScatterPlot)
    assert versus_d.y == wr.SummaryMetric("mean_val_loss") and "by encoding" not in versus_d.title
    assert "val/delta_m" not in [k for p in panels(workspace, "Convergence") for k in keys(p.y)]


def test_dry_run_prints_one_line_per_panel(capsys: pytest.CaptureFixture[str]) -> None:
    assert sweeps_main(["wandb-workspace", "my-team/tsn-ablations", "--experiment", "embedding", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    workspace = W.build_workspace(load_experiment("experiments/embedding.yaml"), "my-team", "tsn-ablations")
    assert lines[0].startswith("workspace 'TSN embedding-synthetic-cpu' in my-team/tsn-ablations")
    assert "grouped by config:model.encoding, config:model.embedding_dim" in lines[0]
    assert len(lines) == 1 + len(panels(workspace))
    assert any("ScatterPlot" in line and "x=config:model.embedding_dim" in line for line in lines)
    assert any(
        "ParallelCoordinatesPlot" in line
        and "columns=config:model.encoding,config:model.embedding_dim,summary:delta_m" in line
        for line in lines
    )


def test_dry_run_without_experiment_builds_every_training_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert sweeps_main(["wandb-workspace", "e/p", "--budget", "smoke", "--dry-run"]) == 0
    headers = [line for line in capsys.readouterr().out.splitlines() if line.startswith("workspace ")]
    expected = sorted(f"TSN {name}-synthetic-smoke" for name in W.trained_experiments())
    assert sorted(h.split("'")[1] for h in headers) == expected


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["no-slash"], "ENTITY/PROJECT"),
        (["a/b/c"], "'a/b/c'"),
        (["team/"], "'team/'"),
        (["e/p", "--experiment", "nope"], "'nope'"),
        (["e/p", "--experiment", "scaling"], "'scaling'"),
        (["e/p", "--budget", "nope"], "'nope'"),
        (["e/p", "--dataset", "nope"], "'nope'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], culprit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweeps_main(["wandb-workspace", *args, "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error:") and culprit in line
    assert "valid" in line or "e.g." in line  # and what would be valid
    if "--experiment" in args:
        assert "embedding" in line and "baselines" in line  # the valid names are listed


def test_saving_without_credentials_says_wandb_login(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(W, "has_credentials", lambda: False)
    assert sweeps_main(["wandb-workspace", "e/p", "--experiment", "embedding"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "wandb login" in line


def test_a_wandb_auth_error_while_saving_says_wandb_login(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(self):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.\nmore")

    monkeypatch.setattr(W, "has_credentials", lambda: True)
    monkeypatch.setattr(ws.Workspace, "save", refused)
    workspace = W.build_workspace(load_experiment("experiments/embedding.yaml"), "e", "p")
    with pytest.raises(W.CredentialsError, match="run `wandb login`") as err:
        W.save(workspace)
    assert "\n" not in str(err.value)


def test_save_uploads_every_workspace_once_and_prints_its_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    saved: list[str] = []
    monkeypatch.setattr(W, "has_credentials", lambda: True)
    monkeypatch.setattr(ws.Workspace, "save", lambda self: saved.append(self.name) or self)
    monkeypatch.setattr(ws.Workspace, "url", property(lambda self: f"https://wandb.example/{self.name}"))
    args = ["wandb-workspace", "e/p", "--experiment", "embedding", "--experiment", "baselines"]
    assert sweeps_main(args) == 0
    assert saved == ["TSN embedding-synthetic-cpu", "TSN baselines-synthetic-cpu"]
    first = capsys.readouterr().out.splitlines()[0]
    assert first == "TSN embedding-synthetic-cpu: https://wandb.example/TSN embedding-synthetic-cpu"


# ------------------------------------------------------------------------------------------------ study notes
def in_memory_study(storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    storage = storage or optuna.storages.InMemoryStorage()
    return optuna.create_study(study_name="embedding-synthetic-smoke", storage=storage)


def test_study_note_names_the_experiment_axes_budget_and_table() -> None:
    experiment = load_experiment("experiments/embedding.yaml")
    study = in_memory_study()
    assert write_study_note(study, experiment, "synthetic", "smoke")
    note = get_note(study)
    for text in (
        experiment.description,
        experiment.reproduces,
        "`model.encoding` ∈ {orthogonal, gaussian}",
        "`model.embedding_dim` ∈ {10, 50, 100, 150, 250}",
        "`train.seed` ∈ {1337, 1338, 1339}",
        "caps the seeds at 1",
        "synthetic / smoke",
        "`reports/embedding-synthetic-smoke.md`",
        "`make tables`",
        "`experiments/embedding.yaml`",
        "_single_task-synthetic-smoke",
        GENERATED,
    ):
        assert text in note
    assert note.startswith("## embedding: ")


def test_study_note_is_written_once_and_a_hand_edited_one_is_kept() -> None:
    experiment = load_experiment("experiments/embedding.yaml")
    storage = optuna.storages.InMemoryStorage()
    study = in_memory_study(storage)
    assert write_study_note(study, experiment, "synthetic", "smoke")
    assert not write_study_note(study, experiment, "synthetic", "smoke")  # unchanged: no new note version
    assert storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))["dashboard:note_ver"] == 1
    assert write_study_note(study, experiment, "synthetic", "cpu")  # a stale generated note is rewritten
    assert "synthetic / cpu" in get_note(study)
    save_note(study, "my own conclusions")
    assert not write_study_note(study, experiment, "synthetic", "smoke")
    assert get_note(study) == "my own conclusions"


def test_the_workspace_about_panel_is_the_study_note_without_the_dashboard_marker() -> None:
    experiment = load_experiment("experiments/schedule.yaml")
    [about] = panels(W.build_workspace(experiment, "e", "p", budget="smoke"), "About")
    assert about.markdown == study_note(experiment, "synthetic", "smoke") and GENERATED not in about.markdown


def test_opening_a_sweep_writes_its_study_note(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    experiment = load_experiment("experiments/schedule.yaml")
    Sweep(
        experiment,
        "smoke",
        storage,
        runs_dir=tmp_path / "runs",
        log=lambda line: None,
        tracking=TrackingConfig(enabled=False),
    )
    study = optuna.load_study(study_name="schedule-synthetic-smoke", storage=storage)
    note = get_note(study)  # what optuna-dashboard reads from the storage
    assert experiment.description in note and "`reports/schedule-synthetic-smoke.md`" in note
    assert "`train.schedule` ∈ {epoch, batch, joint}" in note


def test_learning_rate_axes_use_a_log_scale_and_panels_show_every_run() -> None:
    workspace = W.build_workspace(load_experiment("experiments/diagnosis/encoder.yaml"), "e", "p", budget="cpu")
    [parallel] = panels(workspace, kind=wr.ParallelCoordinatesPlot)
    assert {W._key(c.metric): c.log for c in parallel.columns} == {
        "config:model.pretrained": None,
        "config:train.lr_encoder": True,
        "summary:delta_m": None,
    }
    assert workspace.settings.max_runs == 2 * 2 * 3  # the grid: pretrained x lr_encoder x 3 seeds
    embedding = load_experiment("experiments/embedding.yaml")
    assert (W.n_runs(embedding, "cpu"), W.n_runs(embedding, "smoke")) == (30, 10)  # smoke runs the first seed only
    search = load_experiment("experiments/lr_search.yaml")  # 5 architectures x 12 sampled (smoke: 2)
    assert (W.n_runs(search, "cpu"), W.n_runs(search, "smoke")) == (60, 10)
