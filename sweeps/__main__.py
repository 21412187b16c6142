"""``python -m sweeps {run,launch,worker,retry,trial,export,wandb-workspace}``: run an experiment as a study, run
it with N workers (this machine or Slurm), join one, requeue its failed points, train one W&B-tracked run, export
finished studies to files that ``analysis/make_tables.py --source export`` reads, or build each experiment's W&B
workspace. Every output folder and the study storage are checked before anything is written."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from tsn.atomic import check_output_folder
from tsn.config import config_hash, resolve
from tsn.domains import cli_number
from tsn.errors import ArgumentParser, entry_point, redact
from tsn.train import Trainer

from .driver import EnvironmentFault, Interrupted, Sweep, one_line
from .experiment import load_experiment
from .export import export, restore
from .launch import add_arguments as add_launch_arguments
from .launch import launch
from .storage import DEFAULT_STORAGE, PASSWORD_VARIABLE, hide_password
from .tracking import TrackingConfig, WandbRun

REPO = Path(__file__).resolve().parent.parent


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help=f"study storage URL (default {DEFAULT_STORAGE}); give a database password in "
        f"{PASSWORD_VARIABLE} or PGPASSWORD rather than in the URL",
    )


def _add_common(parser: argparse.ArgumentParser) -> None:
    _add_storage(parser)
    parser.add_argument(
        "--n-trials",
        type=cli_number(int, 1, 10**6),
        default=None,
        help="train at most this many trials in this process",
    )
    parser.add_argument(
        "--timeout",
        type=cli_number(float, 0, 10**8, open_low=True),
        default=None,
        help="stop starting trials after this many seconds",
    )
    parser.add_argument("--runs-dir", default="runs", help="checkpoints and metrics per config hash")
    parser.add_argument("--reports-dir", default="reports", help="where the tables and figures go at the end")
    parser.add_argument("--no-wandb", action="store_true", help="do not mirror trials to W&B")
    parser.add_argument("--wandb-project", default="tsn-ablations")
    parser.add_argument("--wandb-entity", default=None)
    parser.add_argument("--no-tables", action="store_true", help="do not print the tables at the end")


def _add_experiment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="e.g. experiments/embedding.yaml")
    parser.add_argument("--budget", default="cpu", help="smoke, cpu or paper (experiments/budgets.yaml)")
    parser.add_argument("--dataset", default=None, help="synthetic, pascal_context or nyud (default: the budget's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for every trial, e.g. --set data.root=/data/PASCAL_MT",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m sweeps", description="TSN ablation sweeps (Optuna + W&B)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) an experiment file as an Optuna study")
    _add_experiment(run)
    _add_common(run)
    many = sub.add_parser("launch", help="run an experiment with N workers on this machine or on Slurm (submitit)")
    _add_experiment(many)
    _add_common(many)
    add_launch_arguments(many)
    trial = sub.add_parser("trial", help="train one configuration as a W&B run (the program of sweeps/wandb/*.yaml)")
    trial.add_argument("--budget", default="cpu")
    trial.add_argument("--dataset", default=None)
    trial.add_argument("--group", default="wandb-sweep", help="W&B group (the experiment's name)")
    trial.add_argument("--runs-dir", default="runs")
    trial.add_argument("--wandb-project", default="tsn-ablations")
    trial.add_argument("--wandb-entity", default=None)
    trial.add_argument(
        "overrides", nargs="*", help="key=value, e.g. model.encoding=gaussian (W&B's ${args_no_hyphens})"
    )
    worker = sub.add_parser("worker", help="join a running study from any machine")
    worker.add_argument("--study", required=True)
    _add_common(worker)
    retry = sub.add_parser("retry", help="requeue the failed points of a study; the next run or worker trains them")
    retry.add_argument(
        "--failed",
        required=True,
        metavar="STUDY",
        help="the experiment's study (its failed single-task baselines are requeued too)",
    )
    _add_storage(retry)
    out = sub.add_parser("export", help="write each study's trials as compact JSON (make tables SOURCE=export)")
    _add_storage(out)
    out.add_argument(
        "--study", action="extend", nargs="+", default=None, help="studies to export (default: every study)"
    )
    out.add_argument("--out", default="reports/trials", help="output folder (default reports/trials/)")
    back = sub.add_parser(
        "import", help="add exported finished trials to a storage (continue a sweep run in pieces on another machine)"
    )
    _add_storage(back)
    back.add_argument(
        "--study", action="extend", nargs="+", default=None, help="studies to import (default: every exported study)"
    )
    back.add_argument(
        "--from", dest="export_dir", default="reports/trials", help="export folder (default reports/trials/)"
    )
    view = sub.add_parser("wandb-workspace", help="save a W&B workspace per experiment (after `wandb sync`)")
    view.add_argument("project_path", metavar="ENTITY/PROJECT", help="the W&B project the runs were synced to")
    view.add_argument(
        "--experiment",
        action="append",
        default=None,
        metavar="NAME",
        help="an experiment's name, repeatable (default: every experiment that trains)",
    )
    view.add_argument("--budget", default="cpu", help="the studies' budget (default cpu)")
    view.add_argument("--dataset", default=None, help="the studies' dataset (default: the budget's)")
    view.add_argument(
        "--dry-run",
        action="store_true",
        help="print each workspace's panels, one a line, and save nothing (offline, no credentials)",
    )
    return parser


def _tables(args: argparse.Namespace, study: str) -> None:
    if args.no_tables:
        return
    script = REPO / "analysis" / "make_tables.py"
    if not script.exists():
        return
    subprocess.run(
        [sys.executable, str(script), "--storage", args.storage, "--study", study, "--out", args.reports_dir],
        check=False,
    )


def run_single_trial(args: argparse.Namespace) -> int:
    """One configuration, tracked in W&B: what a native W&B sweep agent runs for each of its grid points."""
    extra = {"data": {"dataset": args.dataset}} if args.dataset else None
    cfg = resolve(args.budget, overrides=args.overrides, extra=extra)
    key = config_hash(cfg)
    tracking = TrackingConfig(project=args.wandb_project, entity=args.wandb_entity, dir=args.runs_dir)
    run = WandbRun(
        tracking,
        study=args.group,
        config_hash=key,
        job_type="trial",
        name=f"{args.group}-{key}",
        tags=[cfg.data.dataset, args.budget, cfg.model.architecture, args.group],
        config={**cfg.to_dict(), "config_hash": key},
    )
    out = Path(args.runs_dir) / f"{cfg.data.dataset}-{args.budget}" / key
    try:
        summary = Trainer(cfg, out, callbacks=[run]).fit(resume=True)
    except Exception as err:
        run.finish(exit_code=1, reason=one_line(err))
        raise
    run.log_summary(summary)
    run.finish()
    return 0


def wandb_workspaces(args: argparse.Namespace) -> int:
    """Build every workspace (each checked) before saving any; a bad name or path is one line, exit 2."""
    from .workspace import build_workspace, describe, parse_project_path, save, select_experiments  # loads wandb

    entity, project = parse_project_path(args.project_path)
    workspaces = [
        build_workspace(experiment, entity, project, args.dataset, args.budget)
        for experiment in select_experiments(args.experiment)
    ]
    for workspace in workspaces:
        print("\n".join(describe(workspace)) if args.dry_run else f"{workspace.name}: {save(workspace)}")
    return 0


@contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (a cluster's scheduler) between trials stops the sweep as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


OUTPUT_FOLDERS = {"runs_dir": "--runs-dir", "reports_dir": "--reports-dir", "out": "--out"}  # what a command writes


def _check_outputs(args: argparse.Namespace) -> None:
    """Each folder the command will write must be a writable folder: refused in one line before anything is written."""
    for name, flag in OUTPUT_FOLDERS.items():
        if hasattr(args, name) and not (name == "reports_dir" and args.no_tables):
            check_output_folder(getattr(args, name), flag)


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "storage"):  # children and W&B get the URL without the password (it moves to the environment)
        args.storage = hide_password(args.storage)
    _check_outputs(args)
    # A W&B service inherited from a parent process dies with it; this process's runs need their own.
    os.environ.pop("WANDB_SERVICE", None)
    if args.command == "export":
        for path in export(args.storage, args.out, args.study):
            print(path)
        return 0
    if args.command == "import":
        for name, count in restore(args.storage, args.export_dir, args.study).items():
            print(f"{name}: {count} finished trial(s) added")
        return 0
    if args.command == "launch":
        return launch(args, _tables)
    if args.command == "wandb-workspace":
        return wandb_workspaces(args)
    if args.command == "trial":
        return run_single_trial(args)
    if args.command == "retry":
        sweep = Sweep.from_storage(args.failed, args.storage)
        count = sweep.requeue_failed()
        print(
            f"requeued {count} failed point(s) of {sweep.study_name}; the next `python -m sweeps run` or "
            f"`python -m sweeps worker --study {sweep.study_name}` trains them"
        )
        return 0
    tracking = TrackingConfig(
        enabled=not args.no_wandb, project=args.wandb_project, entity=args.wandb_entity, dir=args.runs_dir
    )
    try:
        with _sigterm_as_ctrl_c():
            common = dict(runs_dir=args.runs_dir, tracking=tracking)
            if args.command == "run":
                sweep = Sweep(
                    load_experiment(args.experiment),
                    args.budget,
                    args.storage,
                    dataset=args.dataset,
                    overrides=args.overrides,
                    **common,
                )
            else:
                sweep = Sweep.from_storage(args.study, args.storage, **common)
            if not sweep.experiment.train:
                print(f"{sweep.experiment.name}: nothing to train; see analysis/make_tables.py")
                return 0
            counts = sweep.run(n_trials=args.n_trials, timeout=args.timeout)
    except Interrupted as err:  # a BaseException, which the boundary leaves alone
        print(redact(f"stopped: {err}; run the same command again to resume"), file=sys.stderr)
        return 1 if isinstance(err, EnvironmentFault) else 130
    except KeyboardInterrupt:  # Ctrl-C between trials: nothing was running, nothing to record
        print("stopped: interrupted between trials; run the same command again to resume", file=sys.stderr)
        return 130
    _tables(args, sweep.study_name)
    if not args.no_tables:
        print(f"tables and figures: {args.reports_dir}/ (regenerate with `make tables`)")
    print(
        f"W&B runs: {Path(args.runs_dir) / 'wandb'} (offline runs: `wandb sync {Path(args.runs_dir) / 'wandb'}/offline-run-*`)"
    )
    return 1 if counts.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
