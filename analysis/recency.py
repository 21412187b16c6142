"""Recency of task switching (``experiments/switching.yaml``): is a task's deficit against its single-task baseline
larger the earlier it was trained in the last epoch before the evaluation?

Per trial and task: the deficit, −(relative improvement) in percent against the trial's single-task reference
(:func:`analysis.tables.references`, the seed mean; positive = worse, as in Δm), and the task's position in that epoch's
``task_order`` (0 = trained first, T−1 = trained last). Per row of the study's grid (seed excluded): the mean deficit
at each position with a 95 % Student-t interval over the (seed, task) pairs, and the least-squares slope of deficit
on position with its 95 % t interval (n − 2 degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from scipy import stats

from analysis.claims import CONFIDENCE, t_interval
from analysis.runs import StudyData
from analysis.tables import Column, Table, references, row_axes, sort_key, to_markdown, write_report
from tsn.metrics.delta_m import relative_differences

EXPERIMENT = "switching"
SLOPE = "slope"


def positions(history: pd.DataFrame, epoch: int | None) -> pd.DataFrame:
    """(trial, task) -> position in the training order of the trial's last epoch (at most ``epoch``)."""
    rows = history.dropna(subset=["position"])
    if epoch is not None:
        rows = rows[rows["epoch"] <= epoch]
    last = rows.groupby("trial")["epoch"].transform("max")
    return rows[rows["epoch"] == last].set_index(["trial", "task"])["position"].astype(int)


def deficits(
    trials: pd.DataFrame, baselines: pd.DataFrame | None, history: pd.DataFrame, epoch: int | None = None
) -> pd.DataFrame:
    """One row per (trial, task) with a baseline and a position: the trial's columns but the metrics, ``task``,
    ``position`` and ``deficit`` (%)."""
    tasks, higher = trials.attrs["tasks"], trials.attrs["higher_is_better"]
    order = positions(history, epoch)
    refs = references(trials, baselines)
    rows = []
    for _, row in trials.iterrows():
        if row["trial"] not in refs.index:
            continue
        base = refs.loc[row["trial"]]
        improvement = relative_differences(
            {t: row[t] for t in tasks}, {t: base[t] for t in tasks}, {t: higher[t] for t in tasks}
        )
        for task in tasks:
            if (row["trial"], task) in order.index:
                rows.append(
                    {
                        **row.drop(tasks).to_dict(),
                        "task": task,
                        "position": order[(row["trial"], task)],
                        "deficit": -improvement[task],
                    }
                )
    return pd.DataFrame(rows)


def slope_interval(
    x: Sequence[float], y: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float, float, int]:
    """(slope, low, high, n) of the least-squares line of ``y`` on ``x``; the interval is NaN when n < 3 or the
    residuals leave no variance to estimate, everything NaN when ``x`` does not vary."""
    n = len(x)
    if n < 2 or len(set(x)) < 2:
        return math.nan, math.nan, math.nan, n
    fit = stats.linregress(x, y)
    if n < 3:
        return float(fit.slope), math.nan, math.nan, n
    half = stats.t.ppf((1 + confidence) / 2, n - 2) * fit.stderr
    return float(fit.slope), float(fit.slope - half), float(fit.slope + half), n


def recency_stats(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Tidy statistics per ``by`` group: ``quantity`` (``position k`` or ``slope``), estimate, low, high, n."""
    out = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        labels = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for position, at in group.groupby("position"):
            mean, low, high, n = t_interval(at["deficit"].tolist())
            out.append(
                {**labels, "quantity": f"position {position}", "estimate": mean, "low": low, "high": high, "n": n}
            )
        slope, low, high, n = slope_interval(group["position"].astype(float).tolist(), group["deficit"].tolist())
        out.append({**labels, "quantity": SLOPE, "estimate": slope, "low": low, "high": high, "n": n})
    return pd.DataFrame(out, columns=[*by, "quantity", "estimate", "low", "high", "n"])


def recency_table(name: str, stats_frame: pd.DataFrame, by: list[str], notes: Sequence[str] = ()) -> Table:
    """The statistics as a :class:`Table`: rows = ``by``, columns = positions then the slope; a cell is the estimate
    ± the half-width of its (symmetric) 95 % t interval."""
    wide = stats_frame.set_index([*by, "quantity"])[["estimate", "low", "high"]].unstack("quantity")
    quantities = sorted({q for q in stats_frame["quantity"] if q != SLOPE}, key=lambda q: int(q.split()[-1]))
    quantities.append(SLOPE)
    mean = wide["estimate"][quantities]
    half = (wide["high"] - wide["low"])[quantities] / 2
    order = sorted(mean.index, key=lambda k: tuple(sort_key(a, v) for a, v in zip(by, k if len(by) > 1 else (k,))))
    n = stats_frame[stats_frame["quantity"] == SLOPE].set_index(by)["n"]
    columns = [Column(q, q if q == SLOPE else q.replace("position ", "pos "), None) for q in quantities[:-1]]
    columns.append(Column(SLOPE, "slope (%/position)", None))
    title = (
        f"{name}: each task's deficit against its single-task baseline (%, positive = worse) by its position in "
        "the last epoch's training order (0 = first, T−1 = last); mean ± 95 % t-interval half-width over "
        "(seed, task) pairs, and the least-squares slope of deficit on position"
    )
    return Table(name, title, list(by), columns, mean.loc[order], half.loc[order], n.loc[order], list(notes))


def recency_report(
    study: StudyData, trials: pd.DataFrame, baselines: pd.DataFrame | None, out_dir: str | Path
) -> str | None:
    """Write ``{study}-recency.md`` and ``.csv`` (tidy: estimate, low, high, n) and return the Markdown; None when
    nothing can be related."""
    frame = deficits(trials, baselines, study.history, study.epoch)
    if frame.empty:
        return None
    by = row_axes(study) or ["architecture"]
    tidy = recency_stats(frame, by)
    when = f"epoch {study.epoch}" if study.epoch is not None else "the last epoch"
    notes = [
        f"deficits at {when}; positions from the task_order of the last epoch trained up to it",
        f"n: (seed, task) pairs per row, from {frame['trial'].nunique()} trials",
    ]
    table = recency_table(f"{study.name}-recency", tidy, by, notes)
    return write_report(out_dir, table.name, to_markdown(table), tidy)
