"""Task codes from a file (``model.codes_file``): used draw-for-draw, checked at config time, hashed by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tsn.config import ConfigError, config_hash, resolve
from tsn.encodings import orthogonal_codes
from tsn.models import build_model
from tsn.tasks import dataset_tasks

SMALL = ["model.n_fc=2"]  # the smoke budget's model: compact encoder, 1/4 decoder widths, 5 tasks


def codes_file(tmp_path: Path, array: np.ndarray, name: str = "codes.npy") -> Path:
    path = tmp_path / name
    np.save(path, array)
    return path


def with_codes(path: Path, *overrides: str):
    return resolve("smoke", overrides=[*SMALL, f"model.codes_file={path}", *overrides])


def test_the_models_task_codes_are_the_files_rows(tmp_path: Path) -> None:
    array = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    cfg = with_codes(codes_file(tmp_path, array), "model.embedding_dim=7")  # orthogonal cannot draw d = 7
    model = build_model(cfg.model, dataset_tasks("synthetic"))
    assert cfg.model.encoding == "orthogonal"  # recorded as given
    assert torch.equal(model.task_codes, torch.from_numpy(array))


def test_rows_follow_the_runs_task_order(tmp_path: Path) -> None:
    array = np.arange(20, dtype=np.float64).reshape(2, 10)
    cfg = with_codes(codes_file(tmp_path, array), "model.embedding_dim=10", "data.tasks=[edge, semseg]")
    model = build_model(cfg.model, dataset_tasks("synthetic", cfg.data.tasks))
    assert list(model.task_names) == ["edge", "semseg"]
    assert torch.equal(model.task_codes[model.task_ids["semseg"]], torch.arange(10.0, 20.0))


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((5, 50)), "has shape (5, 50)"),
        (np.zeros((4, 60)), "has shape (4, 60)"),
        (np.zeros(60), "has shape (60,)"),
        (np.where(np.eye(5, 60) > 0, np.nan, 0.0), "holds NaN or infinite values"),
        (np.full((5, 60), np.inf), "holds NaN or infinite values"),
        (np.full((5, 60), "a"), "holds <U1 values"),
    ],
)
def test_a_codes_file_that_does_not_fit_is_a_one_line_error(tmp_path: Path, array: np.ndarray, problem: str) -> None:
    path = codes_file(tmp_path, array)
    with pytest.raises(ConfigError) as err:
        with_codes(path, "model.embedding_dim=60")
    expected = "expected a .npy array of shape (5, 60) (tasks x model.embedding_dim) of finite numbers"
    assert str(err.value) == f"model.codes_file {path} {problem}; {expected}"


def test_a_missing_or_unreadable_codes_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"model.codes_file not found: .*missing.npy; expected a .npy array of "
        r"shape \(5, 60\)",
    ):
        with_codes(tmp_path / "missing.npy", "model.embedding_dim=60")
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ConfigError, match=r"model.codes_file .*objects.npy cannot be read \(.*allow_pickle=False"):
        with_codes(pickled, "model.embedding_dim=60")
    archive = tmp_path / "codes.npz"
    np.savez(archive, codes=np.zeros((5, 60)))
    with pytest.raises(ConfigError, match=r"codes.npz is an .npz archive, not one array"):
        with_codes(archive, "model.embedding_dim=60")


def test_the_config_hash_follows_the_files_content_not_its_path(tmp_path: Path) -> None:
    codes = orthogonal_codes(5, 60).numpy()
    first = with_codes(codes_file(tmp_path, codes, "a.npy"), "model.embedding_dim=60")
    same = with_codes(codes_file(tmp_path, codes, "b.npy"), "model.embedding_dim=60")
    assert config_hash(first) == config_hash(same)
    assert config_hash(first) != config_hash(resolve("smoke", overrides=[*SMALL, "model.embedding_dim=60"]))
    codes[0, 0] = 0.5
    codes_file(tmp_path, codes, "a.npy")
    assert config_hash(first) != config_hash(same)
