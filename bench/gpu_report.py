"""BENCHMARKS.md's GPU section from the results of :func:`bench.gpu.measure_gpu` (plain data, also read back from
the JSON file that ``python -m bench.gpu --json`` writes): the targets of issue 14 first, then one table per
measurement. It goes between BENCHMARKS.md's ``<!-- gpu:begin`` and ``<!-- gpu:end`` markers
(:data:`bench.report.GPU_MARKERS`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

STEP_TARGET = 0.35  # of the measured bf16 matmul peak: the paper-size training step
WAIT_TARGET = 0.05  # of the step time: waiting for data


def peak(results: dict[str, Any]) -> float | None:
    """The highest bf16 matmul rate measured in the run (FLOP/s), or None."""
    return max((p["best"] for p in results["peaks"]), default=None)


def size_label(size: dict[str, Any]) -> str:
    return f"{size['name']} ({size['image_size']}², batch {size['batch_size']})"


def arch_rows(results: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(size, architecture result) for every architecture that was measured (some of its parts may have failed)."""
    for size in results["sizes"]:
        for row in size["archs"]:
            if "error" not in row:
                yield size, row


def steady_rows(results: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(size, architecture result) for every architecture whose steady-state check ran."""
    return [(size, row) for size, row in arch_rows(results) if "error" not in row["steady"]]


def step_row(results: dict[str, Any], size_name: str, arch: str, schedule: str) -> dict[str, Any] | None:
    """The measured step of one architecture, size and schedule; None if it was not measured or failed."""
    for size, row in arch_rows(results):
        if size["name"] == size_name and row["arch"] == arch:
            step = next((s for s in row["steps"] if s["schedule"] == schedule), None)
            return None if step is None or "error" in step else step
    return None


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def met(ok: bool | None) -> str:
    return "not measured" if ok is None else ("yes" if ok else "**no**")


def section_header(results: dict[str, Any]) -> list[str]:
    dev = results["device"]
    if dev["type"] == "cuda":
        where = (
            f"{dev['name']} (compute capability {dev['capability']}, {dev['multiprocessors']} SMs, "
            f"{dev['memory_gib']:.1f} GiB), CUDA {dev['cuda']}, cuDNN {dev['cudnn']}"
        )
    else:
        where = "CPU (a dry run of the GPU section: tiny sizes, numbers meaningless)"
    best = peak(results)
    peaks = "; ".join(f"{p['when']} {p['best'] / 1e12:.0f}" for p in results["peaks"])
    lines = [
        f"## GPU{' (--tiny dry run: numbers meaningless)' if results['tiny'] else ''}",
        "",
        f"- date: {results['date']}; device: {where}; torch {dev['torch']}",
        f"- machine: {dev['machine']}",
    ]
    if best is not None:
        name = results["peaks"][0]["name"]
        lines.append(
            f"- bf16 matmul peak measured in this run: **{best / 1e12:.0f} TFLOP/s** (best of "
            f"{results['peaks'][0]['repeats']} {name} products, TFLOP/s at the {peaks}); every FLOP/s "
            "fraction below is against it"
        )
    lines += [
        f"- encoder weights: {results['encoder']}, which changes no timing (the GPU machine has no network "
        "and no ImageNet file); bf16 autocast and channels-last, as the `gpu` and `paper` budgets train",
        f"- benchmark wall time {results['wall_s']:.0f} s",
    ]
    if results["skipped"]:
        lines.append(f"- skipped at the time limit: {', '.join(results['skipped'])}")
    lines += [f"- error: {e}" for e in results["errors"]]
    return lines


def section_targets(results: dict[str, Any]) -> list[str]:
    lines = ["### Targets (issue 14)", "", "| target | measured in this run | met |", "|---|---|---|"]
    best, step = peak(results), step_row(results, "paper", "tsn", "epoch / batch")
    if step is None or best is None:
        lines.append(
            f"| training step ≥ {100 * STEP_TARGET:.0f} % of the bf16 matmul peak, paper size (TSN, ResNet-18, 512², "
            "batch 16, one-task step) | — | not measured |"
        )
    else:
        share = step["flops_per_s"] / best
        lines.append(
            f"| training step ≥ {100 * STEP_TARGET:.0f} % of the bf16 matmul peak, paper size (TSN, ResNet-18, 512², "
            f"batch 16, one-task step) | {pct(share)} ({step['flops_per_s'] / 1e12:.0f} TFLOP/s) | "
            f"{met(share >= STEP_TARGET)} |"
        )
    for size in results["sizes"]:
        data = size["data"]
        measured = "—" if data is None else f"{pct(data['wait_fraction'])} (steady state)"
        ok = None if data is None else data["wait_fraction"] <= WAIT_TARGET
        lines.append(
            f"| waiting for data ≤ {100 * WAIT_TARGET:.0f} % of step time, {size_label(size)} | {measured} | {met(ok)} |"
        )
    steady = steady_rows(results)
    cuda = results["device"]["type"] == "cuda"
    if steady:
        worst_size, worst = max(steady, key=lambda sr: sr[1]["steady"]["sync_calls_per_step"])
        syncs = worst["steady"]["sync_calls_per_step"]
        lines.append(
            f"| no host-device sync in the steady-state step (profiler) | at most {syncs:g} sync calls per step "
            f"({worst['arch']}, {worst_size['name']}; lines below) | {met(syncs == 0 if cuda else None)} |"
        )
        frames = sum(row["steady"]["compiled_frames"] for _, row in steady)
        lines.append(
            f"| no recompilation in the steady-state step | {frames} frames compiled during the profiled steps "
            f"(torch.compile is not used: eager) | {met(frames == 0)} |"
        )
    else:
        lines.append("| no host-device sync or recompilation in the steady-state step | — | not measured |")
    return lines


def section_steps(results: dict[str, Any]) -> list[str]:
    best = peak(results)
    lines = [
        "### Step time, throughput, FLOP/s and memory",
        "",
        "`tsn.engine.train_step` (forward, losses, backward, Adam) on one random batch in pinned memory; the "
        "median of rounds of back-to-back steps timed with CUDA events, after warm-up. `epoch / batch`: one "
        "task per step (what the paper's epoch schedule runs); `joint`: every task on each batch, encoder once "
        "(`forward_tasks`: one decoder batch of B·T). FLOPs of one step counted by `torch.utils.flop_counter` "
        "(backward included, bilinear upsampling counted as 0); peak memory: `torch.cuda.max_memory_allocated` "
        "over the schedule's steps.",
        "",
        "| size | architecture | parameters | schedule | step (ms) | images·tasks / s | TFLOP / step | "
        "achieved TFLOP/s | of the bf16 peak | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        for row in size["archs"]:
            if "error" in row:
                lines.append(f"| {size_label(size)} | {row['arch']} | — | — | failed: {row['error']} | | | | | |")
                continue
            for s in row["steps"]:
                if "error" in s:
                    lines.append(
                        f"| {size_label(size)} | {row['arch']} | {row['params'] / 1e6:.1f} M | {s['schedule']} | "
                        f"failed: {s['error']} | | | | | |"
                    )
                    continue
                share = "—" if best is None else pct(s["flops_per_s"] / best)
                memory = "—" if s["peak_mib"] is None else f"{s['peak_mib'] / 1024:.2f}"
                lines.append(
                    f"| {size_label(size)} | {row['arch']} | {row['params'] / 1e6:.1f} M | {s['schedule']} | "
                    f"{1e3 * s['seconds']:.2f} | {s['images_tasks_per_s']:.0f} | {s['flops'] / 1e12:.3f} | "
                    f"{s['flops_per_s'] / 1e12:.1f} | {share} | {memory} |"
                )
    return lines


def section_data(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Waiting for data",
        "",
        "The trainer's own epoch plan, DataLoader (the budget's `data.num_workers`, pinned memory on CUDA, the "
        "budget's augmentation) and step, on random scenes of the dataset's format (`bench.gpu.RandomScenes`: no "
        "rendering, no files); the device drained after each step. The first batch starts the workers, so it is "
        "reported apart, with its share of a whole epoch of the budget.",
        "",
        "| size | loader | steps | first batch (s) | median wait (ms) | median step (ms) | waiting, share of step "
        "time (after the first) | first batch, share of an epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        d = size["data"]
        if d is None:
            lines.append(f"| {size_label(size)} | — | not measured | | | | | |")
            continue
        loader = f"{d['num_workers']} workers, pin_memory={d['pin_memory']}, augment={d['augment']}"
        epoch = (
            "—"
            if d["first_wait_epoch_fraction"] is None
            else (f"{pct(d['first_wait_epoch_fraction'])} of {d['steps_per_epoch']} steps")
        )
        lines.append(
            f"| {size_label(size)} | {loader} | {d['steps']} | {d['first_wait_s']:.2f} | "
            f"{1e3 * d['median_wait_s']:.1f} | {1e3 * d['median_step_s']:.1f} | **{pct(d['wait_fraction'])}** | "
            f"{epoch} |"
        )
    return lines


def section_steady(results: dict[str, Any]) -> list[str]:
    lines = [
        "### Steady state: host-device syncs and compilation",
        "",
        "The one-task step under `torch.profiler` over back-to-back steps after warm-up: calls of "
        "`cudaStreamSynchronize` / `cudaDeviceSynchronize` / `cudaEventSynchronize` and reads of a device scalar "
        "(`aten::_local_scalar_dense`: `.item()`, `bool(tensor)`) per step; frames compiled by torch.compile "
        "meanwhile; and the source lines of the synchronising operations (`torch.cuda.set_sync_debug_mode`). "
        "Only a sync call stalls the host; a scalar read of a CPU tensor (Adam's step counts) does not.",
        "",
        "| size | architecture | sync calls / step | scalar reads / step | compiled frames | synchronising lines "
        "(per step) |",
        "|---|---|---|---|---|---|",
    ]
    for size, row in arch_rows(results):
        st = row["steady"]
        if "error" in st:
            lines.append(f"| {size_label(size)} | {row['arch']} | failed: {st['error']} | | | |")
            continue
        sites = st["sync_sites"]
        where = "— (CPU)" if sites is None else (", ".join(f"`{site}` ×{n:g}" for site, n in sites.items()) or "none")
        lines.append(
            f"| {size_label(size)} | {row['arch']} | {st['sync_calls_per_step']:g} | "
            f"{st['scalar_reads_per_step']:g} | {st['compiled_frames']} | {where} |"
        )
    return lines


def render(results: dict[str, Any]) -> str:
    """The GPU section (without the markers)."""
    sections = [
        section_header(results),
        section_targets(results),
        section_steps(results),
        section_data(results),
        section_steady(results),
    ]
    return "\n".join(line for section in sections for line in [*section, ""])
