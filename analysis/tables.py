"""Stored runs -> the paper's tables (Markdown, LaTeX booktabs, CSV), each cell mean ± std over seeds.

One aggregation (:func:`summarise`) serves every table; one renderer per output format. Δm is recomputed per seed
from the stored primary metrics against the single-task reference, each task's metric averaged over the seeds of
the shared baseline study (``sweeps.records.baseline_study_name``; :func:`references` says why), then aggregated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import published
from analysis.runs import AXIS_COLUMNS, SEED_AXIS, AnalysisError, StudyData
from sweeps.records import baseline_study_name, parse_study_name
from tsn.atomic import atomic_write
from tsn.config import SCHEDULES, identity
from tsn.metrics.delta_m import delta_m
from tsn.tasks import dataset_tasks

AXIS_ORDER: dict[str, Sequence[Any]] = {
    "model.architecture": published.ARCHITECTURE_ORDER,
    "model.encoding": published.ENCODING_ORDER,
    "train.schedule": SCHEDULES,
}
BASELINE_ARCHITECTURE = "single_task"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool | None = None  # None: no arrow, no bold
    scale: float = 1.0
    digits: int = 2
    suffix: str = ""
    show_std: bool = True  # False for quantities fixed by the grid point (parameter counts)
    notation: str = "f"  # "e": scientific, ``digits`` after the point (learning rates)


@dataclass
class Table:
    """Statistics per row (index = row labels) and column: ``mean``, ``std`` and ``n`` frames of equal shape."""

    name: str
    title: str
    index_names: list[str]
    columns: list[Column]
    mean: pd.DataFrame
    std: pd.DataFrame
    n: pd.Series | None = None  # seeds per row
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ study names
def is_comparable(name: str) -> bool:
    _, dataset, budget = parse_study_name(name)
    return dataset == published.COMPARABLE["dataset"] and budget == published.COMPARABLE["budget"]


# ------------------------------------------------------------------------------------------------ per trial
def row_axes(study: StudyData) -> list[str]:
    """The axes a table's rows vary over: every grid axis but the seed (known axes first, in the paper's order)."""
    known = list(AXIS_COLUMNS)
    axes = sorted(study.space, key=lambda a: (known.index(a) if a in known else len(known), a))
    return [a for a in axes if a != SEED_AXIS]


def per_trial(study: StudyData) -> pd.DataFrame:
    """One row per COMPLETE trial: grid axes, seed, n_params, macs, stored Δm and each task's primary metric."""
    done = study.metrics[(study.metrics["state"] == "COMPLETE") & study.metrics["primary"].fillna(False)]
    if done.empty:
        raise AnalysisError(f"study {study.name!r} has no finished trials")
    wide = done.pivot_table(index="trial", columns="task", values="value", aggfunc="first")
    first = done.drop_duplicates("trial").set_index("trial")
    out = first[
        [
            "seed",
            "architecture",
            "n_params",
            "macs",
            "delta_m_stored",
            "run_dir",
            "config",
            "config_hash",
            "baseline_config_hash",
        ]
    ].join(wide)
    grid = first["grid"].map(json.loads)
    for axis in study.space:
        out[axis] = grid.map(lambda g, a=axis: g.get(a))
    out.attrs["tasks"] = task_order(list(dict.fromkeys(done["task"])), first["config"].dropna())
    out.attrs["higher_is_better"] = dict(zip(done["task"], done["higher_is_better"].astype(bool)))
    out.attrs["metric_names"] = dict(zip(done["task"], done["metric"]))
    return out.reset_index()


def task_order(tasks: list[str], configs: pd.Series) -> list[str]:
    """``tasks`` in their run's order (its ``data.tasks`` in the dataset's registry): the stored metrics' key order
    is not kept by every store (an export's JSON has sorted keys)."""
    if configs.empty:
        return tasks
    data = json.loads(configs.iloc[0])["data"]
    names = list(dataset_tasks(data["dataset"], data.get("tasks") or None).names)
    return sorted(tasks, key=lambda t: names.index(t) if t in names else len(names))


def single_task_trials(baselines: StudyData) -> pd.DataFrame:
    """The COMPLETE single-task trials, one per config hash (the latest when a config ran twice), by trial number,
    with ``family``: their configuration without the seed (:func:`seedless`)."""
    trials = per_trial(baselines)
    single = trials[trials["architecture"] == BASELINE_ARCHITECTURE].sort_values("trial")
    out = single[single["config_hash"].isna() | ~single.duplicated("config_hash", keep="last")]
    out = out.assign(family=[seedless(c, h) for c, h in zip(out["config"], out["config_hash"])])
    out.attrs.update(trials.attrs)
    return out


def seedless(config: Any, config_hash: Any) -> str:
    """A run's identity (tsn.config.identity) without its seed, as canonical JSON: the runs whose seeds one
    single-task reference pools. A run stored without its configuration is a family of its own (its hash)."""
    if not isinstance(config, str):
        return f"hash:{config_hash}"
    data = identity(json.loads(config))
    data.pop("config_hash", None)
    data["train"].pop("seed", None)
    return json.dumps(data, sort_keys=True)


def matched_baseline(row: pd.Series, baselines: pd.DataFrame | None) -> pd.Series | None:
    """The single-task trial (a row of :func:`single_task_trials`) that trial ``row`` compares with: the one its
    stored Δm used (by config hash: one seed may have several, e.g. plateau and cosine learning-rate schedules); a
    single-task trial itself (stored without one); else, for trials stored without it, the latest of its seed. None
    when there is none."""
    if baselines is None:
        return None
    key = row["baseline_config_hash"]
    if pd.isna(key) and row.get("config_hash") in set(baselines["config_hash"]):
        key = row["config_hash"]
    same = baselines["seed"] == row["seed"] if pd.isna(key) else baselines["config_hash"] == key
    hits = baselines[same.fillna(False)]
    return hits.iloc[-1] if len(hits) else None


def delta_m_of(row: pd.Series, base: pd.Series, tasks: Sequence[str], higher: Mapping[str, bool]) -> float:
    """Δm (astmt, %) of the primary metrics in ``row`` against those in ``base``."""
    return delta_m({t: row[t] for t in tasks}, {t: base[t] for t in tasks}, {t: higher[t] for t in tasks}, "astmt")


def references(trials: pd.DataFrame, baselines: pd.DataFrame | None) -> pd.DataFrame:
    """Each trial's single-task reference (index = trial): every task's primary metric averaged over the seeds of
    its matched baseline's configuration (:func:`matched_baseline`, the latest trial of each seed), with
    ``reference_trials`` (those trials), ``baseline_trial`` (the matched one, of the trial's own seed) and
    ``reference_spread``: the sample sd over those seeds of each single-task run's Δm against their mean (NaN
    with one seed), the reference's own seed noise, which a comparison with single-task itself must count.

    Why a seed mean and not the same seed's run: a multi-task run and a single-task run of one seed share no
    randomness that correlates their results (their architectures differ, so do their initialisations), so
    pairing them cancels nothing and adds the single-task run's seed noise to every Δm; against the mean, a
    row's spread over seeds is its own, and comparisons between multi-task variants share one reference.
    """
    tasks, higher = trials.attrs["tasks"], trials.attrs["higher_is_better"]
    columns = [*tasks, "reference_trials", "baseline_trial", "reference_spread"]
    pooled: dict[str, dict[str, Any]] = {}  # per baseline configuration (family), computed once

    def reference(family_key: str) -> dict[str, Any]:
        if family_key not in pooled:
            family = baselines[baselines["family"] == family_key].drop_duplicates("seed", keep="last")
            mean = family[tasks].mean()
            spread = [delta_m_of(r, mean, tasks, higher) for _, r in family.iterrows()]
            pooled[family_key] = {
                **mean.to_dict(),
                "reference_trials": tuple(int(t) for t in family["trial"]),
                "reference_spread": pd.Series(spread, dtype=float).std(ddof=1),
            }
        return pooled[family_key]

    rows = {}
    for _, row in trials.iterrows():
        match = matched_baseline(row, baselines)
        if match is not None:
            rows[row["trial"]] = {**reference(match["family"]), "baseline_trial": int(match["trial"])}
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def add_delta_m(trials: pd.DataFrame, baselines: pd.DataFrame | None) -> pd.DataFrame:
    """``delta_m`` (astmt, %) per trial against its single-task reference (:func:`references`: its trials in
    ``reference_trials``, their number and spread in ``reference_seeds`` and ``reference_spread``), and
    ``delta_m_seed`` against the single-task trial of its own seed (what a trial stores when it finishes); NaN
    without a baseline."""
    tasks, higher = trials.attrs["tasks"], trials.attrs["higher_is_better"]
    refs = references(trials, baselines)
    by_trial = baselines.set_index("trial") if baselines is not None else None

    def columns(row: pd.Series) -> dict[str, Any]:
        if row["trial"] not in refs.index:
            return {
                "delta_m": math.nan,
                "delta_m_seed": math.nan,
                "baseline_trial": pd.NA,
                "reference_trials": None,
                "reference_seeds": 0,
                "reference_spread": math.nan,
            }
        ref = refs.loc[row["trial"]]
        return {
            "delta_m": delta_m_of(row, ref, tasks, higher),
            "delta_m_seed": delta_m_of(row, by_trial.loc[ref["baseline_trial"]], tasks, higher),
            "baseline_trial": ref["baseline_trial"],
            "reference_trials": ref["reference_trials"],
            "reference_seeds": len(ref["reference_trials"]),
            "reference_spread": ref["reference_spread"],
        }

    added = pd.DataFrame([columns(row) for _, row in trials.iterrows()], index=trials.index)
    out = trials.assign(**{name: added[name] for name in added})
    out.attrs.update(trials.attrs)
    return out


def sort_key(axis: str, value: Any) -> tuple:
    order = AXIS_ORDER.get(axis, ())
    return (order.index(value), "") if value in order else (len(order), value)


# ------------------------------------------------------------------------------------------------ aggregation
def summarise(
    frame: pd.DataFrame, by: list[str], columns: list[Column], name: str, title: str, notes: Iterable[str] = ()
) -> Table:
    """Mean, sample std and count over the rows of ``frame`` sharing ``by``; rows in paper order."""
    keys = [c.key for c in columns]
    grouped = frame.groupby(by, dropna=False, sort=False)[keys]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    n = frame.groupby(by, dropna=False, sort=False).size()
    order = sorted(mean.index, key=lambda k: tuple(sort_key(a, v) for a, v in zip(by, k if len(by) > 1 else (k,))))
    # reindex, not .loc: a list of booleans (an axis like data.fresh_scenes) given to .loc is a mask, not labels
    return Table(name, title, list(by), columns, mean.reindex(order), std.reindex(order), n.reindex(order), list(notes))


def metric_columns(trials: pd.DataFrame) -> list[Column]:
    """Each task's stored primary metric with its stored direction, then Δm and the parameter count."""
    names, higher = trials.attrs["metric_names"], trials.attrs["higher_is_better"]
    cols = [Column(t, f"{t} {names[t]}", bool(higher[t])) for t in trials.attrs["tasks"]]
    return [*cols, Column("delta_m", "Δm %", False), Column("n_params", "params", None, 1e-6, 2, "M", show_std=False)]


def epoch_note(study: StudyData, trials: pd.DataFrame) -> str:
    """Which evaluation the table's numbers are: a chosen epoch, or each trial's last."""
    if study.epoch is not None:
        return f"metrics at epoch {study.epoch} (baselines at the same epoch)"
    last = sorted({json.loads(c)["train"]["epochs"] for c in trials["config"].dropna()})
    return f"metrics at the last epoch ({', '.join(map(str, last))})"


def missing_notes(study: StudyData) -> list[str]:
    """Grid points without a finished trial, with a count, and each failed trial's reason."""
    missing = study.missing_points()
    total = math.prod(len(v) for v in study.space.values()) if study.space else 0
    notes = []
    if missing:
        notes.append(f"missing: {len(missing)} of {total} grid points not finished")
        trials = study.metrics.drop_duplicates("trial")
        for point in missing:
            grid = json.dumps(point, sort_keys=True)
            tried = trials[trials["grid"].map(lambda g: json.dumps(json.loads(g), sort_keys=True)) == grid]
            label = ", ".join(f"{k}={v}" for k, v in point.items())
            if tried.empty:
                notes.append(f"- {label}: not run")
            for _, t in tried.iterrows():
                reason = f": {t['fail_reason']}" if isinstance(t["fail_reason"], str) else ""
                notes.append(f"- {label}: trial {t['trial']} {t['state']}{reason}")
    return notes


def reference_note(trials: pd.DataFrame) -> str:
    """How the table's Δm was computed, with the number of single-task seeds its references pool."""
    seeds = sorted({int(n) for n in trials["reference_seeds"] if n})
    pooled = " or ".join(map(str, seeds)) if seeds else "no"
    return (
        f"Δm per seed against the single-task reference: each task's metric averaged over the baseline's seeds "
        f"({pooled} seeds); the ± is the row's own seed spread, the reference's is in claims-*.md (Welch)"
    )


def ablation_table(study: StudyData, baselines: StudyData | None) -> tuple[Table, pd.DataFrame]:
    """The study's table (rows = grid point without seed) and the per-trial frame it was computed from."""
    experiment, dataset, budget = parse_study_name(study.name)
    base = single_task_trials(baselines) if baselines is not None else None
    rows = per_trial(study)
    if base is not None and study.name == baselines.name:  # the baseline study's own table: a configuration that
        repeated = (rows["architecture"] == BASELINE_ARCHITECTURE) & ~rows["trial"].isin(base["trial"])
        rows = rows[~repeated]  # ran twice is one row, as in the references (its latest run)
    trials = add_delta_m(rows, base)
    notes = [epoch_note(study, trials), *missing_notes(study)]
    if base is None:
        notes.append(f"Δm not computed: no baseline study {baseline_study_name(dataset, budget)}")
    else:
        notes.append(reference_note(trials))
    disagree = trials.loc[(trials["delta_m_seed"] - trials["delta_m_stored"]).abs() > 1e-6, "trial"].tolist()
    if disagree:
        notes.append(f"recomputed Δm differs from the stored one for trials {disagree} (baseline changed?)")
    if base is not None and trials["delta_m"].isna().any():
        unmatched = trials[trials["delta_m"].isna()]
        seeds = sorted({int(s) for s in unmatched["seed"].dropna()})
        notes.append(
            f"Δm missing for trials {unmatched['trial'].tolist()} (seeds {seeds}): "
            f"no finished single-task baseline of their config (or, stored without one, of their seed)"
        )
    columns = metric_columns(trials)
    title = f"{experiment} ablation, {dataset}, {budget} budget: mean ± std over seeds (Δm per seed, astmt, ↓)"
    by = row_axes(study) or ["architecture"]
    return summarise(trials, by, columns, study.name, title, notes), trials


def comparison_table(table: Table) -> Table | None:
    """Ours beside the paper's published numbers (rows = method × quantity), for comparable studies only."""
    experiment, _, _ = parse_study_name(table.name)
    paper = {"baselines": published.TABLE1, "embedding": published.EMBEDDING}.get(experiment)
    if paper is None:
        return None
    rows = []
    for label in table.mean.index:
        ref = paper.get(label if not isinstance(label, tuple) or len(label) > 1 else label[0])
        for col in table.columns:
            if ref is not None and ref.get(col.key) is not None:
                ours, theirs = table.mean.loc[label, col.key], ref[col.key]
                rows.append(
                    {
                        "row": " ".join(_labels(table, label)),
                        "quantity": col.label,
                        "ours": ours * col.scale,
                        "paper": theirs * col.scale,
                        "ours − paper": (ours - theirs) * col.scale,
                    }
                )
    if not rows:
        return None
    frame = pd.DataFrame(rows).set_index(["row", "quantity"])
    cols = [Column(c, c) for c in ("ours", "paper", "ours − paper")]
    return Table(
        f"{table.name}-vs-paper",
        "Ours vs the paper's published numbers (tsn-paper.md §5)",
        ["row", "quantity"],
        cols,
        frame,
        frame * math.nan,
    )


# ------------------------------------------------------------------------------------------------ scaling
def scaling_tables(
    name: str, config: Mapping[str, Any] | None, task_counts: Sequence[int] | None = None
) -> list[Table]:
    """Parameters and MACs per architecture for T = 1…9 (no training: counted on the meta device).

    The model is ``config`` (a stored RunConfig dict) or else the study's budget profile on its dataset.
    """
    from tsn.config import from_dict, resolve
    from tsn.models import ARCHITECTURES
    from tsn.params import macs_per_image, scaling_table, synthetic_tasks

    _, dataset, budget = parse_study_name(name)
    cfg = from_dict(config) if config else resolve(budget, extra={"data": {"dataset": dataset}})
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    counts = list(task_counts or published.SCALING_TASK_COUNTS)
    archs = sorted(ARCHITECTURES, key=lambda a: sort_key("model.architecture", a))
    params = pd.DataFrame(scaling_table(cfg.model, tasks, counts, archs)).T
    macs = pd.DataFrame(
        {
            a: {
                t: macs_per_image(
                    replace(cfg.model, architecture=a, encoding="gaussian"),
                    synthetic_tasks(t, tasks),
                    cfg.data.image_size,
                )
                for t in counts
            }
            for a in archs
        }
    ).T
    columns = [Column(t, f"T={t}") for t in counts]
    size = f"{cfg.model.backbone}, width {cfg.model.decoder_width}, d = {cfg.model.embedding_dim}"
    p = Table(
        f"scaling-params-{dataset}-{budget}",
        f"Parameters (M) vs number of tasks T ({size})",
        ["architecture"],
        [replace(c, scale=1e-6, digits=3) for c in columns],
        params,
        params * math.nan,
    )
    m = Table(
        f"scaling-macs-{dataset}-{budget}",
        f"GMACs per image predicting all T tasks, {cfg.data.image_size}×{cfg.data.image_size} ({size})",
        ["architecture"],
        [replace(c, scale=1e-9, digits=3) for c in columns],
        macs,
        macs * math.nan,
    )
    return [p, m]


# ------------------------------------------------------------------------------------------------ rendering
def _number(value: float, col: Column) -> str:
    scaled = value * col.scale
    if col.notation == "f":
        scaled = round(scaled, col.digits) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.00"
    return f"{scaled:.{col.digits}{col.notation}}{col.suffix}"


def _cell(table: Table, label: Any, col: Column) -> str:
    mean, std = table.mean.loc[label, col.key], table.std.loc[label, col.key]
    if pd.isna(mean):
        return "–"
    text = _number(mean, col)
    return text if pd.isna(std) or not col.show_std else f"{text} ± {_number(std, col)}"


def _best(table: Table, col: Column) -> Any:
    if col.higher_is_better is None:
        return None
    values = table.mean[col.key].dropna()
    if values.empty:
        return None
    return values.idxmax() if col.higher_is_better else values.idxmin()


def _arrow(col: Column, latex: bool) -> str:
    if col.higher_is_better is None:
        return ""
    if latex:
        return " $\\uparrow$" if col.higher_is_better else " $\\downarrow$"
    return " ↑" if col.higher_is_better else " ↓"


def _index_names(table: Table) -> list[str]:
    """Row-label headers: an axis' short column name (``model.encoding`` -> ``encoding``, else the key's last part)."""
    return [AXIS_COLUMNS.get(n, n.rpartition(".")[2]) for n in table.index_names]


def _labels(table: Table, label: Any) -> list[str]:
    return [str(v) for v in (label if isinstance(label, tuple) else (label,))]


def _grid(table: Table, latex: bool) -> tuple[list[str], list[list[str]]]:
    """Header and body cells; with ``latex`` every text is escaped and ± / – / bold are LaTeX."""
    esc = _tex_escape if latex else str
    header = [*map(esc, _index_names(table)), *(esc(c.label) + _arrow(c, latex) for c in table.columns)]
    header += ["n"] if table.n is not None else []
    bold = {c.key: _best(table, c) for c in table.columns}
    rows = []
    for label in table.mean.index:
        cells = []
        for col in table.columns:
            text = esc(_cell(table, label, col))
            if bold[col.key] is not None and bold[col.key] == label:
                text = f"\\textbf{{{text}}}" if latex else f"**{text}**"
            cells.append(text)
        rows.append(
            [*map(esc, _labels(table, label)), *cells] + ([str(table.n.loc[label])] if table.n is not None else [])
        )
    return header, rows


def signed(value: float, digits: int) -> str:
    """A report cell: the value with its sign, ``–`` when missing."""
    return "–" if pd.isna(value) else f"{value:+.{digits}f}"


def signed_interval(low: float, high: float, digits: int) -> str:
    """A report cell: ``[low, high]`` with signs, ``–`` when the interval is missing (n < 2)."""
    return "–" if pd.isna(low) else f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def grid_label(axes: Sequence[str], key: Any) -> str:
    """``axis=value, …`` for a groupby key (a tuple, or one value for one axis) over ``axes``."""
    return ", ".join(f"{a}={v}" for a, v in zip(axes, key if isinstance(key, tuple) else (key,)))


def axis_levels(study: StudyData, trials: pd.DataFrame, axes: Sequence[str]) -> dict[str, list]:
    """Each axis's values that ``trials`` hold, in the experiment file's order (first seen for an axis it lacks)."""
    return {
        a: list(dict.fromkeys(v for v in study.space.get(a, trials[a].unique()) if v in set(trials[a]))) for a in axes
    }


def write_report(out_dir: str | Path, name: str, markdown: str, tidy: pd.DataFrame) -> str:
    """A study's extra report: ``{name}.md`` and its tidy frame as ``{name}.csv``, each written atomically; returns
    the Markdown."""
    atomic_write(Path(out_dir) / f"{name}.md", lambda tmp: tmp.write_text(markdown))
    atomic_write(Path(out_dir) / f"{name}.csv", lambda tmp: tmp.write_text(tidy.to_csv(index=False)))
    return markdown


def markdown_grid(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table: header, separator, one line per row of cells."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def to_markdown(table: Table) -> str:
    header, rows = _grid(table, latex=False)
    lines = [f"**{table.title}**", "", *markdown_grid(header, rows)]
    return "\n".join(lines + ([""] + table.notes if table.notes else [])) + "\n"


TEX_SYMBOLS = {
    "_": "\\_",
    "%": "\\%",
    "#": "\\#",
    "&": "\\&",
    "Δm": "$\\Delta_m$",
    "↓": "$\\downarrow$",
    "↑": "$\\uparrow$",
    "±": "$\\pm$",
    "–": "--",
    "−": "$-$",
    "×": "$\\times$",
    "…": "\\ldots{}",
}


def _tex_escape(text: str) -> str:
    for symbol, tex in TEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def to_latex(table: Table) -> str:
    header, rows = _grid(table, latex=True)
    spec = "l" * len(table.index_names) + "r" * (len(header) - len(table.index_names))
    body = [" & ".join(cells) + " \\\\" for cells in [header, *rows]]
    notes = "".join(f"% {n}\n" for n in table.notes)
    return (
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{{_tex_escape(table.title)}}}\n\\label{{tab:{table.name}}}\n"
        f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n{body[0]}\n\\midrule\n"
        + "\n".join(body[1:])
        + f"\n\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n{notes}"
    )


def to_csv(table: Table) -> str:
    frame = pd.DataFrame(index=table.mean.index)
    for col in table.columns:
        frame[f"{col.key}_mean"] = table.mean[col.key]
        frame[f"{col.key}_std"] = table.std[col.key]
    if table.n is not None:
        frame["n"] = table.n
    frame.index.names = _index_names(table)
    return frame.reset_index().to_csv(index=False)


def write_table(table: Table, out_dir: str | Path, csv: str | None = None) -> dict[str, Path]:
    """``<name>.md``, ``.tex`` and ``.csv`` under ``out_dir``; ``csv``: the CSV to write instead of the mean and std
    columns (a table whose cells are no aggregates over seeds)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
        paths[ext] = out / f"{table.name}.{ext}"
        text = csv if ext == "csv" and csv is not None else render(table)
        atomic_write(paths[ext], lambda tmp, text=text: tmp.write_text(text))
    return paths
