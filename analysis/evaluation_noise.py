"""How much of Δm's seed spread does the finite validation set add? (issue 12, item 3)

Every finished run of the ``--study`` studies whose checkpoint is on this machine is measured again from its
checkpoint (``tsn.cli.evaluate_checkpoint``): on ``--draws`` other validation sets of the run's own size (other
synthetic scenes, ``data.data_seed`` 1…K) and on one set of ``--large`` images. Δm is taken against each run's
single-task reference as ``make tables`` computes it (the seed mean), a constant per run, so only the run's own
metrics vary. Written to ``--out`` as ``{study}-evaluation-noise.md`` (per grid row), ``.csv`` (per run: Δm on
every set) and ``.json`` (the primary metrics measured, per trial and set):

- evaluation sd: per run, the sample sd of Δm over the draws — what a validation set of that size adds to one Δm;
  per grid row, its root mean square over the row's runs; and the run's own part of it, once the sets' shared
  difficulty is taken out (:func:`noise_frame`), which is what a fixed set adds to the spread over seeds;
- seed sd: per grid row with two or more seeds, the sd of Δm over its seeds as stored (the run's validation set) and
  on the large set.

If the evaluation sd is near the seed sd, a larger validation set narrows the seed spread; if it is small, the spread
is training noise, which only more seeds (or another regime) narrow.

    python analysis/evaluation_noise.py --storage sqlite:///runs/studies.db --study schedule-synthetic-cpu
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.claims import Sample  # noqa: E402
from analysis.runs import baseline_study_of, load_study  # noqa: E402
from analysis.tables import (  # noqa: E402
    add_delta_m,
    delta_m_of,
    markdown_grid,
    per_trial,
    references,
    row_axes,
    single_task_trials,
    write_report,
)
from tsn.atomic import write_json  # noqa: E402
from tsn.checkpoint import CHECKPOINT, METRICS  # noqa: E402
from tsn.errors import ArgumentParser, entry_point  # noqa: E402

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
SD_COLUMNS = ["seed_sd_stored", "seed_sd_large", "evaluation_sd", "own_sd"]  # a row's sds, in the table's order


def measure(run_dir: str, val_samples: int, draws: int, large: int) -> dict[str, dict[str, float]]:
    """Primary metrics of one run's checkpoint per validation set: ``draw{k}`` (k = 1…draws) and ``large``."""
    import torch

    from tsn.cli import evaluate_checkpoint
    from tsn.tasks import dataset_tasks

    torch.set_num_threads(1)  # one run per process; --workers processes share the cores
    sets = {f"draw{k}": [f"data.val_samples={val_samples}", f"data.data_seed={k}"] for k in range(1, draws + 1)}
    sets["large"] = [f"data.val_samples={large}"]
    out = {}
    for name, overrides in sets.items():
        cfg, _, evaluation = evaluate_checkpoint(Path(run_dir) / CHECKPOINT, overrides, workers=1)
        out[name] = evaluation.primary(dataset_tasks(cfg.data.dataset, cfg.data.tasks or None))
    return out


def rms(values: Sequence[float]) -> float:
    data = [v for v in values if not math.isnan(v)]
    return math.sqrt(sum(v * v for v in data) / len(data)) if data else math.nan


def noise_frame(
    trials: pd.DataFrame,
    refs: pd.DataFrame,
    measured: Mapping[int, Mapping[str, Mapping[str, float]]],
    by: list[str],
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """(per run, per grid row without the seed, the sd of the validation sets' shared difficulty).

    ``trials``: :func:`analysis.tables.add_delta_m`'s frame; ``refs``: :func:`analysis.tables.references` of it. A run's
    Δm on draw k is read as run effect + set effect_k + own error: the set effect (some scenes are harder for every
    model) moves every run alike and cancels between seeds measured on one set; the own error is what a fixed
    validation set of this size adds to the spread over seeds (``own_sd``, residual of the two-way fit over every run
    of the study, with its degrees of freedom: (K − 1)(R − 1)/R per run)."""
    tasks, higher = trials.attrs["tasks"], trials.attrs["higher_is_better"]

    def delta(metrics: Mapping[str, float], reference: pd.Series) -> float:
        return delta_m_of(pd.Series(metrics), reference, tasks, higher)

    runs = []
    for trial in trials[trials["trial"].isin(measured)].to_dict("records"):  # each column keeps its type
        reference, sets = refs.loc[trial["trial"]], measured[trial["trial"]]
        runs.append(
            {
                "trial": trial["trial"],
                "row": ", ".join(f"{a}={trial[a]}" for a in by),
                "seed": trial["seed"],
                "stored": trial["delta_m"],
                **{name: delta(metrics, reference) for name, metrics in sets.items()},
            }
        )
    runs = pd.DataFrame(runs)
    draws = runs[[c for c in runs.columns if c.startswith("draw")]]
    centred = draws.sub(draws.mean(axis=1), axis=0)
    set_effect = centred.mean(axis=0)
    residual = centred - set_effect
    n_runs, n_draws = draws.shape
    runs["evaluation_sd"] = draws.std(axis=1, ddof=1)
    runs["own_sd"] = (
        ((residual**2).sum(axis=1) / ((n_draws - 1) * (n_runs - 1) / n_runs)) ** 0.5 if n_runs > 1 else math.nan
    )
    rows = [
        {
            "row": row,
            "seeds": len(group),
            "seed_sd_stored": Sample.of(group["stored"].tolist()).sd,
            "seed_sd_large": Sample.of(group["large"].tolist()).sd,
            "evaluation_sd": rms(group["evaluation_sd"].tolist()),
            "own_sd": rms(group["own_sd"].tolist()),
            "draws": n_draws,
        }
        for row, group in runs.groupby("row", sort=False)
    ]
    return runs, pd.DataFrame(rows), Sample.of(set_effect.tolist()).sd


def to_markdown(name: str, rows: pd.DataFrame, shared_sd: float, val_samples: int, large: int) -> str:
    def number(value: float) -> str:
        return "–" if pd.isna(value) else f"{value:.2f}"

    header = [
        "row",
        "seeds",
        f"seed sd, {val_samples} images",
        f"seed sd, {large} images",
        "evaluation sd",
        "of it, the run's own",
        "draws",
    ]
    lines = [
        f"### {name}",
        "",
        f"Δm (points) against each run's single-task reference. Evaluation sd: per run, the sd of Δm over other "
        f"validation sets of {val_samples} images (root mean square over the row's runs); the run's own part is what "
        f"is left once the sets' shared difficulty (sd {number(shared_sd)} over the draws, alike for every run, so it "
        f"cancels between seeds on one set) is taken out: what a fixed set of {val_samples} images adds to the seed sd. "
        f"Seed sd: over the row's seeds, on the runs' own {val_samples} images and on {large}.",
        "",
        *markdown_grid(
            header,
            ([r["row"], str(r["seeds"]), *map(number, r[SD_COLUMNS]), str(r["draws"])] for _, r in rows.iterrows()),
        ),
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage", default=DEFAULT_STORAGE)
    parser.add_argument("--study", nargs="+", required=True, help="e.g. schedule-synthetic-cpu")
    parser.add_argument("--draws", type=int, default=8, help="other validation sets of each run's size")
    parser.add_argument("--large", type=int, default=1024, help="images of the large validation set")
    parser.add_argument("--workers", type=int, default=1, help="runs measured at once (one thread each)")
    parser.add_argument("--out", default="reports")
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.draws < 2 or args.large < 1 or args.workers < 1:
        raise ValueError("--draws must be at least 2, --large and --workers at least 1")
    frames = []
    for study_name in args.study:
        study = load_study(study_name, args.storage)
        baselines = load_study(baseline_study_of(study_name, args.storage), args.storage)
        single = single_task_trials(baselines)
        trials = add_delta_m(per_trial(study), single)
        here = trials[trials["run_dir"].map(lambda d: isinstance(d, str) and (Path(d) / METRICS).is_file())]
        if here.empty:
            raise ValueError(
                f"{study_name}: no finished run of this study has its folder here (its checkpoints are measured); "
                f"run this where the sweep ran, or where its runs/ folders were copied"
            )
        val_samples = int(json.loads(here["config"].iloc[0])["data"]["val_samples"])
        with ProcessPoolExecutor(args.workers) as pool:
            jobs = {
                trial: pool.submit(measure, run_dir, val_samples, args.draws, args.large)
                for trial, run_dir in zip(here["trial"], here["run_dir"])
            }
            measured = {trial: job.result() for trial, job in jobs.items()}
        write_json(Path(args.out) / f"{study_name}-evaluation-noise.json", {str(t): m for t, m in measured.items()})
        by = row_axes(study) or ["architecture"]
        runs, rows, shared_sd = noise_frame(trials, references(trials, single), measured, by)
        frames.append((study_name, runs, rows, shared_sd, val_samples))
    for study_name, runs, rows, shared_sd, val_samples in frames:
        name = f"{study_name}-evaluation-noise"
        markdown = to_markdown(name, rows, shared_sd, val_samples, args.large)
        write_report(args.out, name, markdown, runs)
        print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
