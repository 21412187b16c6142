"""W&B workspaces as code: one saved workspace per experiment study, derived from the experiment file and the task
registry, showing in W&B what ``analysis/`` makes of the study (its table and figures).

:func:`build_workspace` is pure: it builds wandb-workspaces objects and touches neither the network nor any
credential. :func:`save` uploads one as a new saved view of the project (network; needs ``wandb login``).

The keys are those :mod:`sweeps.tracking` logs. The run group is the study name; the run config is the nested
RunConfig (``model.encoding``, ...) plus ``config_hash``; the summary holds ``delta_m`` (with a single-task
baseline), ``mean_val_loss`` and ``final/<task>`` (each task's primary metric); each evaluated epoch (the W&B step)
logs ``val/<task>``, ``val/delta_m``, ``train_loss/<task>``, ``val_loss/<task>`` and ``lr/<group>``.

Runs are grouped by the experiment's scientific axes, so that a group is one grid point over its seeds, as a row of
the study's table is; bars and curves show the mean ± sd over seeds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import wandb
import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from wandb_workspaces import expr

from tsn.config import RunConfig, merge, resolve
from tsn.errors import first_line
from tsn.tasks import DatasetTasks, TaskSpec, dataset_tasks

from .experiment import SEED_KEY, Experiment, SearchParam, budget_max_seeds, experiment_files, load_experiment
from .notes import study_note
from .tracking import has_credentials

ARCHITECTURE, ENCODING, EMBEDDING_DIM = "model.architecture", "model.encoding", "model.embedding_dim"
MEAN_SD = {"groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}  # a group's mean ± sd over its seeds
# W&B entity and project names: no '/', whitespace or URL-reserved characters.
PROJECT_PATH = re.compile(r"([^/\\\s#?%:]+)/([^/\\\s#?%:]+)")
LOGIN = "no W&B credentials: run `wandb login` (or set WANDB_API_KEY), then run this again; --dry-run needs none"


class CredentialsError(ValueError):
    """Saving a workspace without W&B credentials."""


@dataclass(frozen=True)
class Objective:
    """What a study minimises, as W&B keys: Δm with a single-task baseline, else the mean validation loss."""

    name: str  # the workspace section's
    summary: str
    history: str | None  # the per-epoch key, None when none is logged
    label: str


def objective(experiment: Experiment) -> Objective:
    if experiment.baseline == "single_task":
        return Objective("Δm", "delta_m", "val/delta_m", "Δm % (astmt, lower is better)")
    return Objective("Objective", "mean_val_loss", None, "mean validation loss (lower is better)")


def parse_project_path(text: str) -> tuple[str, str]:
    """``ENTITY/PROJECT`` -> (entity, project), else a one-line ValueError."""
    match = PROJECT_PATH.fullmatch(text)
    if match is None:
        raise ValueError(
            f"ENTITY/PROJECT must be a W&B entity and project separated by one '/' "
            f"(e.g. my-team/tsn-ablations), got {text!r}"
        )
    return match[1], match[2]


def trained_experiments() -> dict[str, Experiment]:
    """Every experiment file that trains (and so has W&B runs), by experiment name."""
    return {e.name: e for e in map(load_experiment, experiment_files()) if e.train}


def select_experiments(names: Sequence[str] | None) -> list[Experiment]:
    """The named experiments (every one that trains when ``names`` is empty); a one-line ValueError for a bad name."""
    known = trained_experiments()
    for name in names or ():
        if name not in known:
            raise ValueError(
                f"no experiment {name!r} that trains (and so has W&B runs); valid: {', '.join(sorted(known))}"
            )
    return [known[name] for name in dict.fromkeys(names or sorted(known))]


def run_config(experiment: Experiment, budget: str, dataset: str | None) -> RunConfig:
    """The config every trial of the study shares (the budget's, the experiment's fixed part, the dataset); neither
    the data nor the memory is checked: a workspace can be built on any machine."""
    cfg = resolve(budget, extra=experiment.fixed)
    return merge(cfg, {"data": {"dataset": dataset}}).validate() if dataset else cfg


def n_runs(experiment: Experiment, budget: str) -> int:
    """The study's number of trials: its grid after the budget's seed cap (a search's: times its trials)."""
    cap = budget_max_seeds(budget)
    points = math.prod(len(v[:cap]) if axis == SEED_KEY and cap else len(v) for axis, v in experiment.axes.items())
    return points * (experiment.search.trials_at(budget) if experiment.search is not None else 1)


def _arrow(task: TaskSpec) -> str:
    return "higher is better" if task.higher_is_better else "lower is better"


def _spans_decades(values: Sequence[Any]) -> bool:
    """A numeric axis whose values span a factor of 10 or more reads best on a log scale (learning rates)."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(numbers) == len(values) and min(numbers) > 0 and max(numbers) >= 10 * min(numbers)


def _searched(experiment: Experiment) -> tuple[SearchParam, ...]:
    return experiment.search.space if experiment.search is not None else ()


def run_groups(experiment: Experiment) -> list[str]:
    """The runs table's groups: the scientific axes, encoding first (Δm against d reads by encoding)."""
    return sorted(experiment.scientific, key=lambda axis: axis != ENCODING)


def objective_section(experiment: Experiment, goal: Objective) -> ws.Section:
    """The study's objective per grid point, against d where d is an axis, and over every scientific axis."""
    grid = " × ".join(axis.split(".")[-1] for axis in run_groups(experiment)) or "run"
    panels: list[Any] = [
        wr.BarPlot(
            title=f"{goal.label} per {grid}: mean ± sd over seeds", metrics=[wr.SummaryMetric(goal.summary)], **MEAN_SD
        )
    ]
    if EMBEDDING_DIM in experiment.scientific:
        # A scatter plot has no grouping of its own: its runs take the runs table's groups (encoding first).
        by = ", by encoding" if ENCODING in experiment.scientific else ""
        panels.append(
            wr.ScatterPlot(
                title=f"{goal.label} against the embedding dimension d{by}",
                x=wr.Config(EMBEDDING_DIM),
                y=wr.SummaryMetric(goal.summary),
            )
        )
    columns = [
        wr.ParallelCoordinatesPlotColumn(metric=wr.Config(a), log=_spans_decades(experiment.axes[a]) or None)
        for a in experiment.scientific
    ]
    columns += [
        wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p.key), log=p.log or None) for p in _searched(experiment)
    ]
    columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(goal.summary), display_name=goal.label))
    over = "the scientific axes" + (" and the searched keys" if _searched(experiment) else "")
    panels.append(wr.ParallelCoordinatesPlot(title=f"{goal.label} over {over}", columns=columns))
    return ws.Section(name=goal.name, panels=panels, is_open=True)


def task_sections(experiment: Experiment, tasks: DatasetTasks, goal: Objective) -> list[ws.Section]:
    """Per task: its final primary metric, its validation curve and its losses; grouped by architecture when that is
    an axis (the convergence figure), else by the runs table's groups (the grid points)."""
    by = wr.Config(ARCHITECTURE) if ARCHITECTURE in experiment.scientific else None
    epochs = {"x": "Step", "title_x": "epoch", "groupby": by, **MEAN_SD}
    final = [
        wr.BarPlot(
            title=f"{t.name}: final {t.metric} ({_arrow(t)})",
            metrics=[wr.SummaryMetric(f"final/{t.name}")],
            groupby=by,
            **MEAN_SD,
        )
        for t in tasks.tasks
    ]
    curves = [
        wr.LinePlot(
            title=f"{t.name}: validation {t.metric} per epoch ({_arrow(t)})", y=[wr.Metric(f"val/{t.name}")], **epochs
        )
        for t in tasks.tasks
    ]
    if goal.history:
        curves.append(wr.LinePlot(title=f"{goal.label} per epoch", y=[wr.Metric(goal.history)], **epochs))
    losses = [
        wr.LinePlot(
            title=f"{t.name}: training and validation loss per epoch",
            y=[wr.Metric(f"train_loss/{t.name}"), wr.Metric(f"val_loss/{t.name}")],
            **epochs,
        )
        for t in tasks.tasks
    ]
    losses.append(wr.LinePlot(title="learning rate per parameter group", metric_regex="^lr/", **epochs))
    return [
        ws.Section(name="Per-task metrics", panels=final, is_open=True),
        ws.Section(name="Convergence", panels=curves, is_open=True),
        ws.Section(name="Losses and learning rates", panels=losses, is_open=False),
    ]


def build_workspace(
    experiment: Experiment, entity: str, project: str, dataset: str | None = None, budget: str = "cpu"
) -> ws.Workspace:
    """The W&B workspace of ``experiment``'s study at ``budget`` and ``dataset`` (default: the budget's); no network."""
    cfg = run_config(experiment, budget, dataset)
    dataset = cfg.data.dataset
    study = experiment.study_name(dataset, budget)
    tasks = dataset_tasks(dataset, cfg.data.tasks or None)
    goal = objective(experiment)
    about = ws.Section(
        name="About", panels=[wr.MarkdownPanel(markdown=study_note(experiment, dataset, budget))], is_open=True
    )
    shown = [*experiment.scientific, *(p.key for p in _searched(experiment))]
    columns = [f"config:{axis.replace('.', '.value.', 1)}" for axis in shown]
    columns += [f"summary:{goal.summary}", *(f"summary:final/{t}" for t in tasks.names)]
    return ws.Workspace(
        entity=entity,
        project=project,
        name=f"TSN {study}",
        sections=[about, objective_section(experiment, goal), *task_sections(experiment, tasks, goal)],
        settings=ws.WorkspaceSettings(x_axis="Step", max_runs=max(n_runs(experiment, budget), 10)),
        runset_settings=ws.RunsetSettings(
            filters=[expr.Metric("Group") == study],
            groupby=[expr.Config(axis) for axis in run_groups(experiment)],
            pinned_columns=columns,
        ),
    )


def _key(metric: Any) -> str:
    if isinstance(metric, (wr.Config, expr.Config)):
        return f"config:{metric.name}"
    if isinstance(metric, wr.SummaryMetric):
        return f"summary:{metric.name}"
    return getattr(metric, "name", str(metric))


def describe_panel(panel: Any) -> str:
    """One line: the panel's kind, title and the keys it plots and groups by."""
    title = getattr(panel, "title", None) or getattr(panel, "markdown", "").splitlines()[0]
    parts = [f"{type(panel).__name__} {title!r}"]
    for field in ("x", "y", "metrics", "metric_regex", "groupby"):
        value = getattr(panel, field, None)
        if value and value != "Step":
            parts.append(f"{field}=" + ",".join(_key(v) for v in (value if isinstance(value, list) else [value])))
    if isinstance(panel, wr.ParallelCoordinatesPlot):
        parts.append("columns=" + ",".join(_key(c.metric) for c in panel.columns))
    return " ".join(parts)


def describe(workspace: ws.Workspace) -> list[str]:
    """What :func:`save` would create: the workspace and its runs, then one line per panel."""
    settings = workspace.runset_settings
    groups = ", ".join(_key(g) for g in settings.groupby) or "nothing"
    header = (
        f"workspace {workspace.name!r} in {workspace.entity}/{workspace.project}: "
        f"runs where {settings.filters}, grouped by {groups}"
    )
    return [header, *(f"  {s.name}: {describe_panel(panel)}" for s in workspace.sections for panel in s.panels)]


def save(workspace: ws.Workspace) -> str:
    """Upload ``workspace`` as a new saved view of its project and return its URL (network; needs credentials)."""
    if not has_credentials():  # checked first: without credentials wandb.Api() would prompt for a key on a terminal
        raise CredentialsError(LOGIN)
    try:
        workspace.save()
        return workspace.url
    except (wandb.errors.UsageError, wandb.errors.AuthenticationError) as err:
        raise CredentialsError(f"{LOGIN} ({first_line(err)})") from None
