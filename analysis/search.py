"""Search studies (an experiment file's ``search:`` section, :mod:`sweeps.search`): per stratum, the best sampled
configuration and how much each searched key mattered.

A stratum is a grid point of the experiment's axes but the seed (e.g. one architecture). Its row: the COMPLETE
trial with the lowest objective (the value the study was told), its searched values (from its stored config), how
many trials finished, and each searched key's importance (``optuna.importance.get_param_importances`` with Optuna's
default evaluator, over the stratum's finished trials; only where at least :data:`MIN_IMPORTANCE_TRIALS` finished).
The table's notes give the ``make sweep-baselines ... SET=...`` that reruns Table 1 at each stratum's best values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from analysis.runs import AnalysisError, StudyData
from analysis.tables import Column, Table, row_axes, sort_key
from sweeps.records import parse_study_name
from sweeps.search import contains, space_distributions

MIN_IMPORTANCE_TRIALS = 5  # below this, an importance says more about the sampler's luck than about the key
STRATUM = "stratum"  # the per-trial frame's column naming a trial's stratum (its row of the table)
TABLE_1 = "baselines"  # the experiment a best configuration is rerun with


def searched(study: StudyData) -> list[str]:
    return list((study.search or {}).get("space") or {})


def short(key: str) -> str:
    return key.rpartition(".")[2]


def strata_axes(study: StudyData) -> list[str]:
    """The axes a stratum varies over: every grid axis but the seed (none: a single stratum)."""
    return row_axes(study)


def search_trials(study: StudyData) -> pd.DataFrame:
    """One row per COMPLETE trial that told an objective: ``trial``, ``objective``, the grid axes, ``stratum`` (its
    label) and each searched key's value."""
    rows = study.metrics.drop_duplicates("trial")
    rows = rows[(rows["state"] == "COMPLETE") & rows["objective"].notna()]
    if rows.empty:
        raise AnalysisError(f"study {study.name!r} has no finished trials")
    out = pd.DataFrame({"trial": rows["trial"].astype(int), "objective": rows["objective"].astype(float)})
    grids = rows["grid"].map(json.loads)
    for axis in study.space:
        out[axis] = grids.map(lambda g, a=axis: g.get(a))
    axes = strata_axes(study)
    out[STRATUM] = out[axes].astype(str).agg(" ".join, axis=1) if axes else "all"
    configs = rows["config"].map(json.loads)
    for key in searched(study):
        section, _, name = key.partition(".")
        out[key] = configs.map(lambda c, s=section, n=name: c[s][n])
    return out.reset_index(drop=True)


def importances(trials: pd.DataFrame, space: Mapping[str, Mapping[str, Any]]) -> dict[str, float] | None:
    """Each searched key's importance over ``trials`` (one stratum's), None with fewer than the minimum."""
    dists = space_distributions(space)
    rows = [r for r in trials.to_dict("records") if contains(dists, r)]
    if len(rows) < MIN_IMPORTANCE_TRIALS:
        return None
    scratch = optuna.create_study(direction="minimize")  # in memory: the evaluator reads a study
    scratch.add_trials(
        optuna.trial.create_trial(params={k: r[k] for k in dists}, distributions=dists, value=r["objective"])
        for r in rows
    )
    return optuna.importance.get_param_importances(scratch)


def best_rows(trials: pd.DataFrame, space: Mapping[str, Mapping[str, Any]], axes: list[str]) -> pd.DataFrame:
    """Per stratum (rows in the paper's order of ``axes``): the best trial, its objective and values, the trials
    that finished and each key's importance (NaN where too few finished)."""
    rows = []
    for stratum, group in trials.groupby(STRATUM, sort=False):
        best = group.loc[group["objective"].idxmin()]
        weights = importances(group, space) or {}
        rows.append(
            {
                STRATUM: stratum,
                "objective": best["objective"],
                "trials": len(group),
                "best_trial": best["trial"],
                **{key: best[key] for key in space},
                **{f"importance:{key}": weights.get(key, math.nan) for key in space},
            }
        )
    frame = pd.DataFrame(rows).set_index(STRATUM)
    first = trials.drop_duplicates(STRATUM).set_index(STRATUM)
    return frame.loc[sorted(frame.index, key=lambda s: tuple(sort_key(a, first.loc[s, a]) for a in axes))]


def rerun_notes(study: StudyData, best: pd.DataFrame, keys: list[str]) -> list[str]:
    """The command that reruns Table 1 at each stratum's best values, in a storage of its own."""
    _, dataset, budget = parse_study_name(study.name)
    lines = [
        f"Rerun Table 1 ({TABLE_1}) at a row's best values: every trial of that sweep takes them (its single-task "
        "baselines too); its own STORAGE keeps it apart from the stored Table 1:"
    ]
    for stratum, row in best.iterrows():
        sets = " ".join(f"{key}={row[key]:.3g}" for key in keys)
        slug = "-".join(str(stratum).split())
        lines.append(
            f"- {stratum}: `make sweep-{TABLE_1} BUDGET={budget} DATASET={dataset} "
            f'STORAGE=sqlite:///runs/{TABLE_1}-{slug}.db SET="{sets}"`'
        )
    return lines


def search_table(study: StudyData) -> tuple[Table, pd.DataFrame]:
    """The study's table (``{study}.md/.tex/.csv``: a row per stratum) and the per-trial frame it came from."""
    plan = study.search or {}
    space = plan.get("space") or {}
    keys = list(space)
    axes = strata_axes(study)
    trials = search_trials(study)
    best = best_rows(trials, space, axes)
    objective = plan.get("objective", "objective")
    columns = [
        Column("objective", f"best {objective}", False, digits=4),
        Column("trials", "trials", None, digits=0),
        Column("best_trial", "best trial", None, digits=0),
        *(Column(key, short(key), None, digits=2, notation="e") for key in keys),
        *(Column(f"importance:{key}", f"importance {short(key)}", None, digits=2) for key in keys),
    ]
    planned = plan.get("trials")
    fewer = [f"{s} {n}/{planned}" for s, n in best["trials"].items() if planned and n < planned]
    missing = sorted({" ".join(str(p[a]) for a in axes) or "all" for p in study.grid or []} - set(best.index))
    thin = [str(s) for s, n in best["trials"].items() if n < MIN_IMPORTANCE_TRIALS]
    notes = [
        f"{plan.get('sampler', '?').upper()} search, seed {plan.get('seed')}, {planned} configurations per "
        f"{' × '.join(map(short, axes)) or 'study'}; the objective ({objective}) is minimised",
        *([f"fewer trials finished than planned: {', '.join(fewer)}"] if fewer else []),
        *([f"no finished trial: {', '.join(missing)}"] if missing else []),
        "importance: optuna.importance.get_param_importances (Optuna's default evaluator) over a row's finished "
        f"trials, where at least {MIN_IMPORTANCE_TRIALS} finished"
        + (f"; too few for {', '.join(thin)} (–)" if thin else ""),
        *rerun_notes(study, best, keys),
    ]
    _, dataset, budget = parse_study_name(study.name)
    title = f"{study.name}: the best sampled configuration per {' × '.join(map(short, axes)) or 'study'}"
    header = axes[0] if len(axes) == 1 else STRATUM
    table = Table(
        study.name, f"{title} ({dataset}, {budget} budget)", [header], columns, best, best * math.nan, None, notes
    )
    return table, trials


def tidy_csv(table: Table) -> str:
    """The table's CSV: a row per stratum, its columns by key (``objective``, ``trials``, ``best_trial``, each searched
    key, ``importance:{key}``), full precision."""
    frame = table.mean.copy()
    frame.index.name = table.index_names[0]
    for column in ("trials", "best_trial"):
        frame[column] = frame[column].astype(int)
    return frame.reset_index().to_csv(index=False)
