"""The benchmark suite runs and reports every section; every optimisation equals the reference path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tsn.train
from bench import measure, report
from bench.__main__ import main
from tsn import runtime
from tsn.config import resolve
from tsn.cpu_kernels import (
    MAX_MATMUL_RESIZE_SIDE,
    bilinear_resize,
    interpolation_matrix,
    pointwise_conv,
    reference_ops,
)
from tsn.engine import build_optimizer
from tsn.models import build_model
from tsn.tasks import dataset_tasks

SECTIONS = [
    "## Targets",
    "## 1. Training throughput",
    "## 2. Encoder once",
    "## 3. Achieved FLOP/s",
    "## 4. Data",
    "## 5. Sweep overhead",
    "## 6. Peak memory",
    "## 7. CPU fast paths",
    "## 8. SEISM-compatible edge",
]


@pytest.mark.parametrize(
    "shape, size",
    [
        ((2, 3, 4, 4), (8, 8)),
        ((1, 5, 3, 7), (6, 13)),
        ((2, 2, 1, 1), (2, 2)),
        ((3, 4, 8, 8), (8, 8)),
        ((1, 2, 6, 6), (3, 3)),
    ],
)
def test_cpu_upsample_equals_f_interpolate_in_value_and_gradient(shape, size) -> None:
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)  # float64: both paths agree to rounding
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    out = bilinear_resize(x, size)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(ref)
    torch.testing.assert_close(
        torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, x, g)[0], atol=1e-12, rtol=1e-12
    )


def test_interpolation_matrix_rows_are_convex_weights_hitting_the_corners() -> None:
    m = interpolation_matrix(4, 7)
    torch.testing.assert_close(m.sum(dim=1), torch.ones(7))
    assert m[0, 0] == 1 and m[-1, -1] == 1 and (m >= 0).all()


def test_upsample_of_large_inputs_takes_the_reference_kernel_where_dense_matrices_lose() -> None:
    side = MAX_MATMUL_RESIZE_SIDE + 1
    with torch.profiler.profile() as prof:
        bilinear_resize(torch.randn(1, 2, side, side), (2 * side, 2 * side))
    assert "aten::upsample_bilinear2d" in {e.key for e in prof.key_averages()}


def test_upsample_falls_back_to_f_interpolate_on_meta() -> None:
    assert bilinear_resize(torch.empty(1, 2, 4, 4, device="meta"), (8, 8)).shape == (1, 2, 8, 8)


@pytest.mark.parametrize(
    "shape, out_channels, bias",
    [((2, 16, 8, 8), 5, True), ((3, 4, 5, 7), 21, True), ((1, 8, 1, 1), 1, False), ((2, 3, 6, 6), 3, True)],
)
def test_cpu_pointwise_conv_equals_conv2d_in_value_and_gradients(shape, out_channels, bias) -> None:
    f64 = dict(dtype=torch.float64, requires_grad=True)  # float64: both paths agree to rounding on any CPU
    x = torch.randn(*shape, **f64)
    w = torch.randn(out_channels, shape[1], 1, 1, **f64)
    b = torch.randn(out_channels, **f64) if bias else None
    ref = F.conv2d(x, w, b)
    out = pointwise_conv(x, w, b)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    g = torch.randn_like(ref)
    inputs = [x, w] + ([b] if bias else [])
    for got, want in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g)):
        torch.testing.assert_close(got, want, atol=1e-11, rtol=1e-12)


def test_reference_ops_switches_the_fast_paths_off_and_back_on() -> None:
    x, w = torch.randn(1, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 1, 1, dtype=torch.float64)
    with reference_ops():
        ref_conv, ref_up = pointwise_conv(x, w, None), bilinear_resize(x, (5, 5))
        # the reference ops show up as aten.convolution / upsample_bilinear2d, the fast ones as matrix products
        with torch.profiler.profile() as prof:
            pointwise_conv(x, w, None), bilinear_resize(x, (5, 5))
    names = {e.key for e in prof.key_averages()}
    assert "aten::convolution" in names and "aten::upsample_bilinear2d" in names and "aten::bmm" not in names
    with torch.profiler.profile() as prof:
        fast_conv, fast_up = pointwise_conv(x, w, None), bilinear_resize(x, (5, 5))
    names = {e.key for e in prof.key_averages()}
    assert "aten::convolution" not in names and "aten::upsample_bilinear2d" not in names
    torch.testing.assert_close(fast_conv, ref_conv, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast_up, ref_up, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("arch", ["tsn", "task_bn", "multi_decoder"])
def test_model_outputs_with_the_cpu_fast_paths_equal_the_reference_path(arch: str) -> None:
    cfg = resolve("smoke", overrides=[f"model.architecture={arch}", "model.n_fc=2"])
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    torch.manual_seed(0)
    # Float64: in float32 the two paths round differently, and by how much depends on the CPU's kernels (AVX2
    # vs AVX-512), amplified by instance norm at 2x2 pixels; in float64 they agree to ~1e-12 relative anywhere.
    model = build_model(cfg.model, tasks).double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)

    def outputs_and_grads() -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model.forward_tasks(x)
        sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in out.values()).backward()
        return out, [p.grad.clone() for p in model.parameters()]

    fast, fast_grads = outputs_and_grads()
    with reference_ops():
        ref, ref_grads = outputs_and_grads()
    for task in tasks.names:
        torch.testing.assert_close(fast[task], ref[task], atol=1e-9, rtol=1e-9)
    # Measured against the largest gradient: a conv bias in front of a norm has a true gradient of 0, so its
    # computed values are rounding noise on either path.
    scale = max(want.abs().max().item() for want in ref_grads)
    worst = max((got - want).abs().max().item() for got, want in zip(fast_grads, ref_grads))
    assert worst < 1e-9 * scale, (worst, scale)


def test_build_optimizer_has_the_named_encoder_and_decoder_groups() -> None:
    cfg = resolve("smoke")
    model = build_model(cfg.model, dataset_tasks(cfg.data.dataset, cfg.data.tasks))
    opt = build_optimizer(model, cfg.train)
    assert [g["name"] for g in opt.param_groups] == ["encoder", "decoder"]
    assert [g["lr"] for g in opt.param_groups] == [cfg.train.lr_encoder, cfg.train.lr_decoder]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.encoder.parameters()}


def test_encoder_once_step_equals_the_per_task_loop() -> None:
    r = measure.encoder_once_comparison(measure.sizes(quick=True)[0], repeats=1, dtype=torch.float64)
    assert r["max_out"] < 1e-10 and r["max_grad"] < 1e-10
    assert r["theory"] > 1


def test_throughput_section_reports_every_schedule() -> None:
    lines = report.section_throughput(measure.throughput(measure.sizes(quick=True)))
    assert sum("| tsn | epoch / batch |" in line for line in lines) == 1
    assert sum("| tsn | joint |" in line for line in lines) == 1


def test_edge_section_times_the_seism_metric_on_thin_synthetic_edges() -> None:
    logits, gt = measure.synthetic_edge_maps(2, 64, seed=1)
    assert logits.shape == gt.shape == (2, 1, 64, 64)
    assert 0.005 < gt.mean() < 0.2 and set(gt.unique().tolist()) == {0.0, 1.0}
    assert (torch.sigmoid(logits)[gt == 1] > 0.5).float().mean() > (torch.sigmoid(logits)[gt == 0] > 0.5).float().mean()
    results = measure.edge_eval(quick=True)
    lines = report.section_edge_eval(results)
    assert 0 < results["seism_s"] < 5 and f"**{report.fmt(results['seism_s'])} s**" in "\n".join(lines)


@pytest.mark.slow
def test_quick_benchmark_writes_a_table_with_every_section(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(tsn.train, "configure_threads", runtime.configure_threads)  # the product's, not conftest's
    out = tmp_path / "BENCHMARKS.md"
    hand = "## Measured by hand\n\nkept as it is\n"
    out.write_text(f"{report.BEGIN}\n# Benchmarks\n\nold numbers\n{report.END}\n\n{hand}")
    assert main(["--quick", "--out", str(out), "--threads", "1"]) == 0
    text = out.read_text()
    assert capsys.readouterr().out.strip() == text.strip()
    for heading in SECTIONS:
        assert heading in text
    assert "- date: " in text and "- machine: " in text
    # --threads holds for every section: the trainers of sections 4 and 5 do not take every core for the rest
    assert "cores, 1 torch threads;" in text and "in this process (1 torch threads;" in text
    assert text.startswith(report.BEGIN) and text.endswith(f"{report.END}\n\n{hand}") and "old numbers" not in text


def test_report_replaces_only_the_generated_part_between_the_markers() -> None:
    assert report.merge(None, "# Benchmarks\n") == f"{report.BEGIN}\n# Benchmarks\n{report.END}\n"
    existing = f"intro\n{report.BEGIN}\nold\n{report.END}\n\n## By hand\n\nkept\n"
    assert report.merge(existing, "new\n") == f"intro\n{report.BEGIN}\nnew\n{report.END}\n\n## By hand\n\nkept\n"


@pytest.mark.parametrize(
    "text",
    [
        "# Benchmarks, no markers\n",
        f"{report.END}\nx\n{report.BEGIN}\n",
        f"{report.BEGIN}\n{report.BEGIN}\n{report.END}\n",
    ],
)
def test_report_refuses_a_file_without_one_pair_of_markers_before_measuring(tmp_path, capsys, text: str) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(text)
    assert main(["--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "<!-- bench:begin" in err and "valid:" in err
    assert out.read_text() == text


def test_the_repository_benchmarks_file_has_its_markers_and_keeps_the_seism_section() -> None:
    text = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text()
    merged = report.merge(text, "# Benchmarks\n")
    assert merged.startswith(report.BEGIN) and "## SEISM-compatible edge evaluation, before and after" in merged


def test_peak_rss_of_a_child_is_its_own_not_its_large_parents() -> None:
    import subprocess
    import sys

    ballast = torch.ones(3 * 2**28 // 2)  # 1.5 GiB held (and touched) by this process while the child runs
    code = "from bench.measure import peak_rss_kib; print(peak_rss_kib())"
    child_kib = int(
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout.split()[-1]
    )
    assert ballast.sum() > 0 and 0 < child_kib < 2**20  # under 1 GiB: the child's own interpreter and torch
