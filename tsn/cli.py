"""Sub-commands of ``python -m tsn`` other than ``params``: train, eval, import-official, data preview, pretrain."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .atomic import check_output_file, check_output_folder
from .config import (
    EDGE_EVALUATORS,
    ConfigError,
    RunConfig,
    apply_overrides,
    check_data_root,
    check_memory,
    check_pretrained,
    from_dict,
    parse_override,
    resolve,
)
from .domains import SEED_MAX, cli_number

if TYPE_CHECKING:
    from .evaluate import Evaluation


def build_train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=None, help="architecture: tsn, task_in, task_bn, multi_decoder, single_task")
    parser.add_argument("--dataset", default=None, help="synthetic, pascal_context or nyud")
    parser.add_argument("--budget", default="smoke", help="budget profile from experiments/budgets.yaml")
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt and metrics.json go here")
    parser.add_argument("--config", default=None, help="YAML file overriding the budget")
    parser.add_argument("--baseline", default=None, help="metrics.json of a single-task run: adds Δm")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=5 embedding_dim=50")
    return parser


def _baseline(path: str | None):
    from .train import Baseline

    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"--baseline: metrics not found: {file} (give the metrics.json of a single_task run)")
    try:
        summary = json.loads(file.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"--baseline {file}: not a metrics.json ({err}); give the metrics.json of a single_task run"
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("primary"), dict):
        raise ValueError(
            f"--baseline {file}: no 'primary' metrics (a mapping of task to value); give the "
            f"metrics.json of a single_task run"
        )
    return Baseline(summary["primary"], {"path": str(file), "config_hash": summary.get("config_hash")})


def run_train(args: argparse.Namespace) -> int:
    from .train import Trainer

    extra: dict = {}
    if args.model:
        extra.setdefault("model", {})["architecture"] = args.model
    if args.dataset:
        extra.setdefault("data", {})["dataset"] = args.dataset
    cfg = resolve(args.budget, args.config, args.overrides, extra)
    check_data_root(cfg)
    check_memory(cfg)
    check_pretrained(cfg)
    check_output_folder(args.out, "--out")
    summary = Trainer(cfg, args.out, baseline=_baseline(args.baseline)).fit(resume=args.resume)
    print(json.dumps({"primary": summary["primary"], "delta_m": summary["delta_m"], "out": args.out}, indent=2))
    return 0


# What an evaluation may change about a trained run's configuration: where its data lies and which validation images
# it is measured on (more of them, or other scenes of the synthetic dataset), never what the model was trained for.
EVAL_OVERRIDES = ("data.root", "data.val_samples", "data.data_seed", "data.num_workers")


def build_eval_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("checkpoint", help="a checkpoint.pt written by `python -m tsn train`")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help=f"the validation data to measure on, e.g. data.val_samples=1024 data.data_seed=1 (any of "
        f"{', '.join(EVAL_OVERRIDES)})",
    )
    parser.add_argument("--edge-evaluator", choices=EDGE_EVALUATORS, default="seism")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes for the SEISM-compatible odsF (default: the run's train.eval_workers)",
    )
    parser.add_argument("--json", default=None, help="also write the metrics to this file")
    return parser


class CheckpointEvaluation(NamedTuple):
    config: RunConfig  # the run's, with the data overrides applied
    epoch: int | None
    evaluation: Evaluation


def check_eval_overrides(overrides: Sequence[str]) -> None:
    """Only the data a checkpoint is measured on may change (``EVAL_OVERRIDES``); one-line error otherwise."""
    for text in overrides:
        section, key, _ = parse_override(text)
        if f"{section}.{key}" not in EVAL_OVERRIDES:
            raise ConfigError(
                f"eval override {text!r}: a trained checkpoint can only be measured on other data; valid keys: "
                f"{', '.join(EVAL_OVERRIDES)}"
            )


def evaluate_checkpoint(
    checkpoint: str | Path, overrides: Sequence[str] = (), edge_evaluator: str = "seism", workers: int | None = None
) -> CheckpointEvaluation:
    """The validation metrics of a checkpoint written by ``python -m tsn train``, on its run's validation split or
    on the data ``overrides`` name (``EVAL_OVERRIDES``); needs no pretrained file: every weight is the checkpoint's."""
    from .checkpoint import CheckpointError, load_checkpoint, load_weights
    from .train import Trainer

    check_eval_overrides(overrides)
    state = load_checkpoint(checkpoint)
    try:
        cfg = from_dict(state["config"])
    except ValueError as err:
        raise CheckpointError(f"checkpoint {checkpoint}: its config is not valid here: {err}") from None
    cfg = apply_overrides(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, pretrained="none")), overrides)
    if workers is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_workers=workers))
    cfg = cfg.validate()
    check_data_root(cfg)
    trainer = Trainer(cfg, Path(checkpoint).parent)
    load_weights(trainer.model, state["model"], str(checkpoint))
    return CheckpointEvaluation(cfg, state.get("epoch"), trainer.run_validation(edge_evaluator))


def run_eval(args: argparse.Namespace) -> int:
    from .atomic import write_json

    if args.json:
        check_output_file(args.json, "--json")
    cfg, epoch, evaluation = evaluate_checkpoint(args.checkpoint, args.overrides, args.edge_evaluator, args.workers)
    report = {
        "checkpoint": args.checkpoint,
        "epoch": epoch,
        "data": dataclasses.asdict(cfg.data),
        "metrics": {
            k: {"values": dict(r.values), "conventions": dict(r.conventions)} for k, r in evaluation.results.items()
        },
        "val_loss": evaluation.losses,
    }
    if args.json:
        write_json(args.json, report)
    print(json.dumps(report, indent=2))
    return 0


def build_import_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="CHECKPOINT|key=value",
        help="the authors' tsns_model.pth or single_task_TASK.pth file(s), then overrides, e.g. data.root=/data/PASCAL",
    )
    parser.add_argument("--out", required=True, help="run folder: checkpoint.pt goes here (for `python -m tsn eval`)")
    parser.add_argument("--task", default=None, help="the task of ONE single-task file not named single_task_TASK.pth")
    return parser


def run_import(args: argparse.Namespace) -> int:
    from .official import import_official

    overrides = [a for a in args.inputs if "=" in a and not Path(a).is_file()]
    files = [a for a in args.inputs if a not in overrides]
    if not files:
        raise ValueError("import-official: give at least one official checkpoint file")
    check_output_folder(args.out, "--out")
    target = import_official(files, args.out, args.task, overrides)
    print(f"wrote {target}")
    return 0


def build_data_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="data_command", required=True)
    preview = sub.add_parser("preview", help="write a grid of samples with every task's ground truth")
    preview.add_argument("--dataset", default="synthetic")
    preview.add_argument("--out", required=True)
    preview.add_argument("--n", type=cli_number(int, 1, 1000), default=6)
    preview.add_argument("--image-size", type=cli_number(int, 32, 4096), default=128)
    preview.add_argument("--root", default=None)
    preview.add_argument("--seed", type=cli_number(int, 0, SEED_MAX), default=0)
    return parser


def run_data(args: argparse.Namespace) -> int:
    from .data.preview import write_preview

    check_output_file(args.out, "--out")
    write_preview(args.dataset, args.out, n=args.n, image_size=args.image_size, seed=args.seed, root=args.root)
    print(f"wrote {args.out}")
    return 0


def build_pretrain_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", default=None, help="weights file (default: in $TSN_CACHE_DIR/weights)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of PretrainConfig, e.g. epochs=4")
    return parser


def run_pretrain(args: argparse.Namespace) -> int:
    from .data.cache import verify_checksum
    from .pretrain import PretrainConfig, ensure_synthetic_weights, with_overrides

    cfg = with_overrides(PretrainConfig(), args.overrides)

    def progress(epoch: int, loss: float) -> None:
        print(f"pretrain epoch {epoch}/{cfg.epochs}: loss {loss:.4f}", file=sys.stderr, flush=True)

    path = ensure_synthetic_weights(cfg, args.out, on_epoch=progress)
    print(json.dumps({"path": str(path), "sha256": verify_checksum(path)}, indent=2))
    return 0
