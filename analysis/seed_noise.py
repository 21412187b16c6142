"""How much Δm varies from seed to seed: ``{study}-seed-noise.md`` and ``.csv`` for every study with repeated seeds.

Issue 12 asks for a regime in which TSN's seed standard deviation of Δm is at most :data:`TARGET_SD` points; a
standard deviation from a few seeds is itself uncertain (from 3 seeds its 95 % interval spans about 0.5 to 6.3 times
the estimate), so every one is reported with its interval and judged by it.

- ``sd`` rows, one per row of the study's grid (seed excluded) and one pooled over the rows (within-row deviations,
  Σ(n−1) degrees of freedom, assuming one common variance): the sample sd of the per-seed Δm, its 95 % interval
  from the χ² distribution (normal errors), and ``below`` / ``above`` the target when the interval lies on one side
  of it, else ``inconclusive``. Beside it, the sd of each task's term of Δm (−relative improvement / T against the
  single-task reference, the terms summing to Δm): where the noise comes from.
- ``ratio`` rows, one per level of every axis with two or more levels against the axis's first level, within equal
  values of the other axes: sd(level) / sd(first), its 95 % interval from the F distribution, and ``lower`` /
  ``higher`` noise when the interval excludes 1. The F interval treats the two groups as independent; where runs of
  one seed correlate positively (a shared start), it is conservative. Beside it, Pearson's r of the two levels' Δm
  over the seeds they share (3 or more): near 1, a seed's result is set by what the levels share (its initial
  weights, its first epoch), which a comparison paired by seed cancels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from scipy import stats

from analysis.claims import CONFIDENCE, INCONCLUSIVE
from analysis.contrasts import HIGHER, LOWER
from analysis.runs import StudyData
from analysis.tables import axis_levels, grid_label, markdown_grid, references, row_axes, seedless, write_report
from tsn.metrics.delta_m import relative_differences

TARGET_SD = 1.5  # issue 12, item 3: TSN's seed sd of Δm at d >= 50, in points
BELOW, ABOVE = "below", "above"
POOLED = "all rows, pooled"
COLUMNS = ["kind", "row", "reference", "n", "value", "low", "high", "verdict", "seed_correlation", "shared_seeds"]


def sd_interval(sd: float, df: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The χ² interval of a standard deviation ``sd`` estimated with ``df`` degrees of freedom."""
    tail = (1 - confidence) / 2
    return sd * math.sqrt(df / stats.chi2.ppf(1 - tail, df)), sd * math.sqrt(df / stats.chi2.ppf(tail, df))


def ratio_interval(
    sd: float, df: int, ref_sd: float, ref_df: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The F interval of the ratio of two standard deviations, ``sd / ref_sd``."""
    tail, ratio = (1 - confidence) / 2, (sd / ref_sd) ** 2
    return math.sqrt(ratio / stats.f.ppf(1 - tail, df, ref_df)), math.sqrt(ratio / stats.f.ppf(tail, df, ref_df))


def side(low: float, high: float, at: float, below: str, above: str) -> str:
    """``below`` when the interval lies under ``at``, ``above`` when over it, else inconclusive."""
    if pd.isna(low) or pd.isna(high):
        return INCONCLUSIVE
    return below if high < at else above if low > at else INCONCLUSIVE


def sd_rows(groups: dict[str, pd.DataFrame], tasks: Sequence[str]) -> list[dict]:
    """An ``sd`` row per group (its per-seed ``delta_m`` and each task's term of it) with two or more seeds, and the
    pooled row when there are several."""
    rows, squares, dfs = [], pd.Series(0.0, index=["delta_m", *tasks]), 0
    for label, values in groups.items():
        if len(values) < 2:
            continue
        variances, df = values[["delta_m", *tasks]].var(ddof=1), len(values) - 1
        squares, dfs = squares + variances * df, dfs + df
        rows.append(_sd_row(label, variances.pow(0.5), df))
    if len(rows) > 1:
        rows.append(_sd_row(POOLED, (squares / dfs).pow(0.5), dfs))
    return rows


def _sd_row(label: str, sds: pd.Series, df: int) -> dict:
    sd = float(sds["delta_m"])
    low, high = sd_interval(sd, df)
    verdict = side(low, high, TARGET_SD, BELOW, ABOVE)
    terms = {f"sd_{task}": float(value) for task, value in sds.drop("delta_m").items()}
    interval = {"n": df + 1, "value": sd, "low": low, "high": high, "verdict": verdict}
    return {"kind": "sd", "row": label, "reference": "", **interval, **terms}


def task_terms(trials: pd.DataFrame, baselines: pd.DataFrame | None) -> pd.DataFrame:
    """Each trial's Δm split by task (index = ``trials``'): −(relative improvement)/T against its single-task
    reference (astmt), terms that sum to its ``delta_m``; NaN without a reference."""
    tasks, higher = trials.attrs["tasks"], trials.attrs["higher_is_better"]
    refs = references(trials, baselines) if baselines is not None else pd.DataFrame()
    rows = {}
    for index, row in trials.iterrows():
        if row["trial"] in refs.index:
            ref = refs.loc[row["trial"]]
            improvement = relative_differences({t: row[t] for t in tasks}, {t: ref[t] for t in tasks}, higher)
            rows[index] = {t: -improvement[t] / len(tasks) for t in tasks}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(tasks)).reindex(trials.index)


def ratio_rows(trials: pd.DataFrame, axes: Sequence[str], levels: dict[str, list]) -> list[dict]:
    """A ``ratio`` row per (axis, level other than the first, values of the other axes) with 2+ seeds on both sides."""
    rows = []
    for axis in axes:
        others = [a for a in axes if a != axis]
        blocks = trials.groupby(others, sort=False) if others else [((), trials)]
        for key, block in blocks:
            by_seed = {v: block[block[axis] == v].set_index("seed")["delta_m"].dropna() for v in levels[axis]}
            first = levels[axis][0]
            for level in levels[axis][1:]:
                a, b = by_seed[level], by_seed[first]
                if len(a) < 2 or len(b) < 2:
                    continue
                sd_a, sd_b = a.std(ddof=1), b.std(ddof=1)
                low, high = ratio_interval(sd_a, len(a) - 1, sd_b, len(b) - 1)
                within = grid_label(others, key) if others else ""
                shared = a.index.intersection(b.index)
                rows.append(
                    {
                        "kind": "ratio",
                        "row": f"{axis}={level}" + (f" ({within})" if within else ""),
                        "reference": f"{axis}={first}",
                        "n": min(len(a), len(b)),
                        "value": sd_a / sd_b,
                        "low": low,
                        "high": high,
                        "verdict": side(low, high, 1.0, LOWER, HIGHER),
                        "seed_correlation": a[shared].corr(b[shared]) if len(shared) > 2 else math.nan,
                        "shared_seeds": len(shared),
                    }
                )
    return rows


def _flat(family: str) -> dict[str, object]:
    data = json.loads(family) if not family.startswith("hash:") else {"": {"config_hash": family}}
    return {f"{section}.{key}": value for section, values in data.items() for key, value in values.items()}


def family_labels(done: pd.DataFrame, axes: Sequence[str]) -> pd.Series:
    """Each trial's row label: its grid axes, and where configurations the axes do not tell apart share them (the
    single-task study holds the references of every regime), the configuration keys in which those differ."""
    labels = pd.Series([grid_label(axes, tuple(r)) for r in done[list(axes)].itertuples(index=False)], index=done.index)
    for label, rows in done.groupby(labels, sort=False):
        families = {f: _flat(f) for f in rows["family"].unique()}
        if len(families) < 2:
            continue
        keys = sorted({k for flat in families.values() for k in flat})
        differ = [k for k in keys if len({repr(flat.get(k)) for flat in families.values()}) > 1]
        named = {f: ", ".join(f"{k}={flat.get(k)}" for k in differ) for f, flat in families.items()}
        labels[rows.index] = [f"{label} ({named[f]})" for f in rows["family"]]
    return labels


def seed_noise(trials: pd.DataFrame, axes: Sequence[str], levels: dict[str, list], terms: pd.DataFrame) -> pd.DataFrame:
    """The tidy report (columns :data:`COLUMNS` and ``sd_{task}``) of the per-seed Δm in ``trials`` over the grid
    ``axes``: one sd row per configuration (seed excluded, :func:`analysis.tables.seedless`), from the latest trial
    of each seed, with the sd of each task's term of Δm (``terms``, :func:`task_terms`) beside it."""
    family = [seedless(c, h) for c, h in zip(trials["config"], trials["config_hash"])]
    done = trials.drop(columns=list(terms), errors="ignore").join(terms).assign(family=family)
    done = done.dropna(subset=["delta_m"]).sort_values("trial").drop_duplicates(["family", "seed"], keep="last")
    groups = dict(list(done.groupby(family_labels(done, axes), sort=False)))
    rows = sd_rows(groups, list(terms)) + ratio_rows(done, [a for a in axes if len(levels[a]) >= 2], levels)
    return pd.DataFrame(rows, columns=[*COLUMNS, *(f"sd_{task}" for task in terms)])


def to_markdown(name: str, tidy: pd.DataFrame) -> str:
    tasks = [c.removeprefix("sd_") for c in tidy.columns if c.startswith("sd_")]

    def cells(row: pd.Series) -> list[str]:
        verdict = row.verdict if row.verdict == INCONCLUSIVE else f"**{row.verdict}**"
        what = row.row if row.kind == "sd" else f"{row.row} / {row.reference}"
        if row.kind == "sd":
            split = ", ".join(f"{t} {row[f'sd_{t}']:.2f}" for t in tasks)
        else:
            split = (
                f"r = {row.seed_correlation:+.2f} over {int(row.shared_seeds)} shared seeds"
                if row.shared_seeds > 2
                else ""
            )
        return [row.kind, what, f"{row.value:.2f}", f"[{row.low:.2f}, {row.high:.2f}]", str(row.n), verdict, split]

    lines = [
        f"**{name}: the seed standard deviation of Δm (points) per row of the grid with its 95 % χ² interval, judged "
        f"against {TARGET_SD:g} points (issue 12), and each axis level's sd over its first level's with the 95 % F "
        f"interval (lower / higher noise when it excludes 1); beside each sd, the sd of each task's term of Δm (where "
        f"the noise comes from; their variances add up to Δm's less the tasks' covariances), beside each ratio, the "
        f"correlation of the two levels' Δm over the seeds they share**",
        "",
        *markdown_grid(
            ["kind", "row", "value", "95 % interval", "seeds", "verdict", "sd of each task's term / seed correlation"],
            (cells(row) for _, row in tidy.iterrows()),
        ),
    ]
    return "\n".join(lines) + "\n"


def seed_noise_report(
    study: StudyData, trials: pd.DataFrame, baselines: pd.DataFrame | None, out_dir: str | Path
) -> str | None:
    """Write ``{study}-seed-noise.md`` and ``.csv`` and return the Markdown; None when no row has two seeds with Δm."""
    axes = [a for a in row_axes(study) if a in trials] or ["architecture"]
    tidy = seed_noise(trials, axes, axis_levels(study, trials, axes), task_terms(trials, baselines))
    if tidy.empty:
        return None
    name = f"{study.name}-seed-noise"
    return write_report(out_dir, name, to_markdown(name, tidy), tidy)
