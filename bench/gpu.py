"""The GPU section of the benchmarks: ``python -m bench.gpu`` (stage 2 of ``make gpu-check``).

For every architecture at the ``gpu`` size (synthetic tasks, 128², batch 32) and the ``paper`` size (PASCAL-Context
tasks, 512², batch 16), both ResNet-18 at the paper's widths with the budgets' bf16 autocast and channels-last, it
runs the trainer's step (``tsn.engine.train_step``, through :class:`bench.measure.StepHarness`) and measures:

- the step time (CUDA events around rounds of back-to-back steps, warm-up excluded; the median round) and
  images·tasks/s, for the one-task step (the epoch and batch schedules) and the all-tasks step (joint);
- the achieved FLOP/s (one step's FLOPs counted by ``torch.utils.flop_counter``, backward included) against a bf16
  matmul peak measured in the same run (8192³ products, best of several, at the start and the end);
- the peak GPU memory (``torch.cuda.max_memory_allocated``, reset per architecture and schedule);
- the steady-state check: host-device synchronisations and scalar reads per step from the profiler, where they come
  from (``torch.cuda.set_sync_debug_mode``), and whether anything was compiled or recompiled;
- per size, the fraction of a step spent waiting for data, with the budget's DataLoader settings (workers, pinned
  memory, augmentation) on random scenes of the dataset's format (:class:`RandomScenes`: no rendering, no files).

The encoder starts from random weights (``model.pretrained=none``): the weights change no timing, and a GPU machine
without network has no ImageNet file. ``--device cpu --tiny`` runs the same code at a tiny size on CPU (the tests'
dry run; its numbers mean nothing). The results are plain data, written to ``--json`` after every measurement (a run
stopped by its time limit keeps what it measured); :mod:`bench.gpu_report` renders them as BENCHMARKS.md's GPU
section.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity

from tsn.atomic import atomic_write, write_json
from tsn.config import RunConfig, resolve
from tsn.data.transforms import MultiTaskDataset
from tsn.errors import ArgumentParser, entry_point, one_line
from tsn.params import count_parameters
from tsn.tasks import DatasetTasks, dataset_tasks
from tsn.train import Trainer

from .measure import ARCHS, REPO, StepHarness, machine, random_batch, schedule_steps, step_flops

RANDOM_ENCODER = "model.pretrained=none"
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")
SCALAR_READ = "aten::_local_scalar_dense"  # every .item(), bool(tensor), float(tensor), of a tensor on any device


@dataclass(frozen=True)
class Repeats:
    """How a schedule's step is timed: ``warmup`` untimed steps, then ``rounds`` rounds of ``steps`` steps."""

    warmup: int
    rounds: int
    steps: int


@dataclass(frozen=True)
class GpuSize:
    """A size of the GPU section: a budget (with overrides), how each schedule is timed, how long data is waited for."""

    name: str
    budget: str
    overrides: tuple[str, ...]
    repeats: dict[str, Repeats]  # schedule -> how it is timed
    data_steps: int  # steps of the data-wait measurement (the first, which starts the workers, reported apart)


def gpu_sizes(tiny: bool) -> list[GpuSize]:
    """The paper size first (its targets matter most), then the ``gpu`` budget's."""
    if tiny:
        small = (
            "data.image_size=64",
            "train.batch_size=2",
            "model.backbone=compact",
            "model.decoder_width=0.125",
            "model.n_fc=2",
            "train.threads=1",
            "data.train_samples=8",
            "data.val_samples=2",
        )
        once = {"epoch / batch": Repeats(1, 2, 1), "joint": Repeats(1, 2, 1)}
        return [
            GpuSize(
                "paper",
                "smoke",
                (*small, "data.dataset=pascal_context", "data.augment=paper", "data.num_workers=1"),
                once,
                4,
            ),
            GpuSize("gpu", "smoke", small, once, 4),
        ]
    return [
        GpuSize("paper", "paper", (), {"epoch / batch": Repeats(3, 3, 5), "joint": Repeats(2, 3, 2)}, 30),
        GpuSize("gpu", "gpu", (), {"epoch / batch": Repeats(3, 5, 5), "joint": Repeats(2, 3, 3)}, 40),
    ]


def size_config(size: GpuSize, arch: str, device: str) -> RunConfig:
    return resolve(
        size.budget,
        overrides=[
            RANDOM_ENCODER,
            *size.overrides,
            f"model.architecture={arch}",
            "train.progress=false",
            f"train.device={device}",
        ],
    )


def describe_size(cfg: RunConfig) -> dict[str, Any]:
    data, train, model = cfg.data, cfg.train, cfg.model
    return {
        "image_size": data.image_size,
        "batch_size": train.batch_size,
        "backbone": model.backbone,
        "decoder_width": model.decoder_width,
        "dataset": data.dataset,
        "augment": data.augment,
        "num_workers": data.num_workers,
        "amp": train.amp,
        "channels_last": train.channels_last,
    }


# ------------------------------------------------------------------------------------------------ timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_call(fn: Callable[[], object], calls: int, device: torch.device) -> float:
    """Wall seconds per call of ``calls`` back-to-back calls: CUDA events on a GPU (the queue drained before and
    after), ``time.perf_counter`` on CPU."""
    synchronize(device)
    if device.type != "cuda":
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - start) / calls
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1e3 / calls


def step_seconds(harness: StepHarness, tasks: Sequence[str], repeats: Repeats) -> float:
    """The median over rounds of the mean step time of back-to-back steps."""
    for _ in range(repeats.warmup):
        harness.step(tasks)
    rounds = [
        seconds_per_call(lambda: harness.step(tasks, sync=False), repeats.steps, harness.device)
        for _ in range(repeats.rounds)
    ]
    return statistics.median(rounds)


def matmul_peak(device: torch.device, tiny: bool) -> dict[str, Any]:
    """FLOP/s of a large bf16 matrix product: the best and the median of several (the dense bf16 tensor-core peak
    this GPU reaches here, the denominator of the achieved-FLOP/s fractions)."""
    n, repeats = (256, 3) if tiny else (8192, 10)
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = [seconds_per_call(lambda: a @ b, 1, device) for _ in range(repeats)]
    flops = 2 * n**3
    return {
        "name": f"bf16 matmul {n}×{n}×{n}",
        "best": flops / min(times),
        "median": flops / statistics.median(times),
        "repeats": repeats,
    }


# ----------------------------------------------------------------------------------------- steady state
def compiled_frames() -> int:
    """Frames torch.compile (dynamo) has compiled in this process, recompilations included (0 if never imported)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters

    return int(counters["frames"]["total"])


def short_path(filename: str) -> str:
    """A source file as ``tsn/layers.py`` (this repository) or ``torch/optim/adam.py`` (an installed package)."""
    path = Path(filename)
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        parts = path.parts
        if "site-packages" in parts:
            return "/".join(parts[parts.index("site-packages") + 1 :])
        return path.name


def sync_sites(caught: Sequence[warnings.WarningMessage], steps: int) -> dict[str, float]:
    """Source line -> synchronising CUDA operations per step, from the warnings of ``set_sync_debug_mode("warn")``
    (each attributed to the Python line that called the operation), most frequent first."""
    sites = Counter(f"{short_path(w.filename)}:{w.lineno}" for w in caught if "synchroniz" in str(w.message).lower())
    return {site: count / steps for site, count in sites.most_common()}


def find_sync_sites(harness: StepHarness, tasks: Sequence[str], steps: int) -> dict[str, float] | None:
    """Where the step synchronises with the GPU (None on CPU, which has no such thing)."""
    if harness.device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                harness.step(tasks, sync=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(harness.device)
    return sync_sites(caught, steps)


def steady_state(harness: StepHarness, tasks: Sequence[str], steps: int) -> tuple[dict[str, Any], str]:
    """Syncs, scalar reads and compilations per steady-state step (profiler over ``steps`` back-to-back steps after
    two untimed ones), their source lines, and the profiler's table of the most expensive ops."""
    cuda = harness.device.type == "cuda"
    for _ in range(2):
        harness.step(tasks)
    frames = compiled_frames()
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            harness.step(tasks, sync=False)
        synchronize(harness.device)  # inside, so that the kernels are in the trace; its one call is subtracted
    names = Counter(event.name for event in prof.events())
    calls = sum(names[name] for name in SYNC_CALLS) - (1 if cuda else 0)
    result = {
        "steps": steps,
        "sync_calls_per_step": calls / steps,
        "scalar_reads_per_step": names[SCALAR_READ] / steps,
        "compiled_frames": compiled_frames() - frames,
        "sync_sites": find_sync_sites(harness, tasks, steps),
    }
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return result, prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=60)


# ------------------------------------------------------------------------------------------------- data
class RandomScenes(MultiTaskDataset):
    """``n`` training samples of random content in the format of ``tasks`` (a few distinct ones, repeated): a split's
    DataLoader, augmentation and collation without rendering or files, for any dataset and size."""

    def __init__(self, cfg: RunConfig, tasks: DatasetTasks, n: int, distinct: int = 4, seed: int = 0) -> None:
        size = cfg.data.image_size
        super().__init__(cfg.data.dataset, "train", {t.name: t.target for t in tasks.tasks}, size, cfg.data.augment)
        self.n = n
        self.targets = random_batch(tasks, distinct, size, seed)["targets"]
        self.images = torch.rand(distinct, 3, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return self.n

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        k = index % len(self.images)
        return self.images[k], {task: target[k] for task, target in self.targets.items()}, f"random_{index:06d}"


def data_wait(cfg: RunConfig, steps: int) -> dict[str, Any]:
    """The trainer's first ``steps`` steps of an epoch on :class:`RandomScenes`, with the run's loader settings:
    the time waiting for each batch vs the step's (the device drained after each step)."""
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out)
        tasks = len(trainer.tasks.names)
        trainer.train_set = RandomScenes(cfg, trainer.tasks, cfg.train.batch_size * -(-steps // tasks))
        plan, loader = trainer.epoch_batches(1)
        waits, steps_s = [], []
        batches = iter(loader)
        for planned in plan[:steps]:
            start = time.perf_counter()
            batch = next(batches)
            fetched = time.perf_counter()
            trainer.train_step(planned.tasks, batch)
            synchronize(trainer.device)
            waits.append(fetched - start)
            steps_s.append(time.perf_counter() - fetched)
        del batches, loader  # stops the workers
    wait, step = sum(waits[1:]), sum(steps_s[1:])
    per_epoch = None  # steps of one epoch of the budget (every task's pass over its samples), when it is known
    if cfg.data.train_samples:
        per_epoch = tasks * -(-cfg.data.train_samples // cfg.train.batch_size)
    steady = (wait + step) / (len(waits) - 1)  # seconds per steady step, waiting included
    return {
        "steps": len(waits),
        "num_workers": cfg.data.num_workers,
        "pin_memory": trainer.device.type == "cuda",
        "augment": cfg.data.augment,
        "first_wait_s": waits[0],
        "median_wait_s": statistics.median(waits[1:]),
        "median_step_s": statistics.median(steps_s[1:]),
        "wait_fraction": wait / (wait + step),
        "steps_per_epoch": per_epoch,
        # the first batch (the workers starting) as a share of a whole epoch of the budget
        "first_wait_epoch_fraction": None if per_epoch is None else waits[0] / (waits[0] + per_epoch * steady),
    }


# ---------------------------------------------------------------------------------------- architectures
def measure_schedule(harness: StepHarness, schedule: str, tasks: Sequence[str], repeats: Repeats) -> dict[str, Any]:
    """Step time, throughput, FLOPs and peak memory of one schedule's step."""
    cuda = harness.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(harness.device)
    seconds = step_seconds(harness, tasks, repeats)
    flops = step_flops(harness, tasks)
    images = harness.cfg.train.batch_size * len(tasks)
    return {
        "schedule": schedule,
        "tasks": len(tasks),
        "seconds": seconds,
        "images_tasks_per_s": images / seconds,
        "flops": flops,
        "flops_per_s": flops / seconds,
        "peak_mib": torch.cuda.max_memory_allocated(harness.device) / 2**20 if cuda else None,
    }


def measure_arch(size: GpuSize, arch: str, device: str) -> tuple[dict[str, Any], str]:
    """Every schedule's step and the steady-state check of one architecture at one size (the profiler's table too).
    A schedule that fails (the all-tasks step out of memory, say) is recorded as such and the rest goes on."""
    harness = StepHarness(size_config(size, arch, device))
    rows, table = [], ""
    for schedule, tasks in schedule_steps(harness.tasks.names):
        try:
            rows.append(measure_schedule(harness, schedule, tasks, size.repeats[schedule]))
            continue
        except Exception as err:  # noqa: BLE001 - recorded; the other schedule is still measured
            rows.append({"schedule": schedule, "tasks": len(tasks), "error": one_line(err)})
        harness.optimisation.zero_grad()  # after the handler: the failed step's tensors went with its traceback
        release_memory(harness.device)
    try:
        steady, table = steady_state(harness, harness.tasks.names[:1], size.repeats["epoch / batch"].steps)
    except Exception as err:  # noqa: BLE001 - recorded like a schedule's failure
        steady = {"error": one_line(err)}
    return {"arch": arch, "params": count_parameters(harness.model), "steps": rows, "steady": steady}, table


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__, "machine": machine()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=props.total_memory / 2**30,
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    return info


def measure_gpu(
    device: str,
    tiny: bool,
    archs: Sequence[str] = ARCHS,
    deadline: float | None = None,
    on_update: Callable[[dict[str, Any]], None] = lambda results: None,
    on_profile: Callable[[str, str], None] = lambda title, table: None,
) -> dict[str, Any]:
    """Every measurement of the GPU section as plain data; ``on_update(results)`` after each one. Past ``deadline``
    (``time.monotonic()``), what is left is listed under "skipped" instead of measured."""
    started = time.perf_counter()
    dev = torch.device(device)
    results: dict[str, Any] = {
        "tiny": tiny,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device_info(dev),
        "encoder": "random (model.pretrained=none)",
        "peaks": [],
        "sizes": [],
        "skipped": [],
        "errors": [],
        "wall_s": 0.0,
    }

    def update() -> None:
        results["wall_s"] = time.perf_counter() - started
        on_update(results)

    def in_time(what: str) -> bool:
        if deadline is not None and time.monotonic() > deadline:
            results["skipped"].append(what)
            return False
        return True

    results["peaks"].append({"when": "start", **matmul_peak(dev, tiny)})
    update()
    for size in gpu_sizes(tiny):
        cfg = size_config(size, "tsn", device)
        entry: dict[str, Any] = {
            "name": size.name,
            "budget": size.budget,
            **describe_size(cfg),
            "tasks": len(dataset_tasks(cfg.data.dataset, cfg.data.tasks).names),
            "archs": [],
            "data": None,
        }
        results["sizes"].append(entry)
        if in_time(f"{size.name}: data wait"):
            try:
                entry["data"] = data_wait(cfg, size.data_steps)
            except Exception as err:  # noqa: BLE001 - reported; the other measurements go on
                results["errors"].append(f"{size.name} data wait: {one_line(err)}")
            release_memory(dev)
            update()
        for arch in archs:
            if not in_time(f"{size.name}: {arch}"):
                continue
            try:
                row, table = measure_arch(size, arch, device)
                entry["archs"].append(row)
                if arch == "tsn" and table:
                    on_profile(f"{size.name} size, tsn, one-task step", table)
            except Exception as err:  # noqa: BLE001 - one architecture's failure (an OOM, say) is reported
                entry["archs"].append({"arch": arch, "error": one_line(err)})
            release_memory(dev)
            update()
    results["peaks"].append({"when": "end", **matmul_peak(dev, tiny)})
    update()
    return results


# ------------------------------------------------------------------------------------------- command line
def load_results(path: Path) -> dict[str, Any]:
    """A results file written by ``--json``; a one-line error for anything else."""
    import json

    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"--from-json {path}: cannot be read as JSON ({one_line(err)}); give the file written by "
            "python -m bench.gpu --json"
        ) from None
    if not isinstance(results, dict) or not {"sizes", "peaks", "device"} <= set(results):
        raise ValueError(
            f"--from-json {path}: not a results file of python -m bench.gpu (no sizes, peaks and "
            "device); give the file written by --json"
        )
    return results


def add_archs_argument(parser: argparse.ArgumentParser) -> None:
    """``--archs``: which architectures to measure or train, all by default (shared with ``bench.gpu_check``)."""
    parser.add_argument(
        "--archs",
        nargs="+",
        choices=ARCHS,
        default=list(ARCHS),
        metavar="ARCH",
        help=f"architectures (default all: {', '.join(ARCHS)})",
    )


def build_parser() -> argparse.ArgumentParser:
    from tsn.domains import cli_number

    parser = ArgumentParser(
        prog="python -m bench.gpu",
        description="measure training on a GPU: BENCHMARKS.md's GPU section (make gpu-check)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes in seconds, numbers meaningless (dry run)")
    add_archs_argument(parser)
    parser.add_argument("--json", type=Path, help="write the results here after every measurement")
    parser.add_argument("--md", type=Path, help="write the Markdown section here")
    parser.add_argument("--profile", type=Path, help="write the profiler's op tables of the TSN step here")
    parser.add_argument(
        "--time-limit",
        type=cli_number(float, 0, 10**6, open_low=True),
        default=None,
        help="seconds; what is left after it is skipped (and listed as skipped)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="put the section into this file (BENCHMARKS.md) between its gpu markers, keeping the rest",
    )
    parser.add_argument("--from-json", type=Path, help="render a results file of --json instead of measuring")
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    from tsn.atomic import check_output_file

    from . import gpu_report, report

    args = build_parser().parse_args(argv)
    if args.out is not None:
        report.check(args.out, report.GPU_MARKERS)
    for flag, path in (("--json", args.json), ("--md", args.md), ("--profile", args.profile)):
        if path is not None:
            check_output_file(path, flag)
    if args.from_json is not None:
        results = load_results(args.from_json)
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                "--device cuda: no CUDA device here (torch.cuda.is_available() is False); valid: "
                "--device cpu --tiny, a dry run"
            )
        deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
        tables: list[str] = []

        def on_profile(title: str, table: str) -> None:
            tables.append(f"## {title}\n\n{table}\n")
            if args.profile is not None:
                atomic_write(args.profile, lambda tmp: tmp.write_text("\n".join(tables)))

        def on_update(results: dict[str, Any]) -> None:
            if args.json is not None:
                write_json(args.json, results)

        results = measure_gpu(args.device, args.tiny, args.archs, deadline, on_update, on_profile)
    section = gpu_report.render(results)
    if args.md is not None:
        atomic_write(args.md, lambda tmp: tmp.write_text(section))
    if args.out is not None:
        report.write(args.out, section, report.GPU_MARKERS)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
