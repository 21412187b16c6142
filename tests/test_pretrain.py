"""The pretrained-encoder analogue: objective, disjoint split, cache with checksum, reuse, one build across processes."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tsn import pretrain
from tsn.__main__ import main
from tsn.backbones import compact_encoder
from tsn.config import ConfigError
from tsn.data import cache, synthetic
from tsn.pretrain import PretrainConfig, ensure_synthetic_weights, pretrain_encoder, synthetic_weights_path

TINY = PretrainConfig(image_size=32, samples=48, epochs=4, batch_size=16, lr=3e-3)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TSN_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[PretrainConfig]:
    """Records every call of ``pretrain_encoder`` that ``ensure_synthetic_weights`` makes."""
    calls: list[PretrainConfig] = []
    original = pretrain.pretrain_encoder

    def counted(cfg: PretrainConfig, on_epoch=None):
        calls.append(cfg)
        return original(cfg, on_epoch)

    monkeypatch.setattr(pretrain, "pretrain_encoder", counted)
    return calls


def test_object_counts_counts_visible_objects_per_class():
    instance = np.array([[0, 1, 3, 3], [4, 4, 5, 6], [2, 2, 7, 7]], dtype=np.uint8)  # objects 3..7
    semseg = np.array([[0, 0, 2, 2], [2, 2, 1, 4], [0, 0, 2, 2]], dtype=np.uint8)  # three boxes, a sphere, a cone
    assert pretrain.object_counts({"instance": instance, "semseg": semseg}).tolist() == [1, 3, 0, 1]


def test_pretrain_split_is_disjoint_from_train_and_val():
    assert len(set(synthetic.SPLIT_IDS.values())) == len(synthetic.SPLIT_IDS)  # distinct rng streams per split
    pre = {synthetic.render(0, "pretrain", i, 32)["image"].tobytes() for i in range(16)}
    for seed in (0, 1):
        for split in ("train", "val"):
            assert pre.isdisjoint(synthetic.render(seed, split, i, 32)["image"].tobytes() for i in range(16))


def test_pretrain_data_is_the_pretrain_split(own_cache: Path):
    data = pretrain.pretrain_data(dataclasses.replace(TINY, samples=3, data_seed=5))
    for i in range(3):
        sample = synthetic.render(5, "pretrain", i, 32)
        np.testing.assert_array_equal(data["image"][i], sample["image"])
        np.testing.assert_array_equal(data["counts"][i], pretrain.object_counts(sample))


def test_pretrain_loss_decreases(own_cache: Path):
    losses: list[float] = []
    pretrain_encoder(TINY, on_epoch=lambda epoch, loss: losses.append(loss))
    assert len(losses) == TINY.epochs
    assert losses[-1] < 0.8 * losses[0]


def test_pretrain_leaves_the_global_rng_alone(own_cache: Path):
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    pretrain_encoder(dataclasses.replace(TINY, epochs=1))
    synthetic_weights_path(TINY)
    assert torch.equal(torch.rand(4), expected)


def test_cached_weights_load_into_a_compact_encoder_unchanged(own_cache: Path):
    path = ensure_synthetic_weights(TINY)
    assert path == synthetic_weights_path(TINY) and path.parent == own_cache / "weights"
    torch.manual_seed(0)
    before = compact_encoder().state_dict()
    torch.manual_seed(0)
    encoder = compact_encoder(str(path))
    expected = pretrain_encoder(TINY)  # deterministic: the same weights again
    loaded = encoder.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert not torch.equal(loaded["stages.0.0.weight"], before["stages.0.0.weight"])


def test_second_call_reuses_the_file_without_training(own_cache: Path, builds: list, monkeypatch):
    path = ensure_synthetic_weights(TINY)
    stamp = path.stat().st_mtime_ns
    assert len(builds) == 1
    assert ensure_synthetic_weights(TINY) == path
    assert len(builds) == 1 and path.stat().st_mtime_ns == stamp


def test_corrupt_weights_are_reported_and_rebuilt(own_cache: Path, builds: list, caplog):
    path = ensure_synthetic_weights(TINY)
    good = path.read_bytes()
    path.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])
    with caplog.at_level(logging.WARNING, logger="tsn.pretrain"):
        assert ensure_synthetic_weights(TINY) == path
    assert any("corrupt pretrained weights" in r.getMessage() for r in caplog.records)
    assert len(builds) == 2
    assert path.read_bytes() == good and cache.verify_checksum(path) == cache.sha256_file(path)


def test_missing_checksum_is_rebuilt(own_cache: Path, builds: list):
    path = ensure_synthetic_weights(TINY)
    path.with_suffix(".sha256").unlink()
    ensure_synthetic_weights(TINY)
    assert len(builds) == 2 and cache.verify_checksum(path)


def _ensure_in_child(index: int, folder: Path) -> None:
    """One of two forked callers: counts its builds in builds.log; a build waits until both callers have started."""
    torch.set_num_threads(1)  # a forked child cannot use the parent's OpenMP team: with 2+ threads it hangs in it
    os.environ["TSN_CACHE_DIR"] = str(folder / "cache")
    started, original = folder / "started.log", pretrain.pretrain_encoder

    def counted(cfg: PretrainConfig, on_epoch=None):
        with open(folder / "builds.log", "a") as log:
            log.write("build\n")
        deadline = time.monotonic() + 60
        while len(started.read_text().split()) < 2 and time.monotonic() < deadline:  # the other is on its way
            time.sleep(0.05)
        time.sleep(0.5)  # ... and now waits on the lock
        return original(cfg, on_epoch)

    pretrain.pretrain_encoder = counted  # this forked process only
    with open(started, "a") as log:
        log.write("started\n")
    path = ensure_synthetic_weights(PretrainConfig(image_size=32, samples=16, epochs=1, batch_size=8))
    (folder / f"path{index}").write_text(str(path))


def test_two_processes_calling_ensure_at_once_build_once(tmp_path: Path):
    (tmp_path / "started.log").touch()
    procs = [multiprocessing.get_context("fork").Process(target=_ensure_in_child, args=(i, tmp_path)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    assert (tmp_path / "builds.log").read_text().split() == ["build"]
    paths = {(tmp_path / f"path{i}").read_text() for i in range(2)}
    assert len(paths) == 1
    cache.verify_checksum(Path(paths.pop()))


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(PretrainConfig)])
def test_weights_path_changes_with_every_config_field(field: str):
    value = getattr(TINY, field)
    changed = dataclasses.replace(TINY, **{field: value * 2 if value else 1})
    assert synthetic_weights_path(changed) != synthetic_weights_path(TINY)


def test_weights_path_changes_with_generator_and_recipe_versions(monkeypatch: pytest.MonkeyPatch):
    base = synthetic_weights_path(TINY)
    monkeypatch.setattr(pretrain, "RECIPE_VERSION", pretrain.RECIPE_VERSION + 1)
    recipe = synthetic_weights_path(TINY)
    monkeypatch.setattr(synthetic, "GENERATOR_VERSION", synthetic.GENERATOR_VERSION + 1)
    assert len({base, recipe, synthetic_weights_path(TINY)}) == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["foo=1"], "unknown key pretrain.foo"),
        (["epochs=x"], "pretrain.epochs: expected an integer"),
        (["image_size=48"], "pretrain.image_size must be a multiple of 32"),
        (["lr=0"], "pretrain.lr must be > 0"),
        (["epochs"], "must look like key=value"),
    ],
)
def test_bad_overrides_are_one_line_errors(overrides: list[str], message: str):
    with pytest.raises(ConfigError, match=message):
        pretrain.with_overrides(PretrainConfig(), overrides)


def test_cli_pretrain_writes_weights_and_prints_path_and_checksum(tmp_path: Path, own_cache: Path, capsys):
    out = tmp_path / "encoder.pth"
    assert main(["pretrain", "--out", str(out), "image_size=32", "samples=16", "epochs=1", "batch_size=8"]) == 0
    printed = capsys.readouterr()
    assert f'"path": "{out}"' in printed.out and f'"sha256": "{cache.sha256_file(out)}"' in printed.out
    assert "pretrain epoch 1/1" in printed.err
    compact_encoder(str(out))  # loads strictly: every key, every shape
    assert main(["pretrain", "epochs=-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: pretrain.epochs must be > 0, got -1"
