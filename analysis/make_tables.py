"""Regenerate every table and figure from the stored studies (``python analysis/make_tables.py --help``).

Tables go to ``--out`` as ``.md``, ``.tex`` and ``.csv`` and are printed as Markdown; figures go to
``--out/figures``. Runs are cached as Parquet under ``--out/cache`` and refreshed incrementally.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import figures  # noqa: E402
from analysis.runs import AnalysisError, StudyData, load_study, optuna_study_names  # noqa: E402
from analysis.tables import (  # noqa: E402
    Table,
    ablation_table,
    baseline_by_seed,
    baseline_claims,
    baseline_study_name,
    comparison_table,
    is_comparable,
    parse_study_name,
    scaling_tables,
    to_markdown,
    write_table,
)
from sweeps.experiment import load_experiment  # noqa: E402
from tsn.checkpoint import CheckpointError  # noqa: E402
from tsn.config import BUDGETS_FILE  # noqa: E402
from tsn.errors import ArgumentParser, entry_point  # noqa: E402

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
SCALING_EXPERIMENT = "scaling"


class Reporter:
    """Loads studies once (with their baselines), writes tables and figures, collects the Markdown."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.loaded: dict[str, StudyData] = {}
        self.markdown: list[str] = []
        self.warnings: list[str] = []

    def study(self, name: str) -> StudyData:
        if name not in self.loaded:
            self.loaded[name] = load_study(name, self.args.storage, self.out / "cache", self.args.source,
                                           self.args.wandb_path)
        return self.loaded[name]

    def emit(self, table: Table) -> None:
        write_table(table, self.out)
        self.markdown.append(to_markdown(table))

    def figure(self, make, *args) -> None:
        """Draw one figure; a missing checkpoint or too little data is a warning, never a lost table."""
        if self.args.no_figures:
            return
        try:
            make(*args)
        except (CheckpointError, FileNotFoundError, ValueError, KeyError) as err:
            self.warnings.append(f"figure {make.__name__} skipped: {err}")

    def report(self, name: str) -> None:
        experiment, _, _ = parse_study_name(name)
        if experiment == SCALING_EXPERIMENT:
            self.scaling(name)
            return
        study = self.study(name)
        baselines = self._baselines(name)
        table, trials = ablation_table(study, baselines)
        if is_comparable(name):
            comparison = comparison_table(table)
            if comparison is not None:
                self.emit(comparison)
        else:
            table.notes.append("The paper's numbers (PASCAL-Context, paper budget) are not comparable with this "
                               "dataset/budget; its qualitative claims are checked instead.")
        table.notes.extend(baseline_claims(table))
        self.emit(table)
        figure_dir = self.out / "figures"
        if "model.embedding_dim" in study.space:
            self.figure(figures.delta_m_vs_d_figure, trials, figure_dir, name)
        if "model.architecture" in study.space:
            base = baseline_by_seed(baselines) if baselines is not None else None
            self.figure(figures.convergence_figure, study.history, base, trials.attrs["higher_is_better"],
                        figure_dir, name)
            self.checkpoint_figures(trials, figure_dir, name)

    def checkpoint_figures(self, trials, figure_dir: Path, name: str) -> None:
        """Task-embedding similarity and the qualitative grid, from the first seed with TSN and task_in runs."""
        by_arch = trials.dropna(subset=["run_dir"]).sort_values(["seed", "trial"])
        for _, group in by_arch.groupby("seed"):
            dirs = dict(zip(group["architecture"], group["run_dir"]))
            if "tsn" in dirs:
                self.figure(figures.embedding_similarity_figure, dirs["tsn"], figure_dir, name)
                chosen = {a: dirs[a] for a in figures.QUALITATIVE_ARCHITECTURES if a in dirs}
                self.figure(figures.qualitative_figure, chosen, figure_dir, name)
                return

    def _baselines(self, name: str) -> StudyData | None:
        try:
            return self.study(baseline_study_name(name))
        except AnalysisError as err:
            self.warnings.append(f"{name}: no baselines ({err})")
            return None

    def scaling(self, name: str) -> None:
        """Scaling needs no trials: the model is the experiment file's (``experiments/scaling.yaml``) at this budget."""
        experiment, dataset, budget = parse_study_name(name)
        path = BUDGETS_FILE.parent / f"{experiment}.yaml"
        config = load_experiment(path).resolve(budget, dataset, {}).to_dict() if path.exists() else None
        params, macs = scaling_tables(name, config)
        self.emit(params)
        self.emit(macs)
        self.figure(figures.scaling_figure, params, self.out / "figures")


def default_studies(valid: list[str]) -> list[str]:
    """Every stored study, plus the scaling table of each dataset/budget (it has no trials to store)."""
    pairs = dict.fromkeys("-".join(parse_study_name(n)[1:]) for n in valid)
    scaling = [f"{SCALING_EXPERIMENT}-{pair}" for pair in pairs]
    return [*valid, *(s for s in scaling if s not in valid)]


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python analysis/make_tables.py", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    parser.add_argument("--study", nargs="*", default=None, help="studies to report (default: every study)")
    parser.add_argument("--out", default="reports", help="output folder (default reports/)")
    parser.add_argument("--source", choices=("optuna", "wandb"), default="optuna")
    parser.add_argument("--wandb-path", default=None, help="ENTITY/PROJECT (with --source wandb)")
    parser.add_argument("--no-figures", action="store_true")
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Write and print every requested table; 0 on success, 2 on bad input, 1 on a failure (one line on stderr)."""
    args = build_parser().parse_args(argv)
    reporter = Reporter(args)
    try:
        valid = optuna_study_names(args.storage) if args.source == "optuna" else None
        names = args.study or default_studies(valid or [])
        if not names:
            where = args.storage if valid is not None else f"W&B {args.wandb_path} (name the groups with --study)"
            raise AnalysisError(f"no studies in {where}")
        for name in names:
            if valid is not None and name not in valid and parse_study_name(name)[0] != SCALING_EXPERIMENT:
                raise AnalysisError(f"unknown study {name!r}; valid: {', '.join(valid) or '(none)'}")
        for name in names:
            reporter.report(name)
    except (AnalysisError, ValueError) as err:  # ValueError: e.g. a stored config or Δm the suite rejects
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2
    finally:
        if reporter.markdown:
            print("\n".join(reporter.markdown))
        for warning in reporter.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
