"""The trainer: schedules, learning, exact resume, determinism, non-finite losses, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tsn.checkpoint import CheckpointError, load_checkpoint
from tsn.config import resolve
from tsn.schedules import plan_epoch
from tsn.train import Baseline, Callback, NonFiniteLossError, Trainer

TINY = ["data.train_samples=16", "data.val_samples=8", "train.batch_size=8", "train.progress=false", "train.threads=1"]


def tiny(*overrides: str, budget: str = "smoke"):
    return resolve(budget, overrides=[*TINY, *overrides])


def test_epoch_schedule_is_one_full_pass_per_task_in_shuffled_order() -> None:
    plan = plan_epoch("epoch", ["a", "b", "c"], 2, torch.Generator().manual_seed(0))
    assert [steps for steps in plan] == [[(t,), (t,)] for t in [p[0][0] for p in plan]]
    assert sorted(p[0][0] for p in plan) == ["a", "b", "c"]


def test_batch_schedule_alternates_every_step_with_equal_exposure() -> None:
    plan = plan_epoch("batch", ["a", "b", "c"], 2, torch.Generator().manual_seed(0))
    flat = [s[0] for steps in plan for s in steps]
    assert len(plan) == 3 and all(flat[i] != flat[i + 1] for i in range(len(flat) - 1))
    assert sorted(flat) == ["a", "a", "b", "b", "c", "c"]


def test_joint_schedule_serves_every_task_in_every_step() -> None:
    assert plan_epoch("joint", ["a", "b"], 3, torch.Generator()) == [[("a", "b")] * 3]


@pytest.mark.parametrize("schedule", ["epoch", "batch", "joint"])
def test_training_lowers_the_loss(tmp_path: Path, schedule: str) -> None:
    cfg = tiny(f"train.schedule={schedule}", "train.epochs=4", "data.tasks=semseg,normals")
    summary = Trainer(cfg, tmp_path).fit()
    first, last = summary["history"][0]["train_loss"], summary["history"][-1]["train_loss"]
    assert sum(last.values()) < sum(first.values())
    assert set(summary["primary"]) == {"semseg", "normals"}


def test_metrics_json_records_metrics_conventions_and_provenance(tmp_path: Path) -> None:
    baseline = Baseline({"semseg": 50.0, "parts": 40.0, "edge": 30.0, "normals": 40.0, "saliency": 60.0}, {"run": "x"})
    summary = Trainer(tiny("train.epochs=1"), tmp_path, baseline=baseline).fit()
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["config_hash"] == summary["config_hash"] and len(stored["config_hash"]) == 16
    assert stored["metrics"]["semseg"]["conventions"]["miou"] == "astmt"
    assert stored["metrics"]["edge"]["primary"] == "odsF"
    assert stored["delta_m"]["convention"] == "astmt" and stored["delta_m"]["baseline"] == {"run": "x"}
    assert stored["params"] > 0 and stored["macs"] > 0 and stored["wall_time_s"] > 0
    assert stored["git_commit"] and stored["config"]["model"]["architecture"] == "tsn"
    assert len(stored["history"]) == 1 and "val_loss" in stored["history"][0]


def test_same_config_and_seed_give_bit_identical_metrics(tmp_path: Path) -> None:
    a = Trainer(tiny("train.epochs=2"), tmp_path / "a").fit()
    b = Trainer(tiny("train.epochs=2"), tmp_path / "b").fit()
    assert a["metrics"] == b["metrics"] and a["history"][-1]["train_loss"] == b["history"][-1]["train_loss"]


class StopAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, record) -> None:
        if record["epoch"] == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("arch", ["tsn", "task_bn"])
def test_resume_ends_with_exactly_the_metrics_of_an_uninterrupted_run(tmp_path: Path, arch: str) -> None:
    cfg = tiny("train.epochs=3", f"model.architecture={arch}", "data.augment=paper")
    straight = Trainer(cfg, tmp_path / "straight").fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed", callbacks=[StopAfter(2)]).fit()
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 2
    resumed = Trainer(cfg, tmp_path / "resumed").fit(resume=True)
    assert resumed["metrics"] == straight["metrics"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]


def test_resuming_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    cfg = tiny("train.epochs=1")
    first = Trainer(cfg, tmp_path).fit()
    assert Trainer(cfg, tmp_path).fit(resume=True) == json.loads(json.dumps(first, default=str))


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path: Path) -> None:
    Trainer(tiny("train.epochs=1"), tmp_path).fit()
    with pytest.raises(CheckpointError, match="belongs to another configuration"):
        Trainer(tiny("train.epochs=1", "train.seed=5"), tmp_path).fit(resume=True)


def test_truncated_checkpoint_is_explained(tmp_path: Path) -> None:
    Trainer(tiny("train.epochs=1"), tmp_path).fit()
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_non_finite_loss_stops_with_task_and_epoch(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"non-finite \w+ loss .* at epoch 1, step \d+;"):
        Trainer(tiny("train.epochs=1", "train.lr_decoder=1e30", "train.lr_encoder=1e30", "train.schedule=joint"), tmp_path).fit()


def test_callbacks_see_every_epoch_evaluation_and_the_finish(tmp_path: Path) -> None:
    seen: list[str] = []

    class Recorder(Callback):
        def on_epoch_end(self, trainer, record):
            seen.append(f"epoch{record['epoch']}")

        def on_evaluation(self, trainer, epoch, evaluation):
            seen.append(f"eval{epoch}")

        def on_finish(self, trainer, summary):
            seen.append("finish")

    Trainer(tiny("train.epochs=2"), tmp_path, callbacks=[Recorder()]).fit()
    assert seen == ["eval1", "epoch1", "eval2", "epoch2", "finish"]


def _tsn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tsn", *args], capture_output=True, text=True, timeout=300)


def test_train_cli_writes_metrics_and_eval_cli_reads_the_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = _tsn("train", "--model", "task_in", "--dataset", "synthetic", "--budget", "smoke", "--out", str(out), *TINY, "train.epochs=1")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["architecture"] == "task_in"
    evaluated = _tsn("eval", str(out / "checkpoint.pt"), "--edge-evaluator", "fast")
    assert evaluated.returncode == 0, evaluated.stderr
    assert set(json.loads(evaluated.stdout)["metrics"]) == {"semseg", "parts", "edge", "normals", "saliency"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tsm"], "unknown architecture 'tsm'"),
        (["train.epochs=-1"], "train.epochs must be > 0"),
        (["--budget", "huge"], "unknown budget 'huge'"),
    ],
)
def test_train_cli_bad_configuration_exits_2_before_any_compute(tmp_path: Path, args, message) -> None:
    result = _tsn("train", "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()
