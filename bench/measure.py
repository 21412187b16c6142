"""The measurements of ``make bench``: each function measures one thing on this machine and returns plain data.

They run the same model and training step the trainer runs (``tsn.engine``), and the sweep driver as
``python -m sweeps`` runs it (timed through its ``on_trial_complete`` callback). Every time is the median of
repeated runs; variants compared with each other are timed in turn in one process, so that warm-up and load
changes hit them alike. :mod:`bench.report` turns the results into BENCHMARKS.md.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tsn.config import RunConfig, resolve
from tsn.cpu_kernels import reference_ops
from tsn.engine import build_optimisation, build_run_model, channels_last, train_step
from tsn.models import ARCHITECTURES, MultiTaskModel, build_model
from tsn.runtime import configure_threads, seed_everything, select_device
from tsn.schedules import steps_per_epoch
from tsn.target_kinds import target_kind
from tsn.tasks import DatasetTasks, dataset_tasks
from tsn.train import Trainer

ARCHS = tuple(ARCHITECTURES)
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Size:
    """A benchmark size: a budget plus overrides, and how often to repeat a step there (0: not measured)."""

    name: str
    overrides: tuple[str, ...]
    repeats: int
    archs: tuple[str, ...] = ARCHS


def sizes(quick: bool) -> list[Size]:
    if quick:
        tiny = ("data.image_size=64", "train.batch_size=2", "model.decoder_width=0.125", "model.n_fc=2")
        return [Size("cpu (quick: 64 px, batch 2)", tiny, 1, ("tsn",)), Size("paper (skipped in --quick)", (), 0)]
    paper = ("model.backbone=resnet18", "model.decoder_width=1.0")
    return [
        Size("cpu (compact, width 0.25, 64 px, batch 32)", (), 9),
        Size("paper (ResNet-18, width 1.0, 64 px, batch 16)", (*paper, "data.image_size=64", "train.batch_size=16"), 3),
        Size(
            "paper (ResNet-18, width 1.0, 512 px, batch 1)",
            (*paper, "data.image_size=512", "train.batch_size=1"),
            2,
            ("tsn",),
        ),
    ]


def config(size: Size, arch: str = "tsn") -> RunConfig:
    return resolve("cpu", overrides=[*size.overrides, f"model.architecture={arch}", "train.progress=false"])


# ------------------------------------------------------------------------------------------------ helpers
def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(tasks: DatasetTasks, batch: int, size: int, seed: int = 0) -> dict:
    """A collated batch of the trainer's format with random images and valid random targets of every kind."""
    g = torch.Generator().manual_seed(seed)
    targets = {}
    for t in tasks.tasks:
        targets[t.name] = target_kind(t.target).random(t.channels, batch, size, g)
    return {"image": torch.randn(batch, 3, size, size, generator=g), "targets": targets}


class StepHarness:
    """A run's model, optimisers and ``tsn.engine.train_step`` on one random batch: no dataset, so any size
    needs no rendering. The device is the config's ``train.device``; on CUDA the batch is in pinned memory, as the
    trainer's DataLoader (``pin_memory``) delivers it."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
        self.loss_weights = {t.name: t.loss_weight for t in self.tasks.tasks}
        self.device = select_device(cfg.train.device)
        self.channels_last = channels_last(cfg.train, self.device)
        self.model: MultiTaskModel = build_run_model(cfg, self.tasks, self.device)
        # every image labelled for every task, as on the synthetic data (the cosine schedule spans the run's steps)
        labelled = {t.name: range(cfg.data.train_samples or cfg.train.batch_size) for t in self.tasks.tasks}
        self.optimisation = build_optimisation(
            self.model, cfg.train, steps_per_epoch(cfg.train.schedule, labelled, cfg.train.batch_size)
        )
        self.batch = random_batch(self.tasks, cfg.train.batch_size, cfg.data.image_size)
        if self.device.type == "cuda":
            self.batch = {
                "image": self.batch["image"].pin_memory(),
                "targets": {t: v.pin_memory() for t, v in self.batch["targets"].items()},
            }

    def step(self, tasks: Sequence[str], sync: bool = True) -> None:
        """One training step; ``sync``: wait for the device to finish it (False: back-to-back steps queue up)."""
        train_step(
            self.model,
            self.optimisation,
            self.tasks,
            self.loss_weights,
            tuple(tasks),
            self.batch,
            device=self.device,
            amp=self.cfg.train.amp,
            channels_last=self.channels_last,
        )
        if sync and self.device.type == "cuda":
            torch.cuda.synchronize()


def schedule_steps(names: Sequence[str]) -> tuple[tuple[str, Sequence[str]], ...]:
    """The two kinds of step: one task (the epoch and batch schedules) and all tasks at once (joint)."""
    return (("epoch / batch", names[:1]), ("joint", names))


def tsn_harnesses(size_list: list[Size]) -> Iterator[tuple[Size, StepHarness]]:
    """A TSN step harness for every size that is measured."""
    for size in size_list:
        if size.repeats:
            yield size, StepHarness(config(size, "tsn"))


def step_flops(harness: StepHarness, tasks: Sequence[str]) -> int:
    with reference_ops(), FlopCounterMode(display=False) as counter:
        harness.step(tasks)
    return counter.get_total_flops()


def machine() -> str:
    """CPU (and its vector ISA), cores, threads, GPU, versions and load: what the numbers depend on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    isa = torch.backends.cpu.get_cpu_capability()
    return (
        f"{cpu} ({isa}), {os.cpu_count()} cores, {torch.get_num_threads()} torch threads; GPU: {gpu}; "
        f"torch {torch.__version__}, Python {platform.python_version()}; load average (1/5/15 min) {load}"
    )


# ---------------------------------------------------------------------------------------------- measures
@dataclass(frozen=True)
class StepTime:
    """The median time of one training step of ``arch`` at a size, and the images x tasks it trains."""

    arch: str
    schedule: str
    seconds: float
    images: int


def throughput(size_list: list[Size]) -> dict[str, list[StepTime]]:
    """Size name -> its step times per architecture and schedule (an empty list: the size is not measured).

    Within a size, the variants are timed in turn, one step each per round."""
    results: dict[str, list[StepTime]] = {}
    for size in size_list:
        results[size.name] = []
        if size.repeats == 0:
            continue
        harnesses = {arch: StepHarness(config(size, arch)) for arch in size.archs}
        variants = {
            (arch, schedule): (harness, tasks)
            for arch, harness in harnesses.items()
            for schedule, tasks in schedule_steps(harness.tasks.names)
        }
        for harness, tasks in variants.values():  # warm-up
            for _ in range(2):
                harness.step(tasks)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in variants}
        for _ in range(size.repeats):
            for key, (harness, tasks) in variants.items():
                times[key].append(median_time(lambda harness=harness, tasks=tasks: harness.step(tasks), 1, warmup=0))
        for (arch, schedule), (harness, tasks) in variants.items():
            results[size.name].append(
                StepTime(
                    arch,
                    schedule,
                    statistics.median(times[(arch, schedule)]),
                    harness.cfg.train.batch_size * len(tasks),
                )
            )
        del harnesses, variants
    return results


def step_seconds(steps: dict[str, list[StepTime]], size: str, arch: str, schedule: str) -> float:
    return next(s.seconds for s in steps[size] if (s.arch, s.schedule) == (arch, schedule))


def encoder_once_comparison(size: Size, repeats: int, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Forward + backward of all T tasks: per-task loop (encoder recomputed) vs encoder once (one decoder batch).

    ``dtype``: float64 for the equality test (the two paths then agree to rounding on any CPU)."""
    cfg = config(size, "tsn")
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    seed_everything(0)
    model = build_model(cfg.model, tasks).to(dtype)
    names = tasks.names
    x = torch.randn(cfg.train.batch_size, 3, cfg.data.image_size, cfg.data.image_size, dtype=dtype)
    grads_out = {t: torch.randn_like(model(x, t)) for t in names}

    def loss_of(outputs: dict) -> torch.Tensor:
        return sum((outputs[t] * grads_out[t]).sum() for t in names)

    def run(kind: str) -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        if kind == "loop":
            outputs = {t: model(x, t) for t in names}
        elif kind == "once, decoder per task":
            features = model.encode(x)
            outputs = {t: model.decode(features, t) for t in names}
        else:  # all tasks as one decoder batch (forward_tasks' default on GPUs)
            outputs = model.decode_tasks(model.encode(x), names, batched=True)
        loss_of(outputs).backward()
        return outputs, [p.grad.clone() for p in model.parameters()]

    ref_out, ref_grads = run("loop")
    out, grads = run("batched")
    max_out = max((ref_out[t] - out[t]).abs().max().item() for t in names)
    max_grad = max((a - b).abs().max().item() for a, b in zip(ref_grads, grads)) / max(
        a.abs().max().item() for a in ref_grads
    )

    features = [f.detach().requires_grad_() for f in model.encode(x)]
    feature_grads = [torch.randn_like(f) for f in features]

    def encoder_only() -> None:
        sum((f * g).sum() for f, g in zip(model.encode(x), feature_grads)).backward()

    def decoder_only() -> None:
        (model.decode(features, names[0]) * grads_out[names[0]]).sum().backward()

    times = {"E": [], "D": [], "loop": [], "once, decoder per task": [], "batched": []}
    fns = {
        "E": encoder_only,
        "D": decoder_only,
        "loop": lambda: run("loop"),
        "once, decoder per task": lambda: run("once, decoder per task"),
        "batched": lambda: run("batched"),
    }
    for _ in range(repeats):  # interleaved, so that load changes hit every variant alike
        for key, fn in fns.items():
            times[key].append(median_time(fn, 1, warmup=0))
    med = {k: statistics.median(v) for k, v in times.items()}
    T, E, D = len(names), med["E"], med["D"]
    theory = (T * E + T * D) / (E + T * D)
    return {
        "size": size.name,
        "T": T,
        "E": E,
        "D": D,
        "loop": med["loop"],
        "chunked": med["once, decoder per task"],
        "batched": med["batched"],
        "theory": theory,
        "speedup": med["loop"] / med["batched"],
        "speedup_chunked": med["loop"] / med["once, decoder per task"],
        "max_out": max_out,
        "max_grad": max_grad,
    }


def matmul_peaks(quick: bool) -> dict[str, float]:
    """FLOP/s of a large float32 matrix product through each library PyTorch calls for it on this device.

    A training step's FLOPs run in two libraries: matmuls and linears in BLAS (MKL on x86 CPUs), convolutions
    in oneDNN (cuDNN on GPUs). On CPUs with AVX-512 MKL may run an AVX2 kernel at half the width (it does on AMD
    EPYC) while oneDNN uses AVX-512, so the BLAS matmul alone understates what the machine can do. The second
    peak is the same kind of GEMM issued as a channels-last 1x1 convolution (M = positions, N = K = channels).
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    repeats = 3 if quick else 7
    n = 256 if quick else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)

    def mm() -> None:
        a @ b
        sync()

    channels, side = (128, 16) if quick else (1024, 64)
    x = torch.randn(1, channels, side, side, device=device).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 1, 1, device=device).contiguous(memory_format=torch.channels_last)

    def conv() -> None:
        F.conv2d(x, w)
        sync()

    conv_library = "cuDNN" if device.type == "cuda" else "oneDNN"
    return {
        f"BLAS matmul {n}×{n}×{n}": 2 * n**3 / median_time(mm, repeats, warmup=2),
        f"{conv_library} 1×1 conv as GEMM {side * side}×{channels}×{channels}": 2
        * side
        * side
        * channels**2
        / median_time(conv, repeats, warmup=2),
    }


@dataclass(frozen=True)
class StepFlops:
    """FLOPs of one TSN training step (reference ops) and the FLOP/s its measured step time achieves."""

    size: str
    schedule: str
    flops: int
    rate: float


def flops(size_list: list[Size], steps: dict[str, list[StepTime]], quick: bool) -> dict[str, Any]:
    """{"peaks": library -> FLOP/s, "steps": [StepFlops]}, the step times taken from :func:`throughput`."""
    peaks, rows = matmul_peaks(quick), []
    for size, harness in tsn_harnesses(size_list):
        for schedule, tasks in schedule_steps(harness.tasks.names):
            count = step_flops(harness, tasks)
            rows.append(StepFlops(size.name, schedule, count, count / step_seconds(steps, size.name, "tsn", schedule)))
    return {"peaks": peaks, "steps": rows}


def fast_paths(size_list: list[Size], repeats: int) -> list[dict[str, Any]]:
    """Before/after of the CPU fast paths (tsn/cpu_kernels.py): the same step with reference ops and with them."""
    rows = []
    for size, harness in tsn_harnesses(size_list):
        names = harness.tasks.names
        image = harness.batch["image"].to(harness.device)
        with torch.no_grad():
            fast = harness.model.forward_tasks(image)
            with reference_ops():
                ref = harness.model.forward_tasks(image)
        diff = max((fast[t] - ref[t]).abs().max().item() for t in names)
        for schedule, tasks in schedule_steps(names):
            times: dict[str, list[float]] = {"before": [], "after": []}
            for _ in range(max(repeats, size.repeats)):
                with reference_ops():
                    times["before"].append(median_time(lambda harness=harness, tasks=tasks: harness.step(tasks), 1))
                times["after"].append(median_time(lambda harness=harness, tasks=tasks: harness.step(tasks), 1))
            rows.append(
                {
                    "size": size.name,
                    "schedule": schedule,
                    "before": statistics.median(times["before"]),
                    "after": statistics.median(times["after"]),
                    "max_diff": diff,
                }
            )
    return rows


def data_pipeline(quick: bool) -> dict[str, Any]:
    """Synthetic generation rate, and the fraction of a ``cpu``-budget training step spent waiting for a batch."""
    from tsn.data import synthetic

    size, n = (16, 2) if quick else (64, 16)
    start = time.perf_counter()
    for i in range(n):
        synthetic.render(0, "train", i, size)
    rate = n / (time.perf_counter() - start)
    overrides = ["train.progress=false", "train.epochs=1", *_bench_threads()]
    if quick:
        overrides += [
            "data.image_size=64",
            "data.train_samples=8",
            "data.val_samples=2",
            "train.batch_size=2",
            "model.decoder_width=0.125",
            "model.n_fc=2",
        ]
    cache = tempfile.mkdtemp(prefix="tsn-bench-") if quick else None
    cfg = resolve("cpu", overrides=overrides)
    with tempfile.TemporaryDirectory() as out, _cache_dir(cache):
        trainer = Trainer(cfg, out)
        _, loader = trainer.epoch_batches(1)
        task = trainer.tasks.names[:1]
        waits, steps = [], []
        it = iter(loader)
        for _ in range(min(len(loader), 3 if quick else 8)):
            t0 = time.perf_counter()
            batch = next(it)
            t1 = time.perf_counter()
            trainer.train_step(task, batch)
            waits.append(t1 - t0)
            steps.append(time.perf_counter() - t1)
    wait, step = statistics.median(waits), statistics.median(steps)
    return {
        "image_size": size,
        "samples_per_s": rate,
        "wait_s": wait,
        "step_s": step,
        "wait_fraction": wait / (wait + step),
        "num_workers": cfg.data.num_workers,
    }


def _bench_threads() -> list[str]:
    """The trainer's override for the threads this run measures with (``--threads``): its ``train.threads=0`` would
    take every core, for its own section and every section after it."""
    return [f"train.threads={torch.get_num_threads()}"]


@contextlib.contextmanager
def _cache_dir(path: str | None) -> Iterator[None]:
    old = os.environ.get("TSN_CACHE_DIR")
    if path:
        os.environ["TSN_CACHE_DIR"] = path
    try:
        yield
    finally:
        if path:
            if old is None:
                os.environ.pop("TSN_CACHE_DIR", None)
            else:
                os.environ["TSN_CACHE_DIR"] = old


def sweep_overhead(quick: bool) -> dict[str, Any]:
    """The sweep driver's own time on a small grid: its wall time minus the training inside it.

    The training inside the driver is what the driver reports through ``on_trial_complete``: the wall time of
    building each trial's Trainer and fitting it, less the time W&B's trainer callbacks took in it. Everything else
    (study creation, claiming, trial records, heartbeats, W&B run start, logging and finish) is overhead. Timing
    the driver's own work this way is exact, where the difference of two separate trainings would drown a 1 %
    overhead in the few-% run-to-run noise of training. The overhead is fixed per trial and per sweep (the first
    W&B import and the study's creation are paid once), so its fraction depends on the trial's length: the grid
    is two full ``cpu``-budget trials, and a longer sweep amortises the one-time part.
    """
    # Imported here: the memory probes run this module in fresh processes, whose peak RSS Optuna would inflate.
    from sweeps.driver import Sweep, TrialTiming
    from sweeps.experiment import parse_experiment
    from sweeps.tracking import TrackingConfig

    overrides = ["train.progress=false", *_bench_threads()]
    if quick:
        overrides += [
            "data.image_size=64",
            "data.train_samples=4",
            "data.val_samples=2",
            "train.batch_size=2",
            "train.epochs=1",
            "model.decoder_width=0.125",
            "model.n_fc=2",
            "train.final_edge_evaluator=fast",
        ]
        dims = [5, 10]
    else:
        dims = [50, 100]
    experiment = parse_experiment(
        {
            "name": "bench",
            "description": "sweep overhead",
            "baseline": "none",
            "fixed": {"model": {"architecture": "tsn"}},
            "axes": {"scientific": {"model.embedding_dim": dims}},
        },
        "bench",
    )
    points = experiment.grid("cpu", None, overrides)
    trials: list[TrialTiming] = []
    with tempfile.TemporaryDirectory() as tmp:
        Trainer(points[0].config, Path(tmp) / "warmup").fit()  # renders / loads the dataset cache, untimed
        start = time.perf_counter()
        Sweep(
            experiment,
            "cpu",
            f"sqlite:///{tmp}/studies.db",
            overrides=overrides,
            runs_dir=Path(tmp) / "runs",
            log=lambda *a, **k: None,
            tracking=TrackingConfig(mode="offline", dir=str(Path(tmp) / "wandb")),
            on_trial_complete=trials.append,
        ).run()
        swept = time.perf_counter() - start
    if len(trials) != len(points):
        raise RuntimeError(
            f"the benchmark sweep completed {len(trials)} of its {len(points)} trials; its overhead would be wrong"
        )
    return {
        "trials": len(trials),
        "epochs": points[0].config.train.epochs,
        "swept_s": swept,
        "training_s": sum(t.fit_seconds - t.tracking_seconds for t in trials),
    }


def peak_rss_kib() -> int:
    """This process's peak resident set size in KiB.

    Linux's ``VmHWM`` belongs to the address space, which ``exec`` replaces; ``ru_maxrss`` survives ``exec`` and
    so reports the parent's peak in a child started from a large process (every probe read 5.6 GiB that way).
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, the fallback elsewhere


def memory_probe(arch: str, size_index: int, quick: bool) -> dict[str, Any]:
    """Peak memory of two training steps (all tasks) of ``arch``: CUDA allocator peak, or the peak RSS on CPU."""
    size = sizes(quick)[size_index]
    harness = StepHarness(config(size, arch))
    names = harness.tasks.names
    if harness.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        for _ in range(2):
            harness.step(names)
        return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "kind": "CUDA max_memory_allocated"}
    for _ in range(2):
        harness.step(names)
    return {"peak_mib": peak_rss_kib() / 1024, "kind": "peak RSS of the fresh process (PyTorch runtime included)"}


def memory(quick: bool) -> dict[str, Any]:
    """{"size": name, "archs": {arch: memory_probe(...)}}: each architecture probed in a fresh process."""
    size = sizes(quick)[0]
    probes = {}
    for arch in ("tsn",) if quick else ARCHS:
        cmd = [sys.executable, "-m", "bench", "--memory-probe", arch, "--threads", str(torch.get_num_threads())]
        out = subprocess.run(
            cmd + (["--quick"] if quick else []), capture_output=True, text=True, check=True, cwd=REPO
        ).stdout
        probes[arch] = json.loads(out.strip().splitlines()[-1])
    return {"size": size.name, "archs": probes}


def synthetic_edge_maps(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` edge predictions (logits ``[n, 1, size, size]``) and ground truths like a detector's on a PASCAL image:
    a dozen thin random curves; the prediction those curves shifted by up to two pixels, blurred, plus sparse
    speckle noise (about a third of the pixels above 0.001, 3 % above 0.5)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    gt = np.zeros((n, size, size), dtype=bool)
    for image in gt:
        steps = rng.integers(size // 5, size, 12)
        for start, heading, length in zip(rng.uniform(0, size, (12, 2)), rng.uniform(0, 2 * np.pi, 12), steps):
            angle = heading + np.cumsum(rng.normal(scale=0.15, size=length))
            points = (start + np.cumsum(np.stack([np.sin(angle), np.cos(angle)], axis=1), axis=0)).astype(int)
            points = points[((points >= 0) & (points < size)).all(axis=1)]
            image[points[:, 0], points[:, 1]] = True
    shifted = np.stack([np.roll(image, rng.integers(-2, 3, 2), axis=(0, 1)) for image in gt])
    speckle = rng.normal(scale=0.05, size=gt.shape) ** 3 * 40
    prob = np.clip(ndimage.gaussian_filter(shifted.astype(float), (0, 1, 1)) * 4 + speckle, 1e-5, 1 - 1e-5)
    logits = torch.from_numpy(np.log(prob / (1 - prob))).float()[:, None]
    return logits, torch.from_numpy(gt).float()[:, None]


def seism_seconds_per_image(metric_cls: type | None = None, n: int = 3, size: int = 512, repeats: int = 3) -> float:
    """CPU seconds per image of one SEISM-compatible edge update (101 thresholds, maxDist 0.0075): the minimum over
    ``repeats`` of each image's time, averaged over ``n`` images. CPU time and the minimum, because the machine
    may be shared; run it single-threaded (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``)."""
    from tsn.metrics import SeismEdgeMetric

    logits, gt = synthetic_edge_maps(n, size)
    per_image = []
    for i in range(n):
        times = []
        for _ in range(repeats):
            metric = (metric_cls or SeismEdgeMetric)(0.0075)
            start = time.process_time()
            metric.update(logits[i : i + 1], gt[i : i + 1])
            times.append(time.process_time() - start)
        per_image.append(min(times))
    return statistics.mean(per_image)


def edge_eval(quick: bool) -> dict[str, Any]:
    """{"image_size", "seism_s": CPU seconds per image of the SEISM-compatible metric, "threads"}."""
    size = 64 if quick else 512
    seconds = seism_seconds_per_image(size=size, n=1 if quick else 3, repeats=1 if quick else 3)
    return {"image_size": size, "seism_s": seconds, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------------- all of it
@dataclass(frozen=True)
class Measurements:
    """Everything one ``python -m bench`` run measured, in the order of BENCHMARKS.md's sections."""

    quick: bool
    date: str
    machine: str
    throughput: dict[str, list[StepTime]]
    encoder_once: dict[str, Any]
    flops: dict[str, Any]
    data: dict[str, Any]
    sweep: dict[str, Any]
    memory: dict[str, Any]
    fast_paths: list[dict[str, Any]]
    edge: dict[str, Any]
    wall_s: float
    load_end: tuple[float, float, float]


def measure_all(quick: bool, threads: int = 0) -> Measurements:
    """Every measurement of BENCHMARKS.md; ``quick``: tiny sizes in a minute or two, numbers meaningless (for tests)."""
    configure_threads(threads)
    size_list = sizes(quick)
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = machine()
    steps = throughput(size_list)
    encoder_once = encoder_once_comparison(size_list[0], 1 if quick else 5)
    step_rates = flops(size_list, steps, quick)
    data = data_pipeline(quick)
    sweep = sweep_overhead(quick)
    peaks = memory(quick)
    before_after = fast_paths(size_list, 1 if quick else 5)
    edge = edge_eval(quick)
    return Measurements(
        quick,
        date,
        where,
        steps,
        encoder_once,
        step_rates,
        data,
        sweep,
        peaks,
        before_after,
        edge,
        wall_s=time.perf_counter() - started,
        load_end=os.getloadavg(),
    )
