"""What a study is, in Markdown, from its experiment file: the study's note in optuna-dashboard (``make dashboard``)
and the "About" panel of its W&B workspace (:mod:`sweeps.workspace`).

optuna-dashboard shows a study note stored in the study's system attributes (``optuna_dashboard.save_note``). The
driver writes it each time a sweep opens its study; a note someone edited in the dashboard (the generated marker
line removed) is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna_dashboard import get_note, save_note

from . import records as R
from .experiment import SEED_KEY, Experiment, budget_max_seeds

REPO = Path(__file__).resolve().parent.parent
# The last line of a note the driver wrote: while it is there, the note is the experiment file's and is rewritten.
GENERATED = "_Written from the experiment file by `python -m sweeps`; delete this line to keep your own edits._"


def _values(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _flat(fixed: Mapping[str, Any]) -> list[str]:
    """``{model: {architecture: tsn}}`` -> ``["model.architecture=tsn"]``."""
    return [f"{section}.{key}={value}" for section, values in fixed.items() for key, value in (values or {}).items()]


def _shown(path: str) -> str:
    """A path inside the repository relative to it (as the Makefile and the README name it), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def _cell(text: str) -> str:
    """``text`` inside a Markdown table cell: a '|' would end the cell."""
    return text.replace("|", r"\|")


def objective_text(experiment: Experiment, dataset: str, budget: str) -> str:
    if experiment.search is not None:
        return f"{experiment.search.objective} (lower is better), minimised by a search per grid point; no baseline"
    if experiment.baseline == "single_task":
        return (
            f"Δm (astmt, %, lower is better) against the single-task study "
            f"`{R.baseline_study_name(dataset, budget)}`, same seed"
        )
    return "mean validation loss (lower is better); no single-task baseline"


def study_note(experiment: Experiment, dataset: str, budget: str, reports_dir: str | Path = "reports") -> str:
    """The Markdown note of ``experiment``'s study at ``dataset`` and ``budget``."""
    study = experiment.study_name(dataset, budget)
    table = Path(reports_dir) / f"{study}.md"
    scientific = [f"`{axis}` ∈ {{{_values(experiment.axes[axis])}}}" for axis in experiment.scientific]
    nuisance = [
        f"`{axis}` ∈ {{{_values(values)}}}"
        for axis, values in experiment.axes.items()
        if axis not in experiment.scientific
    ]
    max_seeds = budget_max_seeds(budget)
    if max_seeds is not None and SEED_KEY in experiment.axes and len(experiment.axes[SEED_KEY]) > max_seeds:
        nuisance.append(f"(the {budget} budget caps the seeds at {max_seeds})")
    rows = [
        ("experiment file", f"`{_shown(experiment.path)}`"),
        ("reproduces", experiment.reproduces or "—"),
        ("dataset / budget", f"{dataset} / {budget} (experiments/budgets.yaml)"),
        ("compared (scientific axes)", "; ".join(scientific) or "—"),
        ("repeated (nuisance axes)", "; ".join(nuisance) or "—"),
        ("fixed", ", ".join(f"`{item}`" for item in _flat(experiment.fixed)) or "—"),
        ("objective", objective_text(experiment, dataset, budget)),
        (
            "table",
            (
                f"`{table}` (and `.tex`, `.csv`); regenerate with `make tables` "
                f"or `python analysis/make_tables.py --study {study}`"
            ),
        ),
        (
            "W&B",
            (
                f"runs in group `{study}`; workspace: `python -m sweeps wandb-workspace ENTITY/PROJECT "
                f"--experiment {experiment.name} --dataset {dataset} --budget {budget}`"
            ),
        ),
    ]
    if experiment.search is not None:
        searched, trials = experiment.search.describe(), experiment.search.trials_at(budget)
        if trials < experiment.search.trials:
            searched += f" (the {budget} budget caps it at {trials})"
        rows.insert(6, ("searched", searched))
    lines = [f"## {experiment.name}: {experiment.description or 'no description'}", "", "| | |", "|---|---|"]
    return "\n".join([*lines, *(f"| {key} | {_cell(value)} |" for key, value in rows)])


def write_study_note(
    study: optuna.Study, experiment: Experiment, dataset: str, budget: str, reports_dir: str | Path = "reports"
) -> bool:
    """Store :func:`study_note` as the study's optuna-dashboard note; False when it was unchanged or hand-edited."""
    body = f"{study_note(experiment, dataset, budget, reports_dir)}\n\n{GENERATED}"
    current = get_note(study)
    if current == body or (current and GENERATED not in current):
        return False
    save_note(study, body)
    return True
