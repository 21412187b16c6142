"""The CUDA path: the trainer with bf16 autocast and channels-last, the batched all-tasks forward, and an
out-of-memory trial in a sweep. Marked ``gpu`` (deselected by default; ``make test-all`` and ``make gpu-check`` run
them) and skipped where there is no CUDA device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_models import small_model
from torch import nn

from tsn.config import resolve
from tsn.models import ARCHITECTURES
from tsn.train import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)"),
]

TINY = [
    "data.train_samples=16",
    "data.val_samples=8",
    "train.batch_size=8",
    "train.progress=false",
    "train.epochs=1",
    "train.device=cuda",
]


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_trainer_steps_on_cuda_in_bf16_autocast_with_channels_last(tmp_path: Path) -> None:
    trainer = Trainer(resolve("smoke", overrides=TINY), tmp_path)
    assert trainer.device.type == "cuda" and trainer.cfg.train.amp and trainer.channels_last
    conv = first_conv(trainer.model)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.dtype == torch.float32
    seen = {}
    conv.register_forward_hook(
        lambda module, args, out: seen.update(
            input_channels_last=args[0].is_contiguous(memory_format=torch.channels_last), output_dtype=out.dtype
        )
    )
    plan, loader = trainer.epoch_batches(1)
    step, batch = plan[0], next(iter(loader))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    losses = [trainer.train_step(step.tasks, batch)[step.tasks[0]] for _ in range(8)]  # one batch, learnt
    assert seen == {"input_channels_last": True, "output_dtype": torch.bfloat16}
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0], losses
    changed = [not torch.equal(a, p.detach()) for a, p in zip(before, trainer.model.parameters())]
    assert sum(changed) > len(changed) // 2  # weights stay float32 and move (autocast casts copies)
    assert all(p.dtype == torch.float32 and p.device.type == "cuda" for p in trainer.model.parameters())


def test_a_whole_run_trains_and_evaluates_on_cuda(tmp_path: Path) -> None:
    summary = Trainer(resolve("smoke", overrides=TINY), tmp_path).fit()
    assert summary["device"] == "cuda" and summary["history"][0]["epoch"] == 1
    assert all(torch.isfinite(torch.tensor(list(summary["primary"].values()))))
    assert json.loads((tmp_path / "metrics.json").read_text())["device"] == "cuda"


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("train_mode", [False, True])
def test_forward_tasks_on_cuda_equals_per_task_predictions(arch: str, train_mode: bool, monkeypatch) -> None:
    # Float64 on the GPU: the two paths agree to rounding whatever kernels cuDNN picks for their batch sizes.
    model = small_model(arch).train(train_mode).double().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64, device="cuda").contiguous(memory_format=torch.channels_last)
    tasks = ["normals", "semseg", "edge"]
    calls = []
    if hasattr(model, "decode_blocks"):  # the one-decoder architectures: all tasks in ONE decoder batch on CUDA
        original = model.decode_blocks
        monkeypatch.setattr(model, "decode_blocks", lambda f, ts: calls.append(list(ts)) or original(f, ts))

    def outputs_and_grads(together: bool) -> tuple[dict, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model.forward_tasks(x, tasks) if together else {t: model(x, t) for t in tasks}
        sum(
            (o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype, device=o.device).view_as(o)).sum()
            for o in out.values()
        ).backward()
        return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    together, together_grads = outputs_and_grads(True)
    if hasattr(model, "decode_blocks"):
        assert calls == [tasks]
    apart, apart_grads = outputs_and_grads(False)
    for task in tasks:
        torch.testing.assert_close(together[task], apart[task], rtol=1e-9, atol=1e-9)
    scale = max(g.abs().max().item() for g in apart_grads)
    worst = max((a - b).abs().max().item() for a, b in zip(together_grads, apart_grads))
    assert len(together_grads) == len(apart_grads) and worst < 1e-9 * scale, (worst, scale)


def test_out_of_memory_on_cuda_fails_its_trial_in_one_line_and_the_grid_goes_on(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("optuna_dashboard", reason="the sweep driver's packages (optuna, optuna-dashboard) are missing")
    from optuna.trial import TrialState

    from sweeps import records as R
    from sweeps.driver import Sweep
    from sweeps.experiment import load_experiment
    from sweeps.tracking import TrackingConfig

    experiment = tmp_path / "oom.yaml"
    experiment.write_text(
        "name: oom\nfixed: {model: {architecture: tsn}}\nbaseline: none\n"
        "axes: {scientific: {model.encoding: [orthogonal, gaussian]}}\n"
    )
    original = Trainer.train_step

    def step(self, tasks, batch, where=""):
        if self.cfg.model.encoding == "orthogonal":  # the first grid point asks the GPU for twice its memory
            torch.empty(2 * torch.cuda.get_device_properties(0).total_memory, dtype=torch.uint8, device=self.device)
        return original(self, tasks, batch, where)

    monkeypatch.setattr(Trainer, "train_step", step)
    sweep = Sweep(
        load_experiment(experiment),
        "smoke",
        f"sqlite:///{tmp_path / 'studies.db'}",
        overrides=TINY,
        runs_dir=tmp_path / "runs",
        tracking=TrackingConfig(enabled=False),
        log=lambda line: None,
    )
    assert sweep.run() == {"complete": 1, "failed": 1}
    (failed,) = sweep.study.get_trials(states=(TrialState.FAIL,))
    (done,) = sweep.study.get_trials(states=(TrialState.COMPLETE,))
    reason = failed.user_attrs[R.FAIL_REASON]
    assert failed.params["model.encoding"] == "orthogonal" and failed.number < done.number  # the grid went on
    assert reason.startswith("OutOfMemoryError: CUDA out of memory") and "\n" not in reason, reason
    metrics = json.loads((Path(done.user_attrs[R.RUN_DIR]) / "metrics.json").read_text())
    assert metrics["device"] == "cuda"
