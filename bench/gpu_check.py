"""``python -m bench.gpu_check`` (``make gpu-check``): issue 14's checks on one GPU, in at most 8 minutes.

Without a CUDA device it prints one line and exits 0. With one, three stages run one after another, each in its own
processes under a time limit; a stage that fails or runs out of time is reported and the next one runs:

1. ``tests``: the CUDA tests, ``pytest -m gpu tests/test_gpu.py`` (what ``make test-all`` adds to the CPU suite);
2. ``bench``: ``python -m bench.gpu``, BENCHMARKS.md's GPU section (step time and images·tasks/s per architecture at
   the ``gpu`` and ``paper`` sizes, achieved FLOP/s against a bf16 matmul peak of the same run, peak memory, data
   wait with the budgets' loaders, host-device syncs and compilations in the steady-state step);
3. ``trials``: the ``gpu`` budget's synthetic data rendered once, then one ``gpu``-budget trial per architecture
   through the real command line, ``python -m tsn train --budget gpu model.pretrained=none train.epochs=E``: the
   GPU machine has no network and no ImageNet file, so the encoder starts from random weights (the timing is the
   same; the metrics are not the budget's). A whole trial is 12 epochs; E (``--trial-epochs``, default 3) keeps the
   five trials inside the time limit, and each trial's wall time is extrapolated to 12 epochs from its measured
   parts (start-up, first epoch, steady epochs, final evaluation), labelled as such.

Everything goes to ``--out`` (default ``$OUT``, which the device tool copies back): ``gpu-check.log`` (every stage's
output), ``gpu-check.json`` (environment, stages, trial times), and stage 2's ``bench-gpu.json``, ``bench-gpu.md``
and ``profile.txt``. The exit code is 0 when every stage passed, 1 otherwise. ``--dry-run`` runs the same stages on
CPU at tiny sizes (the tests' check of this script; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from tsn.atomic import atomic_write, check_output_folder, write_json
from tsn.config import resolve
from tsn.errors import ArgumentParser, entry_point, one_line
from tsn.runtime import git_commit

from .gpu import RANDOM_ENCODER, add_archs_argument
from .measure import REPO

SKIP_LINE = "gpu-check: skipped, no CUDA device (torch.cuda.is_available() is False)"
TIME_LIMIT = 450.0  # seconds: 8 minutes less a margin for start-up and the copy back
# Each stage's share of the time limit; a stage may also use what the ones before it left unused.
STAGE_SHARES = {"tests": 0.2, "bench": 0.45, "trials": 0.35}
# What the stages import beyond torch (the GPU machine's image lacks some: carry them as wheels, see the README).
MODULES = ("numpy", "yaml", "scipy", "tqdm", "PIL", "pytest", "optuna", "optuna_dashboard", "sqlalchemy")
DRY_TRIAL = (
    "data.train_samples=16",
    "data.val_samples=8",
    "train.batch_size=8",
    "train.threads=1",
    "model.decoder_width=0.125",
    "model.n_fc=2",
)
FILES = ("gpu-check.log", "gpu-check.json", "bench-gpu.json", "bench-gpu.md", "profile.txt")


@dataclass
class Stage:
    name: str
    status: str = "not run"  # passed | failed | timed out | skipped
    seconds: float = 0.0
    detail: str = ""


@dataclass
class Check:
    """One run of the checks: where it writes, its clock, and what it found."""

    out: Path
    work: Path
    log: TextIO
    dry_run: bool
    archs: tuple[str, ...]
    trial_epochs: int
    deadline: float
    benchmarks: Path | None = None  # BENCHMARKS.md to put the GPU section into (besides bench-gpu.md)
    stages: list[Stage] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.log.write(f"# {line}\n")
        self.log.flush()

    def run(self, cmd: Sequence[str], timeout: float) -> tuple[int | None, float]:
        """Run ``cmd`` in the repository with its output in the log; (exit code or None if it timed out, seconds).
        A process that outlives ``timeout`` is stopped with its whole process group (DataLoader workers too)."""
        self.log.write(f"$ {' '.join(cmd)}\n")
        self.log.flush()
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "TSN_CACHE_DIR": str(self.work / "cache"),
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
        }
        start = time.monotonic()
        proc = subprocess.Popen(
            list(cmd), stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            stop(proc)
            code = None
        self.log.flush()
        return code, time.monotonic() - start

    def write(self) -> None:
        write_json(
            self.out / "gpu-check.json",
            {"env": self.env, "stages": [asdict(s) for s in self.stages], "trials": self.trials},
        )


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process's group, then SIGKILL to whatever of the group is left 10 s later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def stage_limit(check: Check, name: str) -> float:
    """Seconds for stage ``name``: what is left of the time limit less the shares of the stages after it."""
    names = list(STAGE_SHARES)
    later = sum(STAGE_SHARES[n] for n in names[names.index(name) + 1 :])
    return check.deadline - time.monotonic() - later * check.env["time_limit_s"]


# ------------------------------------------------------------------------------------------------ stages
def environment(time_limit: float) -> dict[str, Any]:
    """What the numbers depend on, and what the stages would miss."""
    pinned = next(
        (
            line.split("==", 1)[1].strip()
            for line in (REPO / "requirements.txt").read_text().splitlines()
            if line.startswith("torch==")
        ),
        None,
    )
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_pinned": pinned,
        "cuda": torch.version.cuda,
        "cpu_cores": os.cpu_count(),
        "git_commit": git_commit(REPO),
        "missing_modules": [m for m in MODULES if importlib.util.find_spec(m) is None],
        "time_limit_s": time_limit,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(
            gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cudnn=torch.backends.cudnn.version()
        )
    return env


def junit_counts(path: Path) -> dict[str, Any]:
    """Tests, failures, errors, skipped and the skip reasons of a pytest ``--junitxml`` file."""
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    reasons = sorted({el.get("message", "") for el in root.iter("skipped")})
    return {**counts, "skip_reasons": reasons}


def stage_tests(check: Check, stage: Stage) -> None:
    junit = check.work / "junit.xml"
    code, seconds = check.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-m",
            "gpu",
            "tests/test_gpu.py",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
        ],
        stage_limit(check, "tests"),
    )
    if code is None:
        stage.status, stage.detail = "timed out", f"after {seconds:.0f} s"
        return
    if not junit.exists():
        stage.status, stage.detail = "failed", f"pytest exited {code} without a report"
        return
    n = junit_counts(junit)
    passed = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    stage.detail = f"{passed} passed, {n['failures']} failed, {n['errors']} errors, {n['skipped']} skipped" + (
        f" ({'; '.join(n['skip_reasons'])})" if n["skipped"] else ""
    )
    if code != 0 or n["failures"] or n["errors"] or n["tests"] == 0:
        stage.status = "failed"
    elif n["skipped"]:  # a CUDA test skipped on a CUDA machine did not check anything
        stage.status = "skipped" if check.dry_run and passed == 0 else "failed"
    else:
        stage.status = "passed"


def stage_bench(check: Check, stage: Stage) -> None:
    limit = stage_limit(check, "bench")
    files = {"--json": "bench-gpu.json", "--md": "bench-gpu.md", "--profile": "profile.txt"}
    cmd = [
        sys.executable,
        "-m",
        "bench.gpu",
        "--archs",
        *check.archs,
        "--time-limit",
        f"{max(1.0, limit - 30):.0f}",  # stops measuring in time to write its report
        *(["--device", "cpu", "--tiny"] if check.dry_run else []),
        *(["--out", str(check.benchmarks)] if check.benchmarks else []),
        *[arg for flag, name in files.items() for arg in (flag, str(check.out / name))],
    ]
    code, seconds = check.run(cmd, limit)
    results_file = check.out / "bench-gpu.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else None
    summary = "no results" if results is None else bench_summary(results)
    if code is None and results is not None:  # stopped before its report: render what it measured
        from .gpu_report import render

        atomic_write(check.out / "bench-gpu.md", lambda tmp: tmp.write_text(render(results)))
    if code is None:
        stage.status, stage.detail = "timed out", f"after {seconds:.0f} s; measured before: {summary}"
    elif code != 0 or results is None or bench_failures(results):
        stage.status, stage.detail = "failed", f"exit {code}; {summary}"
    else:
        stage.status, stage.detail = "passed", summary


def bench_failures(results: dict[str, Any]) -> list[str]:
    """What the benchmark skipped at its time limit or failed to measure."""
    failed = [
        f"{size['name']} {row['arch']}"
        for size in results["sizes"]
        for row in size["archs"]
        if "error" in row or "error" in row["steady"] or any("error" in s for s in row["steps"])
    ]
    return [*results["skipped"], *results["errors"], *failed]


def bench_summary(results: dict[str, Any]) -> str:
    """The targets' numbers in one line, and what is missing."""
    from .gpu_report import peak, steady_rows, step_row

    parts = []
    best, step = peak(results), step_row(results, "paper", "tsn", "epoch / batch")
    if best is not None and step is not None:
        parts.append(
            f"paper-size TSN step {1e3 * step['seconds']:.1f} ms = {100 * step['flops_per_s'] / best:.0f} % "
            f"of the {best / 1e12:.0f} TFLOP/s bf16 peak"
        )
    waits = [f"{s['name']} {100 * s['data']['wait_fraction']:.1f} %" for s in results["sizes"] if s["data"]]
    if waits:
        parts.append("data wait " + ", ".join(waits))
    syncs = [row["steady"]["sync_calls_per_step"] for _, row in steady_rows(results)]
    if syncs:
        parts.append(f"at most {max(syncs):g} syncs per step")
    missing = bench_failures(results)
    if missing:
        parts.append(f"not measured: {', '.join(missing)}")
    return "; ".join(parts) or "nothing measured"


def trial_setup(dry_run: bool) -> tuple[str, tuple[str, ...]]:
    """The budget of the trials and the overrides every one of them (and the data rendering) takes."""
    return ("smoke", (RANDOM_ENCODER, *DRY_TRIAL)) if dry_run else ("gpu", (RANDOM_ENCODER,))


def prepare_data(dry_run: bool) -> None:
    """Render the trials' train and val splits into the cache (``TSN_CACHE_DIR``), once for every trial."""
    from tsn.train import Trainer

    budget, overrides = trial_setup(dry_run)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(resolve(budget, overrides=[*overrides, "train.device=cpu"]), out)
        print(
            json.dumps(
                {
                    "budget": budget,
                    "train_samples": len(trainer.train_set),
                    "val_samples": len(trainer.val_set),
                    "cache": os.environ.get("TSN_CACHE_DIR"),
                }
            )
        )


def extrapolate(epoch_seconds: Sequence[float], fit_s: float, process_s: float, epochs: int) -> dict[str, Any]:
    """A trial of ``epochs`` epochs from a shorter one: its start-up (process less fit), first epoch (warm-up
    included), steady epochs (the median of the others) and final evaluation (fit less its epochs) as measured."""
    ran = len(epoch_seconds)
    startup, final = process_s - fit_s, fit_s - sum(epoch_seconds)
    steady = statistics.median(epoch_seconds[1:]) if ran > 1 else epoch_seconds[0]
    estimate = process_s if ran >= epochs else startup + epoch_seconds[0] + steady * (epochs - 1) + final
    return {
        "startup_s": startup,
        "first_epoch_s": epoch_seconds[0],
        "steady_epoch_s": steady,
        "final_evaluation_s": final,
        "full_epochs": epochs,
        "full_trial_s": estimate,
        "full_trial_basis": "measured" if ran >= epochs else f"extrapolated from {ran} epoch{'s' * (ran > 1)}",
    }


def stage_trials(check: Check, stage: Stage) -> None:
    deadline = time.monotonic() + stage_limit(check, "trials")
    budget, overrides = trial_setup(check.dry_run)
    full = resolve(budget, overrides=list(overrides)).train.epochs
    epochs = min(check.trial_epochs, full)
    cmd = [sys.executable, "-m", "bench.gpu_check", "--prepare-data", *(["--dry-run"] if check.dry_run else [])]
    code, seconds = check.run(cmd, deadline - time.monotonic())
    check.env["data_render_s"] = seconds
    failures = [] if code == 0 else [f"data: {'timed out' if code is None else f'exit {code}'}"]
    for k, arch in enumerate(check.archs):
        left = deadline - time.monotonic() - 15 * (len(check.archs) - k - 1)  # keep a little for the later ones
        if left < 10:
            failures.append(f"{arch}: no time left")
            continue
        run_dir = check.work / "runs" / arch
        code, seconds = check.run(
            [
                sys.executable,
                "-m",
                "tsn",
                "train",
                "--budget",
                budget,
                "--out",
                str(run_dir),
                f"model.architecture={arch}",
                f"train.epochs={epochs}",
                "train.progress=false",
                *overrides,
            ],
            left,
        )
        record: dict[str, Any] = {
            "arch": arch,
            "budget": budget,
            "epochs": epochs,
            "process_s": seconds,
            "overrides": list(overrides),
        }
        if code != 0:
            failures.append(f"{arch}: {'timed out' if code is None else f'exit {code}'}")
            record["error"] = "timed out" if code is None else f"exit {code} (gpu-check.log has its output)"
        else:
            summary = json.loads((run_dir / "metrics.json").read_text())
            record.update(
                device=summary["device"],
                fit_s=summary["wall_time_s"],
                primary=summary["primary"],
                epoch_s=[h["seconds"] for h in summary["history"]],
                **extrapolate([h["seconds"] for h in summary["history"]], summary["wall_time_s"], seconds, full),
            )
        check.trials.append(record)
        check.write()
        shutil.rmtree(run_dir, ignore_errors=True)  # checkpoints: not needed, and large
    done = [t for t in check.trials if "error" not in t]
    stage.detail = "; ".join(
        [
            f"{t['arch']} {t['process_s']:.0f} s ({t['epochs']} epochs) -> {t['full_trial_s']:.0f} s "
            f"for {t['full_epochs']} ({t['full_trial_basis']})"
            for t in done
        ]
        + failures
    )
    stage.status = "passed" if not failures and len(done) == len(check.archs) else "failed"


STAGES = {"tests": stage_tests, "bench": stage_bench, "trials": stage_trials}


def run_checks(check: Check) -> int:
    """Every stage in turn (a failure is reported and the next one runs); 0 when all passed."""
    check.say(
        f"gpu-check: {check.env.get('gpu', 'CPU dry run')}, torch {check.env['torch']} (requirements pin "
        f"{check.env['torch_pinned']}), time limit {check.env['time_limit_s']:.0f} s, out {check.out}"
    )
    if check.env["missing_modules"]:
        check.say(
            f"missing modules: {', '.join(check.env['missing_modules'])} (the stages that import them fail; "
            "README, GPUs: carry them as wheels)"
        )
    for name, run_stage in STAGES.items():
        stage = Stage(name)
        check.stages.append(stage)
        check.say(f"stage {name} ...")
        started = time.monotonic()
        try:
            run_stage(check, stage)
        except Exception as err:  # noqa: BLE001 - the stage is reported as failed and the next one runs
            stage.status, stage.detail = "failed", one_line(err)
        stage.seconds = time.monotonic() - started
        check.say(f"stage {name}: {stage.status} in {stage.seconds:.0f} s: {stage.detail}")
        check.write()
    accepted = {"passed", "skipped"} if check.dry_run else {"passed"}
    passed = sum(s.status in accepted for s in check.stages)
    total = sum(s.seconds for s in check.stages)
    check.say(
        f"gpu-check: {passed}/{len(check.stages)} stages passed in {total:.0f} s; files in {check.out}: "
        f"{', '.join(f for f in FILES if (check.out / f).exists())}"
    )
    for stage in check.stages:
        check.say(f"  {stage.name:<7} {stage.status:<9} {stage.seconds:5.0f} s  {stage.detail}")
    return 0 if passed == len(check.stages) else 1


def build_parser() -> argparse.ArgumentParser:
    from tsn.domains import cli_number

    parser = ArgumentParser(
        prog="python -m bench.gpu_check",
        description="issue 14's GPU checks in at most 8 minutes: CUDA tests, the GPU benchmark, "
        "one gpu-budget trial per architecture (skips without CUDA)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for the results (default: $OUT, else runs/gpu-check)"
    )
    parser.add_argument(
        "--time-limit",
        type=cli_number(float, 60, 10**5),
        default=TIME_LIMIT,
        help=f"seconds for all stages (default {TIME_LIMIT:.0f})",
    )
    parser.add_argument(
        "--trial-epochs",
        type=cli_number(int, 1, 1000),
        default=3,
        help="epochs of each trial (the gpu budget's 12 are extrapolated from them)",
    )
    add_archs_argument(parser)
    parser.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="also put the GPU section into this file (BENCHMARKS.md) between its gpu markers",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="run the stages on CPU at tiny sizes (a check of this script; numbers meaningless)",
    )
    parser.add_argument("--prepare-data", action="store_true", help=argparse.SUPPRESS)  # stage 3's first process
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prepare_data:
        prepare_data(args.dry_run)
        return 0
    if not args.dry_run and not torch.cuda.is_available():
        print(SKIP_LINE)
        return 0
    out = check_output_folder(args.out or Path(os.environ.get("OUT") or REPO / "runs" / "gpu-check"), "--out")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work, open(out / "gpu-check.log", "w") as log:
        check = Check(
            out,
            Path(work),
            log,
            args.dry_run,
            tuple(args.archs),
            args.trial_epochs,
            time.monotonic() + args.time_limit,
            args.benchmarks and args.benchmarks.resolve(),
            env=environment(args.time_limit),
        )
        return run_checks(check)


if __name__ == "__main__":
    sys.exit(main())
