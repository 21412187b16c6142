"""Regenerate every table and figure from the stored studies (``python analysis/make_tables.py --help``).

Tables go to ``--out`` as ``.md``, ``.tex`` and ``.csv`` and are printed as Markdown; figures go to
``--out/figures``. Without ``--study`` (every study), the paper's claims are decided too (``analysis/claims.py``):
``claims-{dataset}-{budget}.md`` and ``.csv``.
Runs are cached as Parquet under ``--out/cache`` and refreshed incrementally. The numbers are those of evaluation
epoch ``--epoch`` (default: the budget's ``report: {epoch}`` in experiments/budgets.yaml, else each trial's last).
``--source export --export-dir DIR`` reads the files of ``python -m sweeps export`` instead of the study storage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import claims, contrasts, figures, plateau, recency, search, seed_noise  # noqa: E402
from analysis.runs import (  # noqa: E402
    SOURCES,
    AnalysisError,
    StudyData,
    baseline_study_of,
    export_study_names,
    load_study,
    optuna_study_names,
)
from analysis.tables import (  # noqa: E402
    Table,
    ablation_table,
    comparison_table,
    is_comparable,
    references,
    scaling_tables,
    single_task_trials,
    to_markdown,
    write_table,
)
from sweeps.experiment import load_experiment  # noqa: E402
from sweeps.records import parse_study_name, study_name  # noqa: E402
from sweeps.storage import hide_password  # noqa: E402
from tsn.atomic import check_output_folder  # noqa: E402
from tsn.checkpoint import METRICS, CheckpointError  # noqa: E402
from tsn.config import BUDGETS_FILE, load_budgets  # noqa: E402
from tsn.errors import ArgumentParser, entry_point  # noqa: E402

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
SCALING_EXPERIMENT = "scaling"
# Reports beside a study's ablation table: (study, per-trial frame, single-task trials, out dir) -> its Markdown, or
# None when the study holds nothing it can report. Every study gets EVERY_STUDY's; an experiment also its own.
EVERY_STUDY = (contrasts.contrast_report, plateau.plateau_report, seed_noise.seed_noise_report)
EXTRA_REPORTS = {recency.EXPERIMENT: (recency.recency_report,)}


class Reporter:
    """Loads studies once (with their baselines), writes tables and figures, collects the Markdown."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.loaded: dict[tuple[str, int | None], StudyData] = {}
        self.markdown: list[str] = []
        self.warnings: list[str] = []
        self.evidence: dict[tuple[str, str], claims.Evidence] = {}

    def evidence_of(self, name: str) -> tuple[str, claims.Evidence]:
        """The study's experiment and the claims' evidence of its dataset and budget."""
        experiment, dataset, budget = parse_study_name(name)
        return experiment, self.evidence.setdefault((dataset, budget), claims.Evidence(dataset, budget))

    def study(self, name: str, epoch: int | None) -> StudyData:
        if (name, epoch) not in self.loaded:
            self.loaded[name, epoch] = load_study(
                name,
                self.args.storage,
                self.out / "cache",
                self.args.source,
                self.args.wandb_path,
                epoch,
                self.args.export_dir,
            )
        return self.loaded[name, epoch]

    def emit(self, table: Table, csv: str | None = None) -> None:
        write_table(table, self.out, csv)
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
        epoch = report_epoch(name, self.args.epoch)
        study = self.study(name, epoch)
        if study.search is not None:
            self.search(name, study)
            return
        baselines = self._baselines(name, epoch)
        table, trials = ablation_table(study, baselines)
        if is_comparable(name):
            comparison = comparison_table(table)
            if comparison is not None:
                self.emit(comparison)
        else:
            table.notes.append(
                "The paper's numbers (PASCAL-Context, paper budget) are not comparable with this "
                "dataset/budget; its qualitative claims are checked instead (claims-*.md)."
            )
        self.emit(table)
        self.extra_report(name, study, trials, baselines)
        experiment, evidence = self.evidence_of(name)
        evidence.trials[experiment] = trials
        evidence.history[experiment] = study.history
        evidence.higher_is_better.update(trials.attrs["higher_is_better"])
        figure_dir = self.out / "figures"
        if "model.embedding_dim" in study.space:
            self.figure(figures.delta_m_vs_d_figure, trials, figure_dir, name)
        if "model.architecture" in study.space:
            base = references(trials, single_task_trials(baselines)) if baselines is not None else None
            self.figure(
                figures.convergence_figure, study.history, base, trials.attrs["higher_is_better"], figure_dir, name
            )
            self.checkpoint_figures(trials, figure_dir, name)

    def search(self, name: str, study: StudyData) -> None:
        """A search study: the best configuration per stratum (its own table, no Δm, no claims) and its figure."""
        table, trials = search.search_table(study)
        self.emit(table, search.tidy_csv(table))
        objective = (study.search or {}).get("objective", "objective")
        order = list(table.mean.index)
        space = study.search["space"]
        self.figure(figures.search_figure, trials, space, order, objective, self.out / "figures", name)

    def extra_report(self, name: str, study: StudyData, trials, baselines: StudyData | None) -> None:
        base = single_task_trials(baselines) if baselines is not None else None
        for report in EXTRA_REPORTS.get(parse_study_name(name)[0], ()):
            markdown = report(study, trials, base, self.out)
            if markdown is None:
                self.warnings.append(f"{name}: no {report.__name__} (no trial with a baseline and a training order)")
            else:
                self.markdown.append(markdown)
        for report in EVERY_STUDY:
            markdown = report(study, trials, base, self.out)
            if markdown is not None:
                self.markdown.append(markdown)

    def checkpoint_figures(self, trials, figure_dir: Path, name: str) -> None:
        """Task-embedding similarity and the qualitative grid, from the first seed with a TSN run finished on this
        machine (a study run in pieces may hold runs whose folders stayed on other machines, and a folder here may
        hold an unfinished run of the same configuration: only a finished run has written its metrics.json)."""
        here = trials["run_dir"].map(lambda d: isinstance(d, str) and (Path(d) / METRICS).is_file())
        by_arch = trials[here].sort_values(["seed", "trial"])
        for _, group in by_arch.groupby("seed"):
            dirs = dict(zip(group["architecture"], group["run_dir"]))
            if "tsn" in dirs:
                self.figure(figures.embedding_similarity_figure, dirs["tsn"], figure_dir, name)
                chosen = {a: dirs[a] for a in figures.QUALITATIVE_ARCHITECTURES if a in dirs}
                self.figure(figures.qualitative_figure, chosen, figure_dir, name)
                return

    def report_claims(self) -> None:
        """The claims table of every dataset and budget reported; only from a full report (``--study`` unset), since
        a partial one lacks the other studies' evidence and would overwrite the table with missing verdicts."""
        for (dataset, budget), evidence in self.evidence.items():
            frame = claims.evaluate(evidence)
            claims.write_claims(frame, self.out, dataset, budget)
            self.markdown.append(claims.to_markdown(frame, dataset, budget))

    def _baselines(self, name: str, epoch: int | None) -> StudyData | None:
        """The shared single-task study, at the same epoch as ``name``'s trials."""
        try:
            storage = self.args.storage if self.args.source == "optuna" else None
            export_dir = self.args.export_dir if self.args.source == "export" else None
            return self.study(baseline_study_of(name, storage, export_dir), epoch)
        except AnalysisError as err:
            self.warnings.append(f"{name}: no baselines ({err})")
            return None

    def scaling(self, name: str) -> None:
        """Scaling needs no trials: the model is the experiment file's (``experiments/scaling.yaml``) at this budget."""
        experiment, dataset, budget = parse_study_name(name)
        path = BUDGETS_FILE.parent / f"{experiment}.yaml"
        config = load_experiment(path).resolve(budget, dataset, {}).to_dict() if path.exists() else None
        params, macs = scaling_tables(name, config)
        self.evidence_of(name)[1].scaling_params = params.mean
        self.emit(params)
        self.emit(macs)
        self.figure(figures.scaling_figure, params, self.out / "figures")


def report_epoch(name: str, epoch: int | None) -> int | None:
    """``epoch`` if given, else the study budget's ``report: {epoch: N}`` (None: each trial's last epoch)."""
    if epoch is not None:
        return epoch
    budget = parse_study_name(name)[2]
    report = (load_budgets().get(budget) or {}).get("report") or {}
    value = report.get("epoch")
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{BUDGETS_FILE}: {budget}.report.epoch must be a positive integer, got {value!r}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer epoch, got {text!r}")
    return int(text)


def default_studies(valid: list[str]) -> list[str]:
    """Every stored study, plus the scaling table of each dataset/budget (it has no trials to store)."""
    pairs = dict.fromkeys(parse_study_name(n)[1:] for n in valid)
    scaling = [study_name(SCALING_EXPERIMENT, *pair) for pair in pairs]
    return [*valid, *(s for s in scaling if s not in valid)]


def stored_studies(args: argparse.Namespace) -> list[str] | None:
    """Every study the source holds (None for W&B, which cannot list them)."""
    if args.source == "optuna":
        return optuna_study_names(args.storage)
    if args.source == "export":
        return export_study_names(args.export_dir)
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python analysis/make_tables.py", description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    parser.add_argument(
        "--study", action="extend", nargs="+", default=None, help="studies to report (default: every study)"
    )
    parser.add_argument("--out", default="reports", help="output folder (default reports/)")
    parser.add_argument("--source", choices=SOURCES, default="optuna")
    parser.add_argument("--wandb-path", default=None, help="ENTITY/PROJECT (with --source wandb)")
    parser.add_argument(
        "--export-dir",
        default="reports/trials",
        help="files of `python -m sweeps export` (with --source export; default reports/trials)",
    )
    parser.add_argument(
        "--epoch",
        type=positive_int,
        default=None,
        help="report the evaluation of this epoch (default: the budget's report epoch, else the last)",
    )
    parser.add_argument("--no-figures", action="store_true")
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Write and print every requested table; 0 on success, 2 on bad input, 1 on a failure (one line on stderr)."""
    args = build_parser().parse_args(argv)
    args.storage = hide_password(args.storage)
    check_output_folder(args.out, "--out")
    reporter = Reporter(args)
    try:
        valid = stored_studies(args)
        names = args.study or default_studies(valid or [])
        if not names:
            where = {
                "optuna": args.storage,
                "export": args.export_dir,
                "wandb": f"W&B {args.wandb_path} (name the groups with --study)",
            }[args.source]
            raise AnalysisError(f"no studies in {where}")
        for name in names:
            if valid is not None and name not in valid and parse_study_name(name)[0] != SCALING_EXPERIMENT:
                raise AnalysisError(f"unknown study {name!r}; valid: {', '.join(valid) or '(none)'}")
        for name in names:
            reporter.report(name)
        if args.study is None:
            reporter.report_claims()
    finally:  # what was reported before a failure (which the boundary reports last, in one line)
        if reporter.markdown:
            print("\n".join(reporter.markdown))
        for warning in reporter.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
