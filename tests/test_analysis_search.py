"""``make tables`` on a search study: the best configuration per stratum, importances, the rerun command and the
figure, from a hand-made study (values chosen by hand), read from the storage and from its export alike."""

from __future__ import annotations

import copy
import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from analysis import make_tables
from analysis.search import MIN_IMPORTANCE_TRIALS
from sweeps import records as R
from sweeps.__main__ import main as sweeps_main
from tsn.config import resolve

STUDY = "lrs-synthetic-smoke"
ARCHS = ("tsn", "task_bn", "task_in")
SPACE = {
    "train.lr_decoder": {"low": 1e-4, "high": 1e-2, "log": True, "integer": False},
    "train.lr_encoder": {"low": 1e-5, "high": 1e-2, "log": True, "integer": False},
}
# architecture -> [(lr_decoder, lr_encoder, objective)]: task_in has too few trials for importances; task_bn's sixth
# trial failed.
TRIALS = {
    "tsn": [
        (1e-4, 1e-3, 2.0),
        (3e-4, 1e-5, 1.5),
        (1e-3, 1e-2, 1.1),
        (3e-3, 1e-4, 0.9),
        (5e-3, 3e-3, 0.7),
        (1e-2, 3e-5, 1.2),
    ],
    "task_bn": [(1e-4, 1e-4, 3.0), (2e-4, 2e-3, 2.5), (6e-4, 5e-5, 2.2), (2e-3, 1e-2, 2.6), (8e-3, 4e-4, 2.9)],
    "task_in": [(4e-4, 2e-4, 1.8), (2e-3, 6e-3, 1.6)],
}


def build_search_storage(tmp_path: Path) -> str:
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name=STUDY, storage=storage)
    grid = [{"model.architecture": a, "train.seed": 1337} for a in ARCHS]
    study.set_user_attr(R.STUDY_EXPERIMENT_ATTR, {"name": "lrs"})
    study.set_user_attr(R.GRID, grid)
    search = {"sampler": "tpe", "trials": 6, "seed": 0, "objective": "mean_val_loss", "startup_trials": 2}
    study.set_user_attr(R.SEARCH, {**search, "space": SPACE})
    dists = {
        "model.architecture": CategoricalDistribution(list(ARCHS)),
        "train.seed": CategoricalDistribution([1337]),
        **{k: FloatDistribution(v["low"], v["high"], log=True) for k, v in SPACE.items()},
    }
    base = resolve("smoke").to_dict()
    rows = [(arch, k, *values) for arch, trials in TRIALS.items() for k, values in enumerate(trials)]
    rows.append(("task_bn", 5, 1e-2, 1e-2, None))  # failed
    for arch, k, lr_dec, lr_enc, objective in rows:
        config: dict[str, Any] = copy.deepcopy(base)
        config["model"]["architecture"], config["train"]["lr_decoder"], config["train"]["lr_encoder"] = (
            arch,
            lr_dec,
            lr_enc,
        )
        attrs = {
            R.EXPERIMENT: "lrs",
            R.DATASET: "synthetic",
            R.BUDGET: "smoke",
            R.ARCHITECTURE: arch,
            R.SEED: 1337,
            R.CONFIG: config,
            R.CONFIG_HASH: f"hash-{arch}-{k}",
            R.SEARCH_SLOT: f"model.architecture={arch} train.seed=1337 #{k}",
        }
        if objective is None:
            attrs[R.FAIL_REASON] = "non-finite loss at epoch 1"
        else:
            attrs[R.METRICS] = {
                "semseg": {"values": {"miou": 40.0}, "conventions": {}, "primary": "miou", "higher_is_better": True}
            }
        study.add_trial(
            optuna.trial.create_trial(
                params={
                    "model.architecture": arch,
                    "train.seed": 1337,
                    "train.lr_decoder": lr_dec,
                    "train.lr_encoder": lr_enc,
                },
                distributions=dists,
                value=objective,
                user_attrs=attrs,
                state=optuna.trial.TrialState.FAIL if objective is None else optuna.trial.TrialState.COMPLETE,
            )
        )
    return storage


def report(tmp_path: Path, capsys, *source: str) -> tuple[str, Path]:
    out = tmp_path / "-".join(s.strip("-") for s in source[::2])
    assert make_tables.main([*source, "--study", STUDY, "--out", str(out)]) == 0
    return capsys.readouterr().out, out


def test_the_search_table_reports_each_strata_best_configuration_importances_and_rerun(tmp_path: Path, capsys) -> None:
    printed, out = report(tmp_path, capsys, "--storage", build_search_storage(tmp_path))
    rows = list(csv.DictReader(io.StringIO((out / f"{STUDY}.csv").read_text())))
    assert [r["model.architecture"] for r in rows] == ["task_bn", "task_in", "tsn"]  # the paper's order
    by_arch = {r["model.architecture"]: r for r in rows}
    for arch, trials in TRIALS.items():
        lr_dec, lr_enc, objective = min(trials, key=lambda t: t[2])
        row = by_arch[arch]
        assert float(row["objective"]) == objective and int(row["trials"]) == len(trials)
        assert (float(row["train.lr_decoder"]), float(row["train.lr_encoder"])) == (lr_dec, lr_enc)
        assert f'SET="train.lr_decoder={lr_dec:.3g} train.lr_encoder={lr_enc:.3g}"' in printed
    assert int(by_arch["tsn"]["best_trial"]) == 4
    weights = {a: [by_arch[a][f"importance:{k}"] for k in SPACE] for a in ARCHS}
    assert weights["task_in"] == ["", ""]  # 2 trials, fewer than the minimum
    for arch in ("tsn", "task_bn"):
        assert len(TRIALS[arch]) >= MIN_IMPORTANCE_TRIALS and sum(map(float, weights[arch])) == pytest.approx(1.0)

    markdown = (out / f"{STUDY}.md").read_text()
    assert markdown in printed and "| architecture | best mean_val_loss ↓ | trials |" in markdown
    assert "| tsn | **0.7000** | 6 | 4 | 5.00e-03 | 3.00e-03 |" in markdown
    assert "fewer trials finished than planned: task_bn 5/6, task_in 2/6" in markdown
    assert "too few for task_in (–)" in markdown
    assert "make sweep-baselines BUDGET=smoke DATASET=synthetic STORAGE=sqlite:///runs/baselines-tsn.db" in markdown
    assert (out / f"{STUDY}.tex").read_text().count("\\\\") == 4  # header + 3 rows
    figure = out / "figures" / f"{STUDY}-lr.png"
    assert figure.stat().st_size > 0 and "one colour per task_bn/task_in/tsn" in figure.with_suffix(".md").read_text()


def test_the_search_table_reads_the_same_from_the_export(tmp_path: Path, capsys) -> None:
    storage = build_search_storage(tmp_path)
    assert sweeps_main(["export", "--storage", storage, "--out", str(tmp_path / "trials")]) == 0
    capsys.readouterr()
    printed, out = report(tmp_path, capsys, "--storage", storage)
    exported, out_export = report(tmp_path, capsys, "--source", "export", "--export-dir", str(tmp_path / "trials"))
    assert exported == printed
    for ext in ("md", "csv", "tex"):
        assert (out_export / f"{STUDY}.{ext}").read_text() == (out / f"{STUDY}.{ext}").read_text()


def test_a_search_study_keeps_its_searched_keys_out_of_its_grid(tmp_path: Path) -> None:
    from analysis.runs import load_study

    study = load_study(STUDY, build_search_storage(tmp_path))
    assert study.search["trials"] == 6 and sorted(study.space) == ["model.architecture", "train.seed"]
    assert study.missing_points() == []  # every stratum has a finished trial
    done = study.metrics[study.metrics["state"] == "COMPLETE"].drop_duplicates("trial")
    assert sorted(done["objective"]) == sorted(t[2] for trials in TRIALS.values() for t in trials)
    assert math.isnan(study.metrics[study.metrics["state"] == "FAIL"]["objective"].iloc[0])
