"""Parameter and multiply-accumulate accounting for every architecture (``python -m tsn params``)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .domains import cli_number
from .errors import ArgumentParser
from .models import ARCHITECTURES, ModelConfig, MultiTaskModel, build_model
from .tasks import DatasetTasks, TaskSpec, dataset_tasks

MAX_TASKS = 64  # scaling studies: the paper's figure stops at 9


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(cfg: ModelConfig, tasks: DatasetTasks) -> MultiTaskModel:
    """The model on the meta device: shapes without storage, so counting costs no memory or compute."""
    with torch.device("meta"):
        return build_model(replace(cfg, pretrained=None), tasks)


class _ShapesOnly(TorchDispatchMode):
    """On the meta device, batch norm and bilinear upsampling return an empty tensor of their output's shape.

    Neither carries multiply-accumulates that the FLOP counter counts, but their meta kernels are Python
    decompositions (~3 and ~13 ms a call, most of a count's time): skipped, a count takes a third to a tenth as long.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.native_batch_norm.default and args[0].is_meta:
            x, training = args[0], args[5]
            stats = x.new_empty((x.shape[1],) if training else (0,))
            return torch.empty_like(x), stats, stats.clone()
        if func is torch.ops.aten.upsample_bilinear2d.default and args[0].is_meta:
            x, size = args[0], args[1]
            return x.new_empty((*x.shape[:2], *size))
        return func(*args, **(kwargs or {}))


def count_macs(model: MultiTaskModel, image_size: int, tasks: Sequence[str] | None = None) -> int:
    """Multiply-accumulates of one forward pass predicting ``tasks`` (default: all) for one image."""
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter, _ShapesOnly(), torch.no_grad():
        model.forward_tasks(x, tasks)
    return counter.get_total_flops() // 2


_MACS: dict[tuple[ModelConfig, str, int], int] = {}


def macs_per_image(cfg: ModelConfig, tasks: DatasetTasks, image_size: int) -> int:
    """``count_macs`` of ``cfg``'s model over every task, counted once per process and model definition.

    A sweep's trials and the scaling table count the same few models again and again, and a count is a meta-device
    forward (0.1 to 0.5 s on a laptop CPU) whose result depends on nothing but the definition (``tasks`` holds
    mappings, so its repr, which shows every field, stands in for it in the key).
    """
    key = (replace(cfg, pretrained=None), repr(tasks), image_size)
    if key not in _MACS:
        _MACS[key] = count_macs(meta_model(cfg, tasks), image_size)
    return _MACS[key]


def synthetic_tasks(num_tasks: int, like: DatasetTasks) -> DatasetTasks:
    """T tasks for scaling studies: the dataset's tasks cycled, renamed task0..task{T-1} (channels kept)."""
    cycled = [like.tasks[k % len(like.tasks)] for k in range(num_tasks)]
    specs = tuple(replace(t, name=f"task{k}") for k, t in enumerate(cycled))
    return DatasetTasks(like.dataset, specs, like.edge_max_dist)


def scaling_table(
    cfg: ModelConfig, tasks: DatasetTasks, task_counts: Sequence[int], architectures: Sequence[str]
) -> dict[str, dict[int, int]]:
    """Parameters per architecture for each number of tasks, d held fixed (the paper's scaling figure)."""
    table: dict[str, dict[int, int]] = {}
    for arch in architectures:
        arch_cfg = replace(cfg, architecture=arch)
        table[arch] = {}
        for t in task_counts:
            # Orthogonal codes need T | d; the count does not depend on the codes, so Gaussian ones stand in.
            count_cfg = replace(arch_cfg, encoding="gaussian")
            table[arch][t] = count_parameters(meta_model(count_cfg, synthetic_tasks(t, tasks)))
    return table


def _parse_range(text: str) -> list[int]:
    try:
        lo, _, hi = text.partition("-")
        low, high = int(lo), int(hi or lo)
    except ValueError:
        low, high = 0, 0
    if not 1 <= low <= high <= MAX_TASKS:
        raise argparse.ArgumentTypeError(
            f"--tasks-range must look like 1-9 with 1 <= low <= high <= {MAX_TASKS}, got {text!r}"
        )
    return list(range(low, high + 1))


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or ArgumentParser(prog="python -m tsn params")
    parser.add_argument("--dataset", default="pascal_context")
    parser.add_argument("--tasks", nargs="*", default=None, help="task subset (default: the dataset's)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--decoder-width", type=float, default=1.0)
    parser.add_argument("--encoding", default="orthogonal")
    parser.add_argument("--embedding-dim", type=int, default=100)
    parser.add_argument("--n-fc", type=int, default=8)
    parser.add_argument("--architectures", nargs="*", default=list(ARCHITECTURES))
    parser.add_argument(
        "--image-size", type=cli_number(int, 0, 4096), default=0, help="also count MACs per forward at this size"
    )
    parser.add_argument("--tasks-range", type=_parse_range, default=None, help="scaling with T, e.g. 1-9")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run(args: argparse.Namespace) -> int:
    tasks = dataset_tasks(args.dataset, args.tasks)
    for arch in args.architectures:
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; valid: {list(ARCHITECTURES)}")
    cfg = ModelConfig(
        backbone=args.backbone,
        decoder_width=args.decoder_width,
        encoding=args.encoding,
        embedding_dim=args.embedding_dim,
        n_fc=args.n_fc,
    )
    if args.tasks_range:
        table = scaling_table(cfg, tasks, args.tasks_range, args.architectures)
        if args.json:
            print(json.dumps({a: {str(t): n for t, n in row.items()} for a, row in table.items()}))
        else:
            print(f"{'architecture':<14}" + "".join(f"{f'T={t}':>14}" for t in args.tasks_range))
            for arch, row in table.items():
                print(f"{arch:<14}" + "".join(f"{n:>14,}" for n in row.values()))
        return 0
    counts = {}
    macs = {}
    for arch in args.architectures:
        model = meta_model(replace(cfg, architecture=arch), tasks)
        counts[arch] = count_parameters(model)
        if args.image_size:
            macs[arch] = count_macs(model, args.image_size)
    if args.json:
        print(json.dumps(counts if not macs else {"params": counts, "macs": macs}))
        return 0
    print(f"dataset {args.dataset}, tasks {list(tasks.names)}, backbone {args.backbone}, d = {args.embedding_dim}")
    header = f"{'architecture':<14}{'parameters':>14}"
    if macs:
        header += f"{'GMACs/image':>14}  (all {len(tasks.names)} tasks, {args.image_size}x{args.image_size})"
    print(header)
    for arch, n in counts.items():
        line = f"{arch:<14}{n:>14,}"
        if macs:
            line += f"{macs[arch] / 1e9:>14.2f}"
        print(line)
    return 0


__all__ = ["count_parameters", "count_macs", "macs_per_image", "meta_model", "scaling_table", "TaskSpec"]
