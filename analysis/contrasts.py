"""What each axis of a study does to Δm, paired by seed: ``{study}-contrasts.md`` and ``.csv``.

For an axis with levels a (its first value in the experiment file), b, …: every other level's effect is the
difference Δm(level) − Δm(a) between two trials that agree on everything else (the seed and every other axis), so
seed-to-seed variation shared by both trials cancels. One row per (axis, level) pools those pairs over the other
axes' values (the main effect); one row per value of the other axes follows where there are any. Each row: the mean
difference, its 95 % Student-t interval over the pairs and the verdict the interval allows: ``lower`` or ``higher``
Δm (the interval excludes 0; lower Δm is better) or ``inconclusive``. A pooled row assumes the effect does not
depend on the other axes; the rows below it show whether it does.

Each Δm is measured against the seed mean of a single-task reference (analysis.tables.references). Where the axis
changes the single-task configuration too (the encoder's rate, the scenes, the epochs), the two levels have
references of their own, and the error of each reference's mean shifts every Δm measured against it alike: pairing
cannot cancel it. The interval then adds, for each reference r, w_r² · spread_r² / n_r, where w_r is the share of
the pairs measured against r at the level less its share at the base level and spread_r, n_r are the sd of its
seeds' Δm and their number, with Welch–Satterthwaite degrees of freedom. With one reference for both levels every
w_r is 0 and the interval is the paired one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from analysis.claims import INCONCLUSIVE, Sample, satterthwaite_interval, t_interval
from analysis.runs import StudyData
from analysis.tables import axis_levels, grid_label, row_axes, signed, signed_interval, write_report

LOWER, HIGHER = "lower", "higher"
ALL = "all"
COLUMNS = ["axis", "level", "reference", "within", "mean", "low", "high", "n", "verdict"]


def verdict(low: float, high: float, n: int) -> str:
    """``lower``/``higher`` when the interval excludes 0, else ``inconclusive`` (also with fewer than 2 pairs)."""
    if n < 2 or pd.isna(low) or pd.isna(high):
        return INCONCLUSIVE
    return LOWER if high < 0 else HIGHER if low > 0 else INCONCLUSIVE


REFERENCE = ["reference_trials", "reference_spread", "reference_seeds"]  # analysis.tables.add_delta_m's


def pairs(trials: pd.DataFrame, axis: str, level, reference, others: Sequence[str]) -> pd.DataFrame:
    """One row per (seed, other axes) with both levels: the other axes' values, ``diff`` = Δm(level) − Δm(ref) and,
    where the trials name them, each side's single-task reference (``REFERENCE`` columns, suffixed ``_level`` and
    ``_base``)."""
    keys = ["seed", *others]
    columns = ["delta_m", *(c for c in REFERENCE if c in trials)]
    latest = trials.dropna(subset=["delta_m"]).sort_values("trial")
    at = {
        value: latest[latest[axis] == value].drop_duplicates(keys, keep="last").set_index(keys)[columns]
        for value in (level, reference)
    }
    both = at[level].index.intersection(at[reference].index)
    out = pd.DataFrame({"diff": at[level].loc[both, "delta_m"] - at[reference].loc[both, "delta_m"]}, index=both)
    for column in columns[1:]:
        out[f"{column}_level"] = at[level].loc[both, column]
        out[f"{column}_base"] = at[reference].loc[both, column]
    return out.reset_index()


def reference_terms(group: pd.DataFrame) -> list[tuple[float, int]]:
    """(w_r² · spread_r² / n_r, n_r − 1) for each single-task reference r of a group of pairs (see the module's
    docstring); empty when the pairs name no references."""
    if "reference_trials_level" not in group or group.empty:
        return []
    weight: dict[object, float] = {}
    noise: dict[object, tuple[float, int]] = {}
    for side, sign in (("level", 1.0), ("base", -1.0)):
        for ref, spread, seeds in zip(
            group[f"reference_trials_{side}"], group[f"reference_spread_{side}"], group[f"reference_seeds_{side}"]
        ):
            weight[ref] = weight.get(ref, 0.0) + sign / len(group)
            noise[ref] = (float(spread), int(seeds))
    terms = []
    for ref, w in weight.items():
        if abs(w) > 1e-12:  # a reference on both sides in equal shares cancels
            spread, seeds = noise[ref]
            terms.append((w**2 * spread**2 / seeds if seeds else math.nan, seeds - 1))
    return terms


def contrast_interval(group: pd.DataFrame) -> tuple[float, float, float, int]:
    """(mean, low, high, pairs) of a group of pairs: the paired t interval, widened by the references' own noise
    where the two levels are measured against different ones."""
    extra = reference_terms(group)
    if not extra:
        return t_interval(group["diff"].tolist())
    diffs = Sample.of(group["diff"].tolist())
    if diffs.n < 2:
        return diffs.mean, math.nan, math.nan, diffs.n
    low, high = satterthwaite_interval(diffs.mean, [(diffs.sd**2 / diffs.n, diffs.n - 1), *extra])
    return diffs.mean, low, high, diffs.n


def contrasts(trials: pd.DataFrame, axes: Sequence[str], levels: dict[str, list]) -> pd.DataFrame:
    """Tidy contrasts (columns ``COLUMNS``) of every axis in ``axes`` with two or more levels."""
    rows = []
    for axis in axes:
        values = levels[axis]
        others = [a for a in axes if a != axis]
        for level in values[1:]:
            diffs = pairs(trials, axis, level, values[0], others)
            groups = [(ALL, diffs)]
            if others:
                groups += [(grid_label(others, key), group) for key, group in diffs.groupby(others, sort=False)]
            for within, group in groups:
                mean, low, high, n = contrast_interval(group)
                rows.append(
                    {
                        "axis": axis,
                        "level": level,
                        "reference": values[0],
                        "within": within,
                        "mean": mean,
                        "low": low,
                        "high": high,
                        "n": n,
                        "verdict": verdict(low, high, n),
                    }
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def to_markdown(name: str, tidy: pd.DataFrame) -> str:
    """The contrasts as a Markdown table: contrast, rows within it, mean, interval, pairs, verdict."""
    title = (
        f"**{name}: what each axis does to Δm, paired by seed and every other axis: mean difference in Δm "
        "(percentage points) over the pairs, its 95 % t-interval (with the noise of the two levels' single-task "
        "references where they differ) and the verdict the interval allows (lower Δm is better)**"
    )
    lines = [
        title,
        "",
        "| contrast | within | ΔΔm (points) | 95 % interval | pairs | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for row in tidy.itertuples():
        verdict_text = f"**{row.verdict}**" if row.verdict != INCONCLUSIVE else row.verdict
        lines.append(
            f"| {row.axis}: {row.level} − {row.reference} | {row.within} | {signed(row.mean, 2)} "
            f"| {signed_interval(row.low, row.high, 2)} "
            f"| {row.n} | {verdict_text} |"
        )
    return "\n".join(lines) + "\n"


def contrast_report(
    study: StudyData, trials: pd.DataFrame, baselines: pd.DataFrame | None, out_dir: str | Path
) -> str | None:
    """Write ``{study}-contrasts.md`` and ``.csv`` and return the Markdown; None when the study has no axis with two levels or no Δm."""
    axes = [a for a in row_axes(study) if a in trials]
    levels = axis_levels(study, trials, axes)
    axes = [a for a in axes if len(levels[a]) >= 2]
    if not axes or trials["delta_m"].isna().all():
        return None
    tidy = contrasts(trials, axes, levels)
    if tidy.empty:
        return None
    name = f"{study.name}-contrasts"
    return write_report(out_dir, name, to_markdown(name, tidy), tidy)
