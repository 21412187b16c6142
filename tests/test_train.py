"""The trainer: schedules, learning, exact resume, determinism, non-finite losses, the CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import torch

from tsn.checkpoint import CheckpointError, load_checkpoint
from tsn.config import ConfigError, resolve
from tsn.config import from_dict as resolve_dict
from tsn.evaluate import Evaluation
from tsn.schedules import plan_epoch
from tsn.train import Baseline, Callback, NonFiniteLossError, Trainer

TINY = ["data.train_samples=8", "data.val_samples=4", "train.batch_size=8", "train.progress=false", "train.threads=1"]


def tiny(*overrides: str, budget: str = "smoke"):
    return resolve(budget, overrides=[*TINY, *overrides])


def _plan(schedule: str, labelled: dict, batch_size: int = 2, seed: int = 0) -> list:
    return plan_epoch(schedule, labelled, batch_size, torch.Generator().manual_seed(seed))


EVERY = {"a": range(4), "b": range(4), "c": range(4)}  # three tasks labelled on all 4 samples: 2 batches each


def test_epoch_schedule_is_one_full_pass_per_task_in_shuffled_order() -> None:
    tasks = [step.tasks for step in _plan("epoch", EVERY)]
    order = tasks[::2]
    assert tasks == [t for t in order for _ in range(2)] and sorted(order) == [("a",), ("b",), ("c",)]
    orders = {tuple(step.tasks for step in _plan("epoch", EVERY, seed=seed))[::2] for seed in range(20)}
    assert len(orders) > 1  # reshuffled from epoch to epoch


def test_batch_schedule_alternates_every_step_with_equal_exposure() -> None:
    flat = [step.tasks[0] for step in _plan("batch", EVERY)]
    assert all(flat[i] != flat[i + 1] for i in range(len(flat) - 1))
    assert sorted(flat) == ["a", "a", "b", "b", "c", "c"]


def test_joint_schedule_serves_every_task_in_every_step() -> None:
    assert [step.tasks for step in _plan("joint", {"a": range(6), "b": range(6)})] == [("a", "b")] * 3


@pytest.mark.parametrize("schedule", ["epoch", "batch", "joint"])
def test_each_task_passes_once_over_exactly_its_labelled_samples(schedule: str) -> None:
    # "parts" labelled on a quarter of the images (PASCAL: only images with people): its pass is a quarter as long
    labelled = {"semseg": list(range(32)), "parts": list(range(0, 32, 4)), "edge": list(range(32))}
    plan = _plan(schedule, labelled, batch_size=4)
    for task, indices in labelled.items():
        seen = [i for step in plan if task in step.tasks for i in step.indices]
        if schedule == "joint":  # one pass over the union; the task's loss counts its labelled samples only
            assert sorted(seen) == list(range(32))
        else:
            assert sorted(seen) == indices  # every labelled sample once, nothing else
    if schedule != "joint":
        steps = Counter(step.tasks[0] for step in plan)
        assert steps == {"semseg": 8, "parts": 2, "edge": 8}  # parts: 2 of 18 shared-encoder updates, not 8 of 24


def test_a_pass_drops_its_incomplete_last_batch_only_when_it_has_several() -> None:
    plan = _plan("epoch", {"a": range(5), "b": range(1)}, batch_size=2)
    sizes = {t: [len(s.indices) for s in plan if s.tasks == (t,)] for t in "ab"}
    assert sizes == {"a": [2, 2], "b": [1]}


def test_a_task_without_labelled_samples_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="no training sample is labelled for task 'parts'"):
        _plan("epoch", {"semseg": range(4), "parts": []})


def test_trainer_trains_each_task_on_the_samples_the_dataset_labels(tmp_path: Path, monkeypatch) -> None:
    from tsn.data import SyntheticDataset

    monkeypatch.setattr(
        SyntheticDataset,
        "labelled",
        lambda self, task: list(range(0, len(self), 4)) if task == "parts" else list(range(len(self))),
    )
    trainer = Trainer(tiny("train.batch_size=2", "data.tasks=semseg,parts", "data.train_samples=16"), tmp_path)
    seen: dict[str, list[int]] = {"semseg": [], "parts": []}
    plan, loader = trainer.epoch_batches(1)
    for step, batch in zip(plan, loader):
        seen[step.tasks[0]] += batch["meta"]["index"].tolist()
        assert batch["meta"]["index"].tolist() == step.indices
    assert sorted(seen["parts"]) == [0, 4, 8, 12] and sorted(seen["semseg"]) == list(range(16))


def test_fresh_scenes_give_every_epoch_its_own_scenes_at_the_same_steps(tmp_path: Path) -> None:
    cfg = tiny("train.epochs=3", "train.batch_size=4", "train.lr_schedule=cosine", "data.tasks=semseg,edge")
    fresh = Trainer(resolve_dict({**cfg.to_dict(), "data": {**cfg.to_dict()["data"], "fresh_scenes": True}}), tmp_path)
    repeated = Trainer(cfg, tmp_path)
    assert len(fresh.train_set) == 3 * 8 and len(repeated.train_set) == 8
    for epoch, scenes in enumerate([range(0, 8), range(8, 16), range(16, 24)], start=1):
        plan, loader = fresh.epoch_batches(epoch)
        for task in ("semseg", "edge"):
            assert sorted(i for step in plan if step.tasks == (task,) for i in step.indices) == list(scenes)
        assert [batch["meta"]["index"].tolist() for batch in loader] == [step.indices for step in plan]
    # the same scenes as the repeated run's in epoch 1, new ones after; the same steps, so the same cosine schedule
    assert torch.equal(fresh.train_set.images[:8], repeated.train_set.images)
    assert not torch.equal(fresh.train_set.images[8:16], repeated.train_set.images)
    steps = {name: s.scheduler.lr_lambdas[0](4) for name, s in fresh.optimisation.schedules.items()}
    assert steps == {name: s.scheduler.lr_lambdas[0](4) for name, s in repeated.optimisation.schedules.items()}


def test_single_task_networks_have_their_own_optimiser_and_plateau_schedule(tmp_path: Path) -> None:
    trainer = Trainer(tiny("model.architecture=single_task", "data.tasks=semseg,normals"), tmp_path)
    opt = trainer.optimisation
    assert set(opt.optimizers) == {"semseg", "normals"} and opt.tasks == {
        "semseg": ("semseg",),
        "normals": ("normals",),
    }
    params = {name: {id(p) for g in o.param_groups for p in g["params"]} for name, o in opt.optimizers.items()}
    assert params["semseg"] == {id(p) for p in trainer.model.nets["semseg"].parameters()}
    assert not params["semseg"] & params["normals"]
    # semseg's validation loss keeps improving, normals' stalls: only normals' learning rates decay
    patience = trainer.cfg.train.plateau_patience
    for k in range(patience + 2):
        opt.step_schedulers(Evaluation({"semseg": 1.0 - 0.1 * k, "normals": 1.0}, {}))
    lrs = opt.learning_rates()
    train = trainer.cfg.train
    assert lrs["semseg/encoder"] == train.lr_encoder and lrs["semseg/decoder"] == train.lr_decoder
    assert lrs["normals/encoder"] == train.lr_encoder * train.plateau_factor
    assert lrs["normals/decoder"] == train.lr_decoder * train.plateau_factor


def test_a_shared_network_is_scheduled_on_the_mean_validation_loss_of_every_task(tmp_path: Path) -> None:
    trainer = Trainer(tiny("data.tasks=semseg,normals"), tmp_path)
    opt = trainer.optimisation
    assert list(opt.optimizers) == ["shared"] and opt.tasks == {"shared": ("semseg", "normals")}
    assert [g["name"] for g in opt.optimizers["shared"].param_groups] == ["encoder", "decoder"]
    for k in range(trainer.cfg.train.plateau_patience + 2):  # one task improves as much as the other worsens
        opt.step_schedulers(Evaluation({"semseg": 1.0 - 0.1 * k, "normals": 1.0 + 0.1 * k}, {}))
    assert opt.learning_rates()["decoder"] == trainer.cfg.train.lr_decoder * trainer.cfg.train.plateau_factor


@pytest.mark.parametrize(
    "overrides, lr_keys",
    [
        (
            ("model.architecture=single_task", "data.tasks=semseg,edge"),
            {"semseg/encoder", "semseg/decoder", "edge/encoder", "edge/decoder"},
        ),
        (("train.lr_schedule=cosine", "data.tasks=semseg,normals"), {"encoder", "decoder"}),
    ],
    ids=["single_task-plateau", "tsn-cosine"],
)
def test_resume_restores_every_network_and_lr_schedule_exactly(tmp_path: Path, overrides, lr_keys) -> None:
    cfg = tiny("train.epochs=3", *overrides)
    straight = Trainer(cfg, tmp_path / "straight").fit()
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, tmp_path / "resumed", callbacks=[StopAfter(1)]).fit()
    resumed = Trainer(cfg, tmp_path / "resumed").fit(resume=True)
    assert resumed["metrics"] == straight["metrics"]
    assert [h["lr"] for h in resumed["history"]] == [h["lr"] for h in straight["history"]]
    assert set(straight["history"][0]["lr"]) == lr_keys


def test_eval_epochs_store_the_full_evaluation_and_a_checkpoint_of_each(tmp_path: Path) -> None:
    summary = Trainer(
        tiny(
            "train.epochs=3",
            "train.eval_epochs=[1, 3]",
            "train.edge_evaluator=fast",
            "train.final_edge_evaluator=seism",
        ),
        tmp_path,
    ).fit()
    assert set(summary["evaluations"]) == {"1", "3"}
    assert summary["evaluations"]["3"]["primary"] == summary["primary"]
    first = summary["evaluations"]["1"]
    assert first["metrics"]["edge"]["conventions"] == summary["metrics"]["edge"]["conventions"]
    assert first["primary"] != summary["primary"]  # two epochs of training later
    kept = load_checkpoint(tmp_path / "checkpoint-epoch1.pt")
    assert kept["epoch"] == 1 and not (tmp_path / "checkpoint-epoch3.pt").exists()  # the last is checkpoint.pt
    evaluated = Trainer(resolve_dict(kept["config"]), tmp_path)
    evaluated.model.load_state_dict(kept["model"])
    assert evaluated.run_validation("seism").primary(evaluated.tasks) == first["primary"]


@pytest.mark.parametrize(
    "value, message",
    [
        ("[0]", "train.eval_epochs entry must be in [1, 100000], got 0"),
        ("[5]", "epoch 5 is outside 1..train.epochs (2)"),
        ("[a]", "train.eval_epochs: expected a list of integers"),
    ],
)
def test_eval_epochs_outside_the_run_are_one_line_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        tiny("train.epochs=2", f"train.eval_epochs={value}")


def test_evaluating_a_checkpoint_never_builds_the_training_split(tmp_path: Path, monkeypatch) -> None:
    Trainer(tiny("train.epochs=1"), tmp_path).fit()
    import tsn.train

    built: list[str] = []
    original = tsn.train.build_dataset
    monkeypatch.setattr(
        tsn.train, "build_dataset", lambda name, split, *a, **k: built.append(split) or original(name, split, *a, **k)
    )
    trainer = Trainer(tiny("train.epochs=1"), tmp_path)
    trainer.run_validation("fast")
    assert built == ["val"]


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


def test_the_summary_carries_the_mean_validation_loss_and_an_older_metrics_json_gets_it_on_resume(
    tmp_path: Path,
) -> None:
    cfg = tiny("train.epochs=2", "train.eval_epochs=[1, 2]")
    summary = Trainer(cfg, tmp_path).fit()
    for report in (summary, *summary["evaluations"].values()):
        losses = report["val_loss"]
        assert len(losses) == 5 and report["mean_val_loss"] == pytest.approx(sum(losses.values()) / 5, rel=1e-12)
    assert summary["evaluations"]["1"]["mean_val_loss"] != summary["mean_val_loss"]
    older = json.loads((tmp_path / "metrics.json").read_text())
    del older["mean_val_loss"]  # metrics.json as written before the key existed
    (tmp_path / "metrics.json").write_text(json.dumps(older))
    assert Trainer(cfg, tmp_path).fit(resume=True)["mean_val_loss"] == summary["mean_val_loss"]


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


def test_non_finite_loss_stops_with_task_and_epoch_before_any_update(tmp_path: Path, monkeypatch) -> None:
    import tsn.engine

    real_loss = tsn.engine.task_loss
    monkeypatch.setattr(
        tsn.engine,
        "task_loss",
        lambda task, pred, target: real_loss(task, pred, target) * (float("nan") if task.name == "edge" else 1.0),
    )
    trainer = Trainer(tiny("train.epochs=1", "train.schedule=joint"), tmp_path)
    before = {k: v.clone() for k, v in trainer.model.named_parameters()}
    with pytest.raises(NonFiniteLossError, match=r"non-finite edge loss \(nan\) at epoch 1, step 0;"):
        trainer.fit()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.named_parameters())  # no optimiser step


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


def test_train_cli_writes_metrics_and_eval_cli_reads_the_checkpoint(tmp_path: Path, tsn_cli) -> None:
    out = tmp_path / "run"
    code, _, err = tsn_cli(
        "train",
        "--model",
        "task_in",
        "--dataset",
        "synthetic",
        "--budget",
        "smoke",
        "--out",
        str(out),
        *TINY,
        "train.epochs=1",
    )
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["architecture"] == "task_in"
    code, evaluated, err = tsn_cli("eval", str(out / "checkpoint.pt"), "--edge-evaluator", "fast")
    assert code == 0, err
    report = json.loads(evaluated)
    assert set(report["metrics"]) == {"semseg", "parts", "edge", "normals", "saliency"}
    assert (report["data"]["val_samples"], report["data"]["data_seed"]) == (4, 0)  # the run's own validation split
    # the same weights measured on other scenes: 6 images of another synthetic draw, so other values
    code, elsewhere, err = tsn_cli(
        "eval", str(out / "checkpoint.pt"), "data.val_samples=6", "data.data_seed=7", "--edge-evaluator", "fast"
    )
    assert code == 0, err
    other = json.loads(elsewhere)
    assert (other["data"]["val_samples"], other["data"]["data_seed"]) == (6, 7)
    assert other["metrics"]["semseg"]["values"] != report["metrics"]["semseg"]["values"]
    for bad, culprit in (["model.embedding_dim=5", "'model.embedding_dim=5'"], ["data.val_samples=0", "val_samples"]):
        code, _, err = tsn_cli("eval", str(out / "checkpoint.pt"), bad)
        assert code == 2 and culprit in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "tsm"], "unknown architecture 'tsm'"),
        (["train.epochs=-1"], "train.epochs must be in [1, 100000], got -1"),
        (["--budget", "huge"], "unknown budget 'huge'"),
    ],
)
def test_train_cli_bad_configuration_exits_2_before_any_compute(tmp_path: Path, tsn_cli, args, message) -> None:
    code, _, err = tsn_cli("train", "--out", str(tmp_path / "x"), *args)
    assert code == 2 and message in err
    assert "Traceback" not in err and not (tmp_path / "x").exists()


def test_cosine_schedule_anneals_each_network_to_zero_over_its_own_steps(tmp_path: Path) -> None:
    cfg = tiny("train.epochs=2", "train.lr_schedule=cosine", "model.architecture=single_task", "data.tasks=semseg,edge")
    summary = Trainer(cfg, tmp_path).fit()
    first, last = summary["history"][0]["lr"], summary["history"][-1]["lr"]
    # 8 samples / batch 8 = a step per task and epoch: after epoch 1 of 2 each network is half-way, cos(pi/2) -> 1/2
    assert first["semseg/decoder"] == pytest.approx(cfg.train.lr_decoder / 2)
    assert first["edge/encoder"] == pytest.approx(cfg.train.lr_encoder / 2)
    assert all(lr == pytest.approx(0.0, abs=1e-12) for lr in last.values())


def test_cosine_schedule_of_a_shared_network_counts_every_step(tmp_path: Path) -> None:
    cfg = tiny("train.epochs=4", "train.lr_schedule=cosine", "data.tasks=semseg,edge", "data.train_samples=16")
    schedule = Trainer(cfg, tmp_path).optimisation.schedules["shared"]
    assert schedule.scheduler.lr_lambdas[0](4 * 4) == 0.0  # 2 tasks x 2 steps x 4 epochs
    assert schedule.scheduler.lr_lambdas[0](8) == pytest.approx(0.5)


def test_history_records_the_order_in_which_tasks_were_last_trained(tmp_path: Path) -> None:
    trainer = Trainer(tiny("train.epochs=2", "data.tasks=semseg,edge,normals", "model.embedding_dim=99"), tmp_path)
    summary = trainer.fit()
    for record in summary["history"]:
        plan, _ = trainer.epoch_batches(record["epoch"])
        passes = [step.tasks[0] for k, step in enumerate(plan) if k == 0 or plan[k - 1].tasks != step.tasks]
        assert record["task_order"] == passes  # epoch schedule: the order of the passes


def test_delta_m_at_an_eval_epoch_compares_with_the_baseline_at_the_same_epoch(tmp_path: Path) -> None:
    final = {"semseg": 50.0, "normals": 40.0}
    early = {"semseg": 25.0, "normals": 80.0}
    baseline = Baseline(final, {"run": "x"}, by_epoch={"1": early})
    summary = Trainer(
        tiny("train.epochs=2", "train.eval_epochs=[1]", "data.tasks=semseg,normals"), tmp_path, baseline=baseline
    ).fit()
    first, last = summary["evaluations"]["1"], summary["evaluations"]["2"]
    assert first["delta_m"]["baseline_metrics"] == early and last["delta_m"]["baseline_metrics"] == final
    expected = 100 / 2 * ((25.0 - first["primary"]["semseg"]) / 25.0 + (first["primary"]["normals"] - 80.0) / 80.0)
    assert first["delta_m"]["value"] == pytest.approx(expected)
    no_early = Trainer(
        tiny("train.epochs=2", "train.eval_epochs=[1]", "data.tasks=semseg,normals"),
        tmp_path / "b",
        baseline=Baseline(final),
    ).fit()
    assert no_early["evaluations"]["1"]["delta_m"] is None  # the baseline was not evaluated at epoch 1
