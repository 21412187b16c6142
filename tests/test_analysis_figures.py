"""analysis/figures.py: every figure is written as a non-empty PNG and PDF with a caption, from stored studies and
from a real (tiny) trained TSN checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from test_analysis_fixtures import BASELINES, EMBEDDING, build_storage

from analysis import figures, make_tables, tables
from analysis.runs import load_study
from tsn.checkpoint import save_checkpoint
from tsn.config import resolve
from tsn.models import build_model
from tsn.tasks import dataset_tasks
from tsn.train import Trainer

SMOKE = ["data.train_samples=16", "data.val_samples=8", "train.batch_size=8", "train.epochs=1", "train.progress=false"]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A TSN trained for one epoch by the real trainer, and an untrained task_in saved in the trainer's format."""
    root = tmp_path_factory.mktemp("runs")
    cfg = resolve("smoke", overrides=SMOKE)
    Trainer(cfg, root / "tsn").fit()
    task_in = resolve("smoke", overrides=[*SMOKE, "model.architecture=task_in"])
    torch.manual_seed(0)
    model = build_model(task_in.model, dataset_tasks(task_in.data.dataset, task_in.data.tasks))
    save_checkpoint(
        root / "task_in" / "checkpoint.pt", {"model": model.state_dict(), "config": task_in.to_dict(), "epoch": 1}
    )
    return {"tsn": str(root / "tsn"), "task_in": str(root / "task_in")}


def assert_written(paths: list[Path]) -> None:
    assert [p.suffix for p in paths] == [".png", ".pdf", ".md"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"


def test_scaling_figure(tmp_path: Path) -> None:
    counts = pd.DataFrame({1: [18.3e6, 17.7e6], 2: [18.3e6, 35.4e6]}, index=["tsn", "single_task"])
    params = tables.Table(
        "scaling-params-synthetic-smoke",
        "Parameters",
        ["architecture"],
        [tables.Column(t, f"T={t}") for t in counts.columns],
        counts,
        counts * float("nan"),
    )
    paths = figures.scaling_figure(params, tmp_path)
    assert_written(paths)
    assert "log scale" in paths[2].read_text()


def test_delta_m_vs_d_and_convergence_figures(tmp_path: Path) -> None:
    storage = build_storage(tmp_path, resolve("smoke").to_dict())
    base = load_study(BASELINES, storage)
    _, trials = tables.ablation_table(load_study(EMBEDDING, storage), base)
    paths = figures.delta_m_vs_d_figure(trials, tmp_path / "fig", EMBEDDING)
    assert_written(paths)
    assert "standard deviation (sd) over seeds" in paths[2].read_text()
    _, table1 = tables.ablation_table(base, base)
    refs = tables.references(table1, tables.single_task_trials(base))
    assert_written(
        figures.convergence_figure(base.history, refs, {"semseg": True, "normals": False}, tmp_path / "fig", BASELINES)
    )
    long = figures.convergence_frame(
        base.history[base.history["architecture"] == "tsn"], refs, {"semseg": True, "normals": False}
    )
    assert set(long["quantity"]) == {"Δm %", "semseg", "normals"}


def test_checkpoint_figures_from_a_trained_tsn(run_dirs: dict[str, str], tmp_path: Path) -> None:
    paths = figures.embedding_similarity_figure(run_dirs["tsn"], tmp_path, "run")
    assert_written(paths)
    assert "dendrogram" in paths[2].read_text()
    assert_written(figures.qualitative_figure(run_dirs, tmp_path, "run", n=2))


def test_cli_writes_every_figure(run_dirs: dict[str, str], tmp_path: Path) -> None:
    # The stored trials point at the trained checkpoints but keep the fixture's two-task metrics.
    storage = build_storage(tmp_path, resolve("smoke").to_dict(), run_dirs)
    out = tmp_path / "reports"
    assert make_tables.main(["--storage", storage, "--out", str(out), "--study", BASELINES, EMBEDDING]) == 0
    names = {p.name for p in (out / "figures").iterdir()}
    for stem in (
        f"{EMBEDDING}-delta-m-vs-d",
        f"{BASELINES}-convergence",
        f"{BASELINES}-embedding-similarity",
        f"{BASELINES}-qualitative",
    ):
        assert {f"{stem}.png", f"{stem}.pdf", f"{stem}.md"} <= names


def test_checkpoint_figures_wait_for_runs_on_this_machine(tmp_path: Path, capsys) -> None:
    """Trials whose run folders stayed on another machine (a sweep run in pieces), or hold here an unfinished run of
    the same configuration, draw no checkpoint figure and raise no warning; every other figure is drawn."""
    elsewhere = {arch: str(tmp_path / "gone" / arch) for arch in ("tsn", "task_in", "single_task")}
    unfinished = tmp_path / "gone" / "tsn"  # an interrupted run here: a checkpoint, no metrics.json
    unfinished.mkdir(parents=True)
    (unfinished / "checkpoint.pt").write_bytes(b"epoch 3 of 24")
    storage = build_storage(tmp_path, resolve("smoke").to_dict(), elsewhere)
    out = tmp_path / "reports"
    assert make_tables.main(["--storage", storage, "--out", str(out), "--study", BASELINES]) == 0
    names = {p.name for p in (out / "figures").iterdir()}
    assert f"{BASELINES}-convergence.png" in names and not any("similarity" in n or "qualitative" in n for n in names)
    assert "skipped" not in capsys.readouterr().err
