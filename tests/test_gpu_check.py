"""``make gpu-check`` on a machine without CUDA: the one-line skip, and every stage's code on CPU (``--dry-run``, the
GPU benchmark at ``--tiny`` sizes), so that the one run on a GPU machine finds no bug a CPU could have found."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from bench import gpu, gpu_check, gpu_report, report
from tsn.config import resolve
from tsn.data import build_dataset
from tsn.tasks import dataset_tasks

REPO = Path(__file__).resolve().parents[1]
TINY = gpu.gpu_sizes(tiny=True)


def test_without_cuda_gpu_check_prints_one_line_exits_0_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"},
    )
    assert (done.returncode, done.stdout) == (0, gpu_check.SKIP_LINE + "\n"), done.stderr
    assert not out.exists()


def test_the_trial_time_of_the_whole_budget_is_extrapolated_from_its_measured_parts() -> None:
    r = gpu_check.extrapolate([5.0, 3.0, 3.2], fit_s=14.0, process_s=20.0, epochs=12)
    assert r["startup_s"] == pytest.approx(6.0) and r["final_evaluation_s"] == pytest.approx(2.8)
    assert r["steady_epoch_s"] == pytest.approx(3.1) and r["full_trial_basis"] == "extrapolated from 3 epochs"
    assert r["full_trial_s"] == pytest.approx(6.0 + 5.0 + 11 * 3.1 + 2.8)
    whole = gpu_check.extrapolate([5.0, 3.0], fit_s=9.0, process_s=15.0, epochs=2)
    assert whole["full_trial_s"] == 15.0 and whole["full_trial_basis"] == "measured"


@pytest.fixture
def check(tmp_path: Path) -> Iterator[gpu_check.Check]:
    """A dry-run check writing into ``tmp_path``, a minute on its clock."""
    with open(tmp_path / "log.txt", "w") as log:
        yield gpu_check.Check(
            tmp_path,
            tmp_path,
            log,
            dry_run=True,
            archs=("tsn",),
            trial_epochs=1,
            deadline=time.monotonic() + 60,
            env=gpu_check.environment(60),
        )


def test_a_stage_past_its_time_limit_is_stopped_with_its_children(check: gpu_check.Check, tmp_path: Path) -> None:
    started, alive = tmp_path / "child-started", tmp_path / "child-alive"
    # a child process that outlives the limit: it says it started, then 1.5 s later that it is still alive
    child = f"import time; open({str(started)!r}, 'w'); time.sleep(1.5); open({str(alive)!r}, 'w')"
    parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}]); time.sleep(60)"
    code, seconds = check.run([sys.executable, "-c", parent], timeout=1.0)
    assert code is None and seconds < 15 and started.exists(), "the child never started: the test proves nothing"
    time.sleep(max(0.0, started.stat().st_mtime + 2.0 - time.time()))  # past the moment it would have written
    assert not alive.exists()


def test_a_failing_stage_is_reported_and_the_next_one_runs(
    check: gpu_check.Check, tmp_path: Path, monkeypatch, capsys
) -> None:
    ran = []

    def broken(check, stage):
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    def fine(check, stage):
        ran.append(stage.name)
        stage.status, stage.detail = "passed", "ok"

    monkeypatch.setattr(gpu_check, "STAGES", {"tests": broken, "bench": fine, "trials": fine})
    assert gpu_check.run_checks(check) == 1
    assert ran == ["bench", "trials"]
    stages = json.loads((tmp_path / "gpu-check.json").read_text())["stages"]
    assert [(s["name"], s["status"]) for s in stages] == [
        ("tests", "failed"),
        ("bench", "passed"),
        ("trials", "passed"),
    ]
    assert stages[0]["detail"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert "gpu-check: 2/3 stages passed" in capsys.readouterr().out


def test_pytest_junit_counts_and_skip_reasons(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite tests="4" failures="1" errors="0" skipped="1"><testcase name="a"/>'
        '<testcase name="b"><skipped message="optuna missing"/></testcase></testsuite></testsuites>'
    )
    assert gpu_check.junit_counts(junit) == {
        "tests": 4,
        "failures": 1,
        "errors": 0,
        "skipped": 1,
        "skip_reasons": ["optuna missing"],
    }


def test_sync_sites_count_synchronising_operations_per_step_by_source_line() -> None:
    def warning(message: str, filename: str, line: int) -> warnings.WarningMessage:
        return warnings.WarningMessage(UserWarning(message), UserWarning, filename, line)

    layers = str(REPO / "tsn" / "layers.py")
    caught = [warning("called a synchronizing CUDA operation", layers, 39)] * 4 + [
        warning("called a synchronizing CUDA operation", "/x/site-packages/torch/optim/adam.py", 7),
        warning("some other warning", layers, 1),
    ]
    assert gpu.sync_sites(caught, steps=2) == {"tsn/layers.py:39": 2.0, "torch/optim/adam.py:7": 0.5}


def test_compiled_frames_sees_torch_compile_at_work() -> None:
    before = gpu.compiled_frames()
    torch.compile(lambda x: x * 2 + 1, backend="eager")(torch.randn(3))
    assert gpu.compiled_frames() > before


def test_random_scenes_are_samples_in_the_format_of_the_real_dataset() -> None:
    cfg = resolve("smoke", overrides=[*TINY[1].overrides])
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    real = build_dataset("synthetic", "train", tasks.names, 64, num_samples=1, augment="flip")[0]
    fake = gpu.RandomScenes(cfg, tasks, n=5)
    assert len(fake) == 5 and fake[4]["meta"]["name"] == "random_000004"
    sample = fake[(3, ("semseg",))]
    assert sample["image"].shape == real["image"].shape and sample["image"].dtype == real["image"].dtype
    for task in tasks.names:
        got, want = sample["targets"][task], real["targets"][task]
        assert (got.shape, got.dtype) == (want.shape, want.dtype), task


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One ``python -m bench.gpu --device cpu --tiny`` run of TSN, its files and a copy of BENCHMARKS.md it wrote."""
    tmp = tmp_path_factory.mktemp("gpu-bench")
    benchmarks = tmp / "BENCHMARKS.md"
    benchmarks.write_text((REPO / "BENCHMARKS.md").read_text())
    files = {name: tmp / name for name in ("r.json", "r.md", "profile.txt")}
    argv = [
        "--device",
        "cpu",
        "--tiny",
        "--archs",
        "tsn",
        "--json",
        str(files["r.json"]),
        "--md",
        str(files["r.md"]),
        "--profile",
        str(files["profile.txt"]),
        "--out",
        str(benchmarks),
    ]
    assert gpu.main(argv) == 0
    return {"benchmarks": benchmarks, **files, "results": json.loads(files["r.json"].read_text())}


def test_the_tiny_cpu_run_measures_every_size_and_schedule(tiny_run: dict) -> None:
    results = tiny_run["results"]
    assert [s["name"] for s in results["sizes"]] == ["paper", "gpu"] and results["skipped"] == results["errors"] == []
    assert [p["when"] for p in results["peaks"]] == ["start", "end"] and all(p["best"] > 0 for p in results["peaks"])
    for size in results["sizes"]:
        (row,) = size["archs"]
        assert row["arch"] == "tsn" and [s["schedule"] for s in row["steps"]] == ["epoch / batch", "joint"]
        for step in row["steps"]:
            assert step["seconds"] > 0 and step["flops"] > 0
            assert step["images_tasks_per_s"] == pytest.approx(size["batch_size"] * step["tasks"] / step["seconds"])
        assert row["steps"][1]["flops"] > 2 * row["steps"][0]["flops"]  # five decoder passes against one
        assert row["steady"]["sync_calls_per_step"] == 0 and row["steady"]["sync_sites"] is None  # no CUDA here
        assert row["steady"]["compiled_frames"] == 0
        assert row["steady"]["scalar_reads_per_step"] >= 1  # train_step reads each loss: the profiler sees it
        data = size["data"]
        assert data["steps"] == 4 and 0 <= data["wait_fraction"] < 1 and data["pin_memory"] is False
    assert results["sizes"][0]["data"]["num_workers"] == 1 and results["sizes"][0]["augment"] == "paper"
    assert "paper size, tsn, one-task step" in tiny_run["profile.txt"].read_text()


def test_the_section_goes_between_the_gpu_markers_and_renders_again_from_its_json(tiny_run: dict, capsys) -> None:
    section = tiny_run["r.md"].read_text()
    for heading in (
        "## GPU (--tiny dry run",
        "### Targets (issue 14)",
        "### Step time, throughput",
        "### Waiting for data",
        "### Steady state",
    ):
        assert heading in section
    text = tiny_run["benchmarks"].read_text()
    original = (REPO / "BENCHMARKS.md").read_text()
    assert section.rstrip() in text and "Not measured yet" not in text
    assert report.merge(text, "x", markers=report.GPU_MARKERS) == report.merge(
        original, "x", markers=report.GPU_MARKERS
    )
    capsys.readouterr()
    assert gpu.main(["--from-json", str(tiny_run["r.json"])]) == 0
    assert capsys.readouterr().out.rstrip() == section.rstrip()


def test_a_failed_schedule_is_recorded_and_the_other_one_still_measured(monkeypatch) -> None:
    measure = gpu.measure_schedule

    def out_of_memory_when_joint(harness, schedule, tasks, repeats):
        if schedule == "joint":
            raise torch.OutOfMemoryError("CUDA out of memory.\nTried to allocate 40 GiB")
        return measure(harness, schedule, tasks, repeats)

    monkeypatch.setattr(gpu, "measure_schedule", out_of_memory_when_joint)
    row, table = gpu.measure_arch(TINY[1], "task_in", "cpu")
    one, joint = row["steps"]
    assert one["seconds"] > 0 and "error" not in row["steady"] and table
    assert joint == {
        "schedule": "joint",
        "tasks": 5,
        "error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 40 GiB",
    }


def test_failed_measurements_render_and_fail_the_bench_stage(tiny_run: dict) -> None:
    results = json.loads(json.dumps(tiny_run["results"]))
    gpu_size = results["sizes"][1]["archs"][0]
    gpu_size["steps"][1] = {"schedule": "joint", "tasks": 5, "error": "OutOfMemoryError: CUDA out of memory."}
    gpu_size["steady"] = {"error": "RuntimeError: CUPTI unavailable"}
    text = gpu_report.render(results)
    assert "| joint | failed: OutOfMemoryError: CUDA out of memory. |" in text
    assert "| gpu (64², batch 2) | tsn | failed: RuntimeError: CUPTI unavailable |" in text
    assert gpu_check.bench_failures(results) == ["gpu tsn"] and gpu_check.bench_failures(tiny_run["results"]) == []
    assert "not measured: gpu tsn" in gpu_check.bench_summary(results)


def test_past_the_time_limit_the_rest_is_listed_as_skipped_and_still_renders() -> None:
    results = gpu.measure_gpu("cpu", tiny=True, archs=("tsn",), deadline=time.monotonic() - 1)
    assert results["skipped"] == ["paper: data wait", "paper: tsn", "gpu: data wait", "gpu: tsn"]
    text = gpu_report.render(results)
    assert "skipped at the time limit: paper: data wait" in text and "| — | not measured |" in text


def test_bad_bench_input_is_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"sizes": []}')
    assert gpu.main(["--from-json", str(bad)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
    no_markers = tmp_path / "BENCHMARKS.md"
    no_markers.write_text("# no markers\n")
    assert gpu.main(["--device", "cpu", "--tiny", "--out", str(no_markers)]) == 2
    err = capsys.readouterr().err.strip()
    assert "<!-- gpu:begin" in err and "valid:" in err and no_markers.read_text() == "# no markers\n"
    if not torch.cuda.is_available():
        assert gpu.main(["--device", "cuda"]) == 2
        assert "--device cuda: no CUDA device here" in capsys.readouterr().err


def test_the_repository_benchmarks_file_has_both_generated_parts() -> None:
    text = (REPO / "BENCHMARKS.md").read_text()
    merged = report.merge(text, "## GPU\n\nnew\n", markers=report.GPU_MARKERS)
    assert report.merge(merged, "b", markers=report.BENCH_MARKERS).count("new") == 1
    assert merged.index(report.BEGIN) < merged.index(report.GPU_MARKERS.begin)


@pytest.mark.slow
def test_the_whole_check_runs_on_cpu_in_a_dry_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert gpu_check.main(["--dry-run", "--archs", "tsn", "--trial-epochs", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(gpu_check.FILES)  # the device tool brings back 8 at most
    summary = json.loads((out / "gpu-check.json").read_text())
    assert [(s["name"], s["status"]) for s in summary["stages"]] == [
        ("tests", "skipped"),
        ("bench", "passed"),
        ("trials", "passed"),
    ]
    (trial,) = summary["trials"]
    assert trial["arch"] == "tsn" and trial["epochs"] == 1 and trial["full_epochs"] == 2
    assert trial["full_trial_basis"] == "extrapolated from 1 epoch" and trial["full_trial_s"] > trial["process_s"]
    assert "model.pretrained=none" in trial["overrides"] and trial["device"] == "cpu"
    log = (out / "gpu-check.log").read_text()
    assert "-m pytest -m gpu tests/test_gpu.py" in log and "-m bench.gpu" in log and "-m tsn train" in log
