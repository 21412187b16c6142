"""Configuration: defaults, budgets, YAML and key=value overrides, one-line errors, the config hash."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tsn.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    config_hash,
    from_dict,
    identity,
    load_budgets,
    resolve,
    without_runtime,
)


def test_budgets_define_smoke_cpu_and_paper() -> None:
    budgets = load_budgets()
    assert {"smoke", "cpu", "paper"} <= set(budgets)
    paper = resolve("paper")
    assert (paper.model.backbone, paper.data.image_size, paper.train.epochs) == ("resnet18", 512, 300)
    assert (paper.train.lr_encoder, paper.train.lr_decoder, paper.train.batch_size) == (1e-6, 1e-4, 16)
    assert paper.data.dataset == "pascal_context" and paper.train.schedule == "epoch"


def test_overrides_take_qualified_and_unique_unqualified_keys() -> None:
    cfg = resolve("smoke", overrides=["train.epochs=3", "embedding_dim=50", "encoding=gaussian", "tasks=semseg,edge"])
    assert cfg.train.epochs == 3 and cfg.model.embedding_dim == 50 and cfg.model.encoding == "gaussian"
    assert cfg.data.tasks == ("semseg", "edge")


def test_config_file_sits_between_budget_and_overrides(tmp_path) -> None:
    file = tmp_path / "run.yaml"
    file.write_text("train: {epochs: 7, batch_size: 4}\nmodel: {architecture: task_in}\n")
    cfg = resolve("smoke", str(file), ["train.epochs=9"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.model.architecture) == (9, 4, "task_in")


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.epoch=3"], "unknown key train.epoch; valid keys in train: schedule, epochs"),
        (["train.epochs=three"], "train.epochs: expected an integer, got 'three'"),
        (["train.epochs=0"], "train.epochs must be in [1, 100000], got 0"),
        (["train.schedule=task"], "train.schedule: 'task' is not valid; valid: epoch, batch, joint"),
        (["data.image_size=80"], "data.image_size must be a multiple of 32"),
        (["model.architecture=tsm"], "unknown architecture 'tsm'; valid: ['tsn', 'task_in'"),
        (["model.embedding_dim=52"], "divisible by the number of tasks (5); got 52"),
        (["data.tasks=semseg,depth,sky"], "unknown task 'sky' for dataset 'synthetic'"),
        (["data.dataset=coco"], "data.dataset: 'coco' is not valid; valid: nyud, pascal_context, synthetic"),
        (["frobnicate=1"], "unknown key 'frobnicate'; valid: data.augment"),
        (["epochs"], "must look like section.key=value"),
        (["train.loss_weights={sky: 1}"], "train.loss_weights: unknown task 'sky'"),
        (["train.amp=maybe"], "train.amp: expected true or false, got 'maybe'"),
    ],
)
def test_bad_values_are_one_line_errors_naming_key_and_valid_values(overrides, message) -> None:
    with pytest.raises(ConfigError) as err:
        resolve("smoke", overrides=overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_budget_and_yaml_syntax_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="unknown budget 'huge'; valid: smoke, cpu, gpu, paper"):
        resolve("huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(ConfigError, match="YAML syntax error at line"):
        resolve("smoke", str(bad))


def test_config_round_trips_through_a_dict() -> None:
    cfg = resolve("smoke", overrides=["train.loss_weights={edge: 10}", "data.tasks=[edge, normals]"])
    assert from_dict(cfg.to_dict()) == cfg


def test_config_hash_ignores_runtime_keys_only() -> None:
    cfg = resolve("smoke")
    same = apply_overrides(cfg, ["train.threads=1", "train.progress=false", "data.num_workers=2"])
    other = apply_overrides(cfg, ["train.seed=2"])
    assert config_hash(cfg) == config_hash(same) != config_hash(other)
    assert len(config_hash(RunConfig())) == 16


def test_a_field_added_after_records_existed_changes_no_hash_until_it_is_set() -> None:
    cfg = resolve("cpu")
    before = without_runtime(cfg.to_dict())  # the record of a run stored before data.fresh_scenes existed
    del before["data"]["fresh_scenes"]
    digest = hashlib.sha256(json.dumps(before, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
    assert config_hash(cfg) == digest
    assert identity(cfg.to_dict()) == before
    assert config_hash(apply_overrides(cfg, ["data.fresh_scenes=true"])) != digest


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.train_samples=null"], "got dataset synthetic and train_samples None"),
        (["data.dataset=nyud", "data.root=/x"], "needs data.dataset=synthetic"),
        (["data.train_samples=10000000", "train.epochs=11"], "110000000 scenes, more than 100000000"),
    ],
)
def test_fresh_scenes_outside_the_synthetic_stream_is_a_one_line_error(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        resolve("cpu", overrides=["data.fresh_scenes=true", *overrides])
    assert "\n" not in str(err.value)
