"""Has training plateaued? ``{study}-plateau.md`` and ``.csv`` for every study with per-epoch validation.

Issue 12's criterion: a run has plateaued on a task when its validation primary metric improves by less than
2 % (relative) over the last quarter of its training. Per trial and task: the improvement from the last evaluated
epoch at or before 3/4 of the run to its last evaluated epoch, in percent of the former, signed so that positive
is better (a lower-is-better metric, such as the normals' angle, improves when it falls). Per row of the study's grid
(seed excluded) and task: the mean improvement over the seeds with its 95 % t-interval, the largest seed's value,
and ``yes`` when every seed is below the threshold. Trials evaluated at fewer than 4 epochs are left out: a curve
needs ``train.eval_every: 1`` (or a small value) to say anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from analysis.claims import t_interval
from analysis.runs import StudyData
from analysis.tables import markdown_grid, row_axes, signed, signed_interval, write_report

THRESHOLD = 2.0  # % relative improvement over the last quarter below which a curve counts as plateaued
QUARTER = 0.75  # the improvement is measured from this fraction of the run to its end
MIN_EPOCHS = 4  # evaluated epochs a trial needs for a curve


def last_quarter_gains(history: pd.DataFrame, higher: Mapping[str, bool]) -> pd.DataFrame:
    """One row per (COMPLETE trial, task) with a curve: ``trial``, ``task``, ``start`` and ``end`` (the epochs
    compared, counted from 1) and ``gain`` (%, positive = better)."""
    done = history[history["state"] == "COMPLETE"] if "state" in history else history
    rows = []
    for (trial, task), curve in done.dropna(subset=["value", "epoch"]).groupby(["trial", "task"]):
        curve = curve.sort_values("epoch")
        epochs = curve["epoch"].astype(int).tolist()
        if len(epochs) < MIN_EPOCHS:
            continue
        end = epochs[-1]
        start = max((e for e in epochs if e <= QUARTER * end), default=epochs[0])  # epochs count from 1
        before = float(curve.loc[curve["epoch"] == start, "value"].iloc[0])
        after = float(curve.loc[curve["epoch"] == end, "value"].iloc[0])
        sign = 1.0 if higher.get(task, True) else -1.0
        gain = sign * (after - before) / abs(before) * 100.0 if before else math.nan
        rows.append({"trial": trial, "task": task, "start": start, "end": end, "gain": gain})
    return pd.DataFrame(rows, columns=["trial", "task", "start", "end", "gain"])


def plateau_stats(gains: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per ``by`` group, run length and task: mean gain, its 95 % t-interval, the largest gain, n seeds and
    ``plateaued``. The run length separates runs one row of the grid cannot tell apart (the single-task study holds
    the baselines of every experiment, whose only axis is the seed)."""
    out = []
    for key, group in gains.groupby([*by, "end", "task"], sort=False, dropna=False):
        labels = dict(zip([*by, "epochs", "task"], key if isinstance(key, tuple) else (key,)))
        mean, low, high, n = t_interval(group["gain"].tolist())
        largest = float(group["gain"].max())
        out.append(
            {
                **labels,
                "mean": mean,
                "low": low,
                "high": high,
                "max": largest,
                "n": n,
                "plateaued": "yes" if largest < THRESHOLD else "no",
            }
        )
    return pd.DataFrame(out, columns=[*by, "epochs", "task", "mean", "low", "high", "max", "n", "plateaued"])


def to_markdown(name: str, frame: pd.DataFrame, by: list[str]) -> str:
    header = [*by, "epochs", "task", "gain, last quarter (%)", "95 % interval", "largest seed", "n", "plateaued"]
    rows = [
        [
            *(str(row[a]) for a in by),
            str(row["epochs"]),
            row["task"],
            signed(row["mean"], 1),
            signed_interval(row["low"], row["high"], 1),
            signed(row["max"], 1),
            str(row["n"]),
            row["plateaued"],
        ]
        for _, row in frame.iterrows()
    ]
    lines = [
        f"### {name}",
        "",
        f"Relative improvement of each task's validation primary metric over the last quarter of training (positive "
        f"= better); plateaued: every seed below {THRESHOLD:g} %.",
        "",
        *markdown_grid(header, rows),
    ]
    return "\n".join(lines) + "\n"


def plateau_report(
    study: StudyData, trials: pd.DataFrame, baselines: pd.DataFrame | None, out_dir: str | Path
) -> str | None:
    """Write ``{study}-plateau.md`` and ``.csv`` and return the Markdown; None when no trial has a curve."""
    gains = last_quarter_gains(study.history, trials.attrs["higher_is_better"])
    if gains.empty:
        return None
    by = row_axes(study) or ["architecture"]
    order = {task: i for i, task in enumerate(trials.attrs.get("tasks") or sorted(gains["task"].unique()))}
    gains = gains.merge(trials[["trial", *by]], on="trial").sort_values(by=["task"], key=lambda t: t.map(order))
    frame = plateau_stats(gains.sort_values([*by, "end"], kind="stable"), by)
    name = f"{study.name}-plateau"
    return write_report(out_dir, name, to_markdown(name, frame, by), frame)
