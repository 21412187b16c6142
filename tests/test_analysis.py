"""analysis/: stored studies -> frames -> tables (md/tex/csv) and figures, checked on hand-made studies."""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
from test_analysis_fixtures import (
    BASELINE_VALUES,
    BASELINES,
    EMBEDDING,
    FAILED,
    SHARED,
    build_storage,
    metrics_attrs,
    point_config,
)

import analysis.runs as runs
from analysis import make_tables, seed_noise, tables
from analysis.runs import AnalysisError, load_study, wandb_records
from sweeps import records as R
from sweeps.tracking import WandbRun, flatten_record
from tsn.config import resolve


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Read-only for the tests that share it (the cache test mutates its own copy)."""
    return build_storage(tmp_path_factory.mktemp("storage"), resolve("smoke").to_dict())


def baseline_table(storage: str, tmp_path: Path) -> tables.Table:
    base = load_study(BASELINES, storage)
    table, _ = tables.ablation_table(base, base)
    return table


# ------------------------------------------------------------------------------------------------ frames
def test_frame_has_one_row_per_trial_task_metric_and_keeps_failed_trials(storage: str) -> None:
    data = load_study(EMBEDDING, storage)
    frame = data.metrics
    assert len(frame) == 6 * 2 * 2 + 1  # 6 finished × 2 tasks × 2 metrics + 1 row for the failed trial
    failed = frame[frame["state"] == "FAIL"]
    assert failed["fail_reason"].tolist() == [FAILED[1]] and failed["task"].isna().all()
    assert set(frame.columns) >= {"config_hash", "git_commit", "trial", "state", "encoding", "d", "seed", "convention"}
    row = frame[
        (frame["encoding"] == "orthogonal") & (frame["d"] == 10) & (frame["seed"] == 1) & (frame["metric"] == "miou")
    ]
    assert row["value"].tolist() == [45.0] and row["primary"].tolist() == [True]
    assert len(data.history) == 6 * 2 * 2  # trials × epochs × tasks


def test_missing_grid_points_are_the_unfinished_ones(storage: str) -> None:
    missing = load_study(EMBEDDING, storage).missing_points()
    assert sorted((p["model.encoding"], p["model.embedding_dim"], p["train.seed"]) for p in missing) == [
        ("gaussian", 20, 1),
        ("orthogonal", 20, 1),
    ]


def test_unknown_study_names_the_valid_ones(storage: str) -> None:
    with pytest.raises(AnalysisError, match=f"valid: {SHARED}, {BASELINES}, {EMBEDDING}"):
        load_study("nope-synthetic-smoke", storage)


def test_zero_finished_trials_is_an_error(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="embedding-synthetic-smoke", storage=storage)
    with pytest.raises(AnalysisError, match="no finished trials"):
        tables.ablation_table(load_study("embedding-synthetic-smoke", storage), None)


def test_cache_converts_only_new_or_changed_trials(tmp_path: Path, monkeypatch) -> None:
    storage = build_storage(tmp_path, resolve("smoke").to_dict())
    calls: list[int] = []
    convert = runs.record_rows
    monkeypatch.setattr(runs, "record_rows", lambda r: calls.append(r.number) or convert(r))
    first = load_study(EMBEDDING, storage, tmp_path / "cache")
    assert len(calls) == 7
    second = load_study(EMBEDDING, storage, tmp_path / "cache")
    assert len(calls) == 7
    pd.testing.assert_frame_equal(first.metrics, second.metrics)
    study = optuna.load_study(study_name=EMBEDDING, storage=storage)
    trial = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            params={**trial.params, "train.seed": 1, "model.embedding_dim": 20},
            distributions=trial.distributions,
            value=0.0,
            user_attrs=trial.user_attrs,
        )
    )
    third = load_study(EMBEDDING, storage, tmp_path / "cache")
    assert calls[7:] == [7] and len(third.metrics) == len(first.metrics) + 4


class FakeSummary(dict):
    """What ``sweeps.tracking.WandbRun.log_summary`` writes into: a run whose summary is a dict."""

    def __init__(self) -> None:
        super().__init__()
        self.summary = self


def fake_runs(storage: str, study_name: str) -> list[SimpleNamespace]:
    """The study's trials as W&B run objects shaped like the API's, holding what ``sweeps.tracking`` logs."""
    out = []
    for t in optuna.load_study(study_name=study_name, storage=storage).trials:
        attrs = t.user_attrs
        logger = WandbRun.__new__(WandbRun)
        logger.run = FakeSummary()
        if t.state.name == "COMPLETE":
            logger.log_summary(
                {
                    "primary": attrs[R.PRIMARY],
                    "metrics": attrs[R.METRICS],
                    "params": attrs[R.PARAMS],
                    "macs": attrs[R.MACS],
                    "wall_time_s": attrs[R.WALL_TIME],
                    "mean_val_loss": 1.0,
                    "delta_m": {"value": attrs[R.DELTA_M], "convention": "astmt"},
                }
            )
            assert logger.run is not None, "sweeps.tracking.log_summary rejected the summary"
        summary = {
            **logger.run,
            "_timestamp": 1.0,
            **({"fail_reason": attrs[R.FAIL_REASON]} if R.FAIL_REASON in attrs else {}),
        }
        rows = [{"_step": h["epoch"], **flatten_record(h)} for h in attrs.get(R.HISTORY, [])]
        out.append(
            SimpleNamespace(
                id=f"run{t.number}",
                name=f"{study_name}-{t.number}",
                group=study_name,
                state="finished" if t.state.name == "COMPLETE" else "failed",
                config={**attrs[R.CONFIG], "config_hash": attrs.get(R.CONFIG_HASH)},
                summary=summary,
                scan_history=lambda rows=rows: iter(rows),
            )
        )
    return out


def test_wandb_reader_gives_the_optuna_frame(storage: str) -> None:
    from_optuna = load_study(EMBEDDING, storage)
    records, space = wandb_records(fake_runs(storage, EMBEDDING))
    from_wandb = runs.build_study(EMBEDDING, records, space)
    not_in_wandb = ["wandb_run_id", "git_commit", "run_dir", "convention"]  # W&B does not hold them
    pd.testing.assert_frame_equal(
        from_optuna.metrics.drop(columns=not_in_wandb), from_wandb.metrics.drop(columns=not_in_wandb)
    )
    pd.testing.assert_frame_equal(from_optuna.history, from_wandb.history)
    assert from_wandb.missing_points() == from_optuna.missing_points()


def test_wandb_source_queries_the_study_group_and_caches(storage: str, tmp_path: Path, monkeypatch) -> None:
    import wandb

    queries = []
    api = SimpleNamespace(runs=lambda path, filters: queries.append((path, filters)) or fake_runs(storage, EMBEDDING))
    monkeypatch.setattr(wandb, "Api", lambda: api)
    data = load_study(EMBEDDING, cache_dir=tmp_path, source="wandb", wandb_path="me/tsn")
    assert queries == [("me/tsn", {"group": EMBEDDING})]
    assert len(data.metrics) == 25 and list((tmp_path / "wandb").glob(f"{EMBEDDING}.*.parquet"))


# ------------------------------------------------------------------------------------------------ tables
def test_delta_m_per_seed_matches_a_hand_computation(storage: str) -> None:
    base = load_study(BASELINES, storage)
    trials = tables.add_delta_m(tables.per_trial(base), tables.single_task_trials(base))
    by_seed = trials.set_index(["architecture", "seed"])
    # reference = the single-task seed mean: semseg (40 + 44)/2 = 42, normals (19 + 22)/2 = 20.5
    # tsn seed 0: semseg 50 vs 42 -> +19.048 %; normals 20 vs 20.5 (lower is better) -> +2.439 %; Δm = -(sum)/2
    assert by_seed.loc[("tsn", 0), "delta_m"] == pytest.approx(-(800 / 42 + 50 / 20.5) / 2)
    # task_in seed 1: semseg 42 vs 42 -> 0; normals 23 vs 20.5 -> -12.195 %; Δm = +6.098
    assert by_seed.loc[("task_in", 1), "delta_m"] == pytest.approx(250 / 20.5 / 2)
    # the single-task runs themselves scatter around their own mean: Δm = ±1.278, mean 0
    assert by_seed.loc[("single_task", 0), "delta_m"] == pytest.approx(-by_seed.loc[("single_task", 1), "delta_m"])
    assert by_seed.loc[("single_task", 1), "delta_m"] == pytest.approx(-(200 / 42 - 150 / 20.5) / 2)
    # against the same seed's single-task run (what a trial stores): seed 0, 50 vs 40 -> +25 %, 20 vs 19 -> -5.263 %
    assert by_seed.loc[("tsn", 0), "delta_m_seed"] == pytest.approx(-(25.0 - 100 / 19) / 2)
    assert by_seed.loc[("tsn", 1), "delta_m_seed"] == pytest.approx(0.0)  # identical to the seed-1 baseline
    assert by_seed["reference_seeds"].tolist() == [2] * 6


def test_references_pool_the_seeds_of_one_single_task_configuration_only(storage: str) -> None:
    """A second single-task configuration (another learning-rate schedule) is a reference of its own."""
    base = tables.single_task_trials(load_study(BASELINES, storage))
    other = base.assign(
        trial=base["trial"] + 100,
        config_hash=base["config_hash"] + "-cosine",
        config=base["config"].str.replace('"lr_schedule": "plateau"', '"lr_schedule": "cosine"'),
        semseg=[10.0, 30.0],
    )
    assert (other["config"] != base["config"]).all()
    pool = pd.concat([base, other])
    pool = pool.assign(family=[tables.seedless(c, h) for c, h in zip(pool["config"], pool["config_hash"])])
    trials = pd.DataFrame(
        {
            "trial": [7, 8, 9],
            "seed": [0, 1, 1],
            "baseline_config_hash": [other["config_hash"].iloc[0], pd.NA, pd.NA],
            "config_hash": ["tsn", "tsn", base["config_hash"].iloc[1]],
        }
    )
    trials.attrs.update(tasks=["semseg", "normals"], higher_is_better={"semseg": True, "normals": False})
    refs = tables.references(trials, pool)
    assert refs.loc[7, "semseg"] == pytest.approx(20.0) and refs.loc[7, "normals"] == pytest.approx(20.5)
    # its runs' Δm against it: ∓(50 − 7.317)/2 (semseg 10 / 30 vs 20, normals 19 / 22 vs 20.5); sd √2 times that
    assert refs.loc[7, "reference_spread"] == pytest.approx(math.sqrt(2) * (50 - 150 / 20.5) / 2)
    assert (
        refs.loc[7, "reference_trials"] == tuple(other["trial"])
        and refs.loc[7, "baseline_trial"] == other["trial"].iloc[0]
    )
    # stored without a baseline hash: the latest single-task trial of its seed, and that trial's configuration
    assert refs.loc[8, "baseline_trial"] == other["trial"].iloc[1] and refs.loc[8, "semseg"] == pytest.approx(20.0)
    # a single-task trial stored without one is its own configuration's run, not the latest of its seed
    assert refs.loc[9, "baseline_trial"] == base["trial"].iloc[1]
    assert refs.loc[9, "reference_trials"] == tuple(base["trial"])


def test_task_terms_sum_to_each_trials_delta_m(storage: str) -> None:
    base = tables.single_task_trials(load_study(BASELINES, storage))
    trials = tables.add_delta_m(tables.per_trial(load_study(EMBEDDING, storage)), base)
    terms = seed_noise.task_terms(trials, base)
    assert list(terms) == trials.attrs["tasks"] and terms.notna().all().all()
    assert terms.sum(axis=1).to_numpy() == pytest.approx(trials["delta_m"].to_numpy(), abs=1e-9)
    assert terms.std().gt(0).all()  # every task moves Δm here


def test_recomputed_delta_m_agrees_with_the_stored_one(storage: str) -> None:
    base = load_study(BASELINES, storage)
    for study in (base, load_study(EMBEDDING, storage)):
        trials = tables.add_delta_m(tables.per_trial(study), tables.single_task_trials(base))
        assert trials["delta_m_seed"].tolist() == pytest.approx(trials["delta_m_stored"].tolist())


def test_shared_baselines_with_only_a_seed_param_join_the_architecture_grid(tmp_path: Path) -> None:
    """Sweeps of other experiments add single-task trials to baselines-* with params {train.seed} only."""
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    study = optuna.create_study(study_name=BASELINES, storage=storage)
    config = resolve("smoke").to_dict()
    for (arch, seed), (seg, nor) in BASELINE_VALUES.items():
        params = {"train.seed": seed} if arch == "single_task" else {"model.architecture": arch, "train.seed": seed}
        dists = (
            {"train.seed": optuna.distributions.IntDistribution(0, 2**31 - 1)}
            if arch == "single_task"
            else {
                "model.architecture": optuna.distributions.CategoricalDistribution(["task_in", "tsn"]),
                "train.seed": optuna.distributions.IntDistribution(0, 2**31 - 1),
            }
        )
        info = {
            "experiment": "baselines",
            "architecture": arch,
            "n_params": 1,
            "config": point_config(config, {"model.architecture": arch, "train.seed": seed}),
        }
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=0.0, user_attrs=metrics_attrs(seg, nor, seed, info)
            )
        )
    data = load_study(BASELINES, storage)
    assert data.missing_points() == []
    table, _ = tables.ablation_table(data, data)
    assert list(table.mean.index) == ["single_task", "task_in", "tsn"] and table.n.tolist() == [2, 2, 2]
    # a single-task configuration that ran twice (the same config hash) is one row of its table, the latest run
    (seed, (seg, nor)) = next((s, v) for (a, s), v in BASELINE_VALUES.items() if a == "single_task")
    twin_config = point_config(config, {"model.architecture": "single_task", "train.seed": seed})
    info = {"experiment": "baselines", "architecture": "single_task", "n_params": 1, "config": twin_config}
    twin = metrics_attrs(seg + 4.0, nor, seed, info)
    study.add_trial(
        optuna.trial.create_trial(
            params={"train.seed": seed},
            distributions={"train.seed": optuna.distributions.IntDistribution(0, 2**31 - 1)},
            value=0.0,
            user_attrs=twin,
        )
    )
    table, trials = tables.ablation_table(load_study(BASELINES, storage), load_study(BASELINES, storage))
    assert table.n.tolist() == [2, 2, 2] and len(trials) == 6
    assert (seg + 4.0) in trials.loc[trials["architecture"] == "single_task", "semseg"].tolist()


def test_baseline_table_rows_columns_n_and_mean_std(storage: str, tmp_path: Path) -> None:
    table = baseline_table(storage, tmp_path)
    assert list(table.mean.index) == ["single_task", "task_in", "tsn"]  # the paper's order
    assert [c.key for c in table.columns] == ["semseg", "normals", "delta_m", "n_params"]
    assert table.n.tolist() == [2, 2, 2]
    md = tables.to_markdown(table)
    assert "| tsn | **47.00 ± 4.24** | 21.00 ± 1.41 |" in md  # semseg (50, 44): mean 47, sd 4.243
    assert "| single_task | 42.00 ± 2.83 | **20.50 ± 2.12** | 0.00 ± 1.81 | 88.65M | 2 |" in md  # Δm ±1.278
    assert "semseg miou ↑" in md and "normals mean ↓" in md and "Δm % ↓" in md


def test_a_boolean_axis_keeps_both_rows_in_order() -> None:
    """Row labels False and True are labels, not a mask (data.fresh_scenes lost its False row once)."""
    frame = pd.DataFrame({"data.fresh_scenes": [True, False, True, False], "delta_m": [4.0, 1.0, 6.0, 3.0]})
    table = tables.summarise(frame, ["data.fresh_scenes"], [tables.Column("delta_m", "Δm", False)], "s", "t")
    assert table.mean.index.tolist() == [False, True] and table.n.tolist() == [2, 2]
    assert table.mean["delta_m"].tolist() == [2.0, 5.0]


def test_latex_bolds_the_best_cell_per_direction(storage: str, tmp_path: Path) -> None:
    tex = tables.to_latex(baseline_table(storage, tmp_path))
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex
    rows = {line.split(" & ")[0]: line for line in tex.splitlines() if " & " in line}
    assert "\\textbf{47.00 $\\pm$ 4.24}" in rows["tsn"]  # semseg ↑: the highest mean
    assert "\\textbf{20.50 $\\pm$ 2.12}" in rows["single\\_task"]  # normals ↓: the lowest mean
    assert rows["task\\_in"].count("\\textbf") == 0
    assert "semseg miou $\\uparrow$" in tex and "normals mean $\\downarrow$" in tex


def test_missing_runs_are_reported_with_count_and_reason(storage: str) -> None:
    table, _ = tables.ablation_table(load_study(EMBEDDING, storage), load_study(BASELINES, storage))
    assert list(table.mean.index) == [("orthogonal", 10), ("orthogonal", 20), ("gaussian", 10), ("gaussian", 20)]
    assert table.n.tolist() == [2, 1, 2, 1]
    notes = "\n".join(table.notes)
    assert "missing: 2 of 8 grid points not finished" in notes
    assert f"train.seed=1: trial 6 FAIL: {FAILED[1]}" in notes
    assert "model.embedding_dim=20, model.encoding=orthogonal, train.seed=1: not run" in notes


def test_csv_has_mean_and_std_per_column(storage: str, tmp_path: Path) -> None:
    csv = pd.read_csv(tables.write_table(baseline_table(storage, tmp_path), tmp_path)["csv"])
    assert csv.loc[csv["architecture"] == "tsn", "semseg_mean"].item() == pytest.approx(47.0)
    assert csv.loc[csv["architecture"] == "tsn", "semseg_std"].item() == pytest.approx(math.sqrt(18))


def test_comparison_with_the_paper_uses_published_numbers() -> None:
    table = tables.Table(
        "baselines-pascal_context-paper",
        "t",
        ["model.architecture"],
        [tables.Column("semseg", "semseg", True)],
        pd.DataFrame({"semseg": [64.0]}, index=["tsn"]),
        pd.DataFrame({"semseg": [0.1]}, index=["tsn"]),
    )
    assert tables.is_comparable(table.name) and not tables.is_comparable(BASELINES)
    comparison = tables.comparison_table(table)
    assert comparison.mean.loc[("tsn", "semseg")].tolist() == pytest.approx([64.0, 64.2, -0.2])


def test_scaling_tables_count_tsn_flat_and_single_task_linear_in_t() -> None:
    params, macs = tables.scaling_tables("scaling-synthetic-smoke", None, task_counts=(1, 2))
    assert list(params.mean.columns) == [1, 2] and "tsn" in params.mean.index
    assert params.mean.loc["tsn", 1] == params.mean.loc["tsn", 2]
    assert params.mean.loc["single_task", 2] > 1.9 * params.mean.loc["single_task", 1]  # one network per task
    assert (macs.mean > 0).all().all()


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_writes_tables_prints_markdown_and_checks_claims(
    storage: str, tmp_path: Path, capsys, few_task_counts
) -> None:
    out = tmp_path / "reports"
    assert make_tables.main(["--storage", storage, "--out", str(out), "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert "| tsn |" in printed and "| orthogonal | 10 |" in printed
    assert "not comparable" in printed and "The paper's claims, synthetic, smoke budget" in printed
    for name in (BASELINES, EMBEDDING):
        assert all((out / f"{name}.{ext}").stat().st_size > 0 for ext in ("md", "tex", "csv"))
    assert list((out / "cache" / "optuna").glob("*.parquet"))
    assert "| tsn | 0.911 | 0.911 |" in printed  # the default studies include the scaling table: TSN flat in T
    assert (out / "scaling-params-synthetic-smoke.tex").exists()
    verdicts = pd.read_csv(out / "claims-synthetic-smoke.csv").set_index("claim")
    assert (out / "claims-synthetic-smoke.md").stat().st_size > 0
    assert verdicts.loc["C5", "verdict"] == "holds" and verdicts.loc["C1", "verdict"] == "inconclusive"  # n = 2
    assert verdicts.loc["C2.3", "note"] == "missing: architecture task_bn, multi_decoder in the Table 1 study"


def test_a_report_of_chosen_studies_writes_no_claims(storage: str, tmp_path: Path) -> None:
    assert make_tables.main(["--storage", storage, "--out", str(tmp_path), "--no-figures", "--study", EMBEDDING]) == 0
    assert not list(tmp_path.glob("claims-*"))


def test_cli_shows_the_papers_numbers_beside_ours_for_the_paper_budget(tmp_path: Path, capsys) -> None:
    # trials of 129 epochs: the paper budget's report epoch is their last, so their final metrics are reported
    storage = build_storage(
        tmp_path, resolve("smoke", overrides=["train.epochs=129"]).to_dict(), suffix="pascal_context-paper"
    )
    studies = ["--study", "baselines-pascal_context-paper", "embedding-pascal_context-paper"]
    assert make_tables.main(["--storage", storage, "--out", str(tmp_path / "r"), "--no-figures", *studies]) == 0
    printed = capsys.readouterr().out
    assert "metrics at epoch 129 (baselines at the same epoch)" in printed
    assert "| tsn | semseg miou | 47.00 | 64.20 | -17.20 |" in printed  # paper Table 1: TSN semseg 64.2
    assert "| tsn | Δm % | -4.73 | 0.30 | -5.03 |" in printed and "not comparable" not in printed
    assert not (tmp_path / "r" / "embedding-pascal_context-paper-vs-paper.md").exists()  # no published d = 10, 20
    assert (tmp_path / "r" / "baselines-pascal_context-paper-vs-paper.tex").stat().st_size > 0


def test_unknown_study_is_one_line_naming_the_stored_ones_and_exit_2(storage: str, tmp_path: Path, capsys) -> None:
    # in this process: tests/test_errors.py runs the script in a shell
    args = ["--storage", storage, "--study", "nope-synthetic-smoke", "--out", str(tmp_path), "--no-figures"]
    assert make_tables.main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == f"error: unknown study 'nope-synthetic-smoke'; valid: {SHARED}, {BASELINES}, {EMBEDDING}"


def test_unreachable_storage_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    assert make_tables.main(["--storage", "sqlite:////nonexistent/dir/x.db", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot read study storage sqlite:////nonexistent/dir/x.db") and "\n" not in err


def test_module_entry_point(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["make_tables", "--help"])
    monkeypatch.delitem(sys.modules, "analysis.make_tables")  # run it fresh, as `python -m` would
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("analysis.make_tables", run_name="__main__")
    assert exit_info.value.code == 0 and "--wandb-path" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ study names
def _delta_m_column(out: Path, name: str) -> list[float]:
    frame = pd.read_csv(out / f"{name}.csv")
    return frame["delta_m_mean"].tolist()


def _delta_m_column_of(storage: str, name: str, out: Path) -> list[float]:
    assert make_tables.main(["--storage", storage, "--out", str(out), "--no-figures", "--study", name]) == 0
    return _delta_m_column(out, name)


def test_a_hyphenated_experiment_gets_its_table_and_its_delta_m(storage: str, tmp_path: Path, few_task_counts) -> None:
    url = f"sqlite:///{tmp_path / 'copy.db'}"
    for name in (SHARED, EMBEDDING):
        target = "my-ablation-synthetic-smoke" if name == EMBEDDING else name
        optuna.copy_study(from_study_name=name, from_storage=storage, to_storage=url, to_study_name=target)
    out = tmp_path / "r"
    assert make_tables.main(["--storage", url, "--out", str(out), "--no-figures"]) == 0
    assert _delta_m_column(out, "my-ablation-synthetic-smoke") == pytest.approx(
        _delta_m_column_of(storage, EMBEDDING, tmp_path / "ref")
    )
    assert (out / "scaling-params-synthetic-smoke.md").exists()


def test_a_storage_from_before_the_reserved_name_reads_its_shared_baselines_under_the_old_one(
    tmp_path: Path, capsys
) -> None:
    legacy = build_storage(tmp_path, resolve("smoke").to_dict(), legacy=True)
    assert runs.baseline_study_of(EMBEDDING, legacy) == BASELINES
    out = tmp_path / "r"
    assert make_tables.main(["--storage", legacy, "--out", str(out), "--no-figures", "--study", EMBEDDING]) == 0
    assert "Δm not computed" not in capsys.readouterr().out
    (tmp_path / "new").mkdir()
    current = build_storage(tmp_path / "new", resolve("smoke").to_dict())
    assert runs.baseline_study_of(EMBEDDING, current) == SHARED  # Table 1's study is not mistaken for it
    assert _delta_m_column(out, EMBEDDING) == pytest.approx(_delta_m_column_of(current, EMBEDDING, tmp_path / "n"))
