"""The single-task baseline of a run derives from the config types: it resets exactly the fields marked
``multi_task_only`` (tsn.domains) and keeps every other, and it keys the same stored baselines as before."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from sweeps.experiment import budget_max_seeds, experiment_files, load_experiment
from tsn.config import SECTIONS, RunConfig, baseline_config, config_hash
from tsn.domains import is_multi_task_only
from tsn.models import ModelConfig

SENTINEL = object()  # a value no field has: kept or reset, never confused with a default
EVERY_FIELD = [(section, item) for section, kind in SECTIONS.items() for item in fields(kind)]


@pytest.mark.parametrize("section, item", EVERY_FIELD, ids=lambda x: getattr(x, "name", x))
def test_the_baseline_keeps_a_field_iff_it_is_not_marked_multi_task_only(section, item) -> None:
    cfg = RunConfig()
    cfg = replace(cfg, **{section: replace(getattr(cfg, section), **{item.name: SENTINEL})})
    kept = getattr(getattr(baseline_config(cfg), section), item.name)
    if not is_multi_task_only(item):
        assert kept is SENTINEL  # a new field is compared like for like unless it is marked
    elif (section, item.name) == ("model", "architecture"):
        assert kept == "single_task"
    else:
        assert kept == getattr(getattr(RunConfig(), section), item.name)


def test_the_multi_task_only_fields_are_the_task_conditioning_and_the_task_schedule() -> None:
    marked = {f"{section}.{item.name}" for section, item in EVERY_FIELD if is_multi_task_only(item)}
    assert marked == {
        "model.architecture",
        "model.encoding",
        "model.embedding_dim",
        "model.n_fc",
        "model.code_seed",
        "model.codes_file",
        "model.head",
        "train.schedule",
    }


def listed_baseline_config(cfg: RunConfig) -> RunConfig:
    """sweeps.driver.baseline_config as it listed the kept fields before they were marked in the config types."""
    model = ModelConfig(
        architecture="single_task",
        backbone=cfg.model.backbone,
        pretrained=cfg.model.pretrained,
        decoder_width=cfg.model.decoder_width,
    )
    return replace(cfg, model=model, train=replace(cfg.train, schedule="epoch"))


@pytest.mark.parametrize("budget", ["smoke", "cpu"])
@pytest.mark.parametrize("path", experiment_files(), ids=lambda p: p.stem)
def test_every_experiments_baselines_keep_their_config_hash(path, budget) -> None:
    """The config hash keys the stored baselines: a changed hash would orphan every finished one."""
    points = load_experiment(path).grid(budget, max_seeds=budget_max_seeds(budget))
    assert points
    for point in points:
        assert baseline_config(point.config) == listed_baseline_config(point.config)
        assert config_hash(baseline_config(point.config)) == config_hash(listed_baseline_config(point.config))
