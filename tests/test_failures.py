"""Fault injection: bad input, interrupts, damaged files, full disks, dead storage, many workers. Nothing lost."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState
from test_data_real import nyud_root  # noqa: F401 - fixture
from test_sweeps import (
    ENCODINGS,
    REPO,
    TINY,
    make_sweep,
    sweep_argv,
    write_experiment,
)

from sweeps import records as R
from sweeps.__main__ import main as sweeps_main
from sweeps.driver import Sweep
from tsn import atomic
from tsn.checkpoint import load_checkpoint
from tsn.config import resolve
from tsn.data import build_dataset
from tsn.train import Trainer

GOOD_AXES = "axes: {nuisance: {train.seed: [1]}}\n"

# (experiment file text, expected fragment of the one-line error)
BAD_EXPERIMENTS = [
    ("name: x\naxes: {scientific: {model.encoding: []}}\n", "axis model.encoding must be a non-empty list"),
    (
        "name: x\naxes: {scientific: {model.encodings: [orthogonal]}}\n",
        "unknown key model.encodings; valid keys in model",
    ),
    ("name: x\naxes: {}\n", "the grid is empty"),
    ("name: x\n", "the grid is empty"),
    ("name: x\nfixed: {model: {architecture: tsm}}\n" + GOOD_AXES, "unknown architecture 'tsm'; valid: ['tsn'"),
    (
        "name: x\naxes: {scientific: {model.embedding_dim: [7]}}\n",
        "divisible by the number of tasks (5); got 7, valid: 5, 10",
    ),
    ("name: x\naxes: {scientific: {model.encoding: [orthogonal]}\n", "YAML syntax error at line"),
    ("name: x\nbaseline: multi\n" + GOOD_AXES, "baseline: 'multi' is not valid; valid: single_task, none"),
    ("name: x\nseeds: [1]\n" + GOOD_AXES, "unknown key 'seeds'; valid: name"),
    ("- just\n- a list\n", "an experiment file must be a mapping"),
    ("name: 'two words'\n" + GOOD_AXES, "name must be letters, digits, '-' or '_', not starting with '_'"),
    ("name: x\naxes: {important: {train.seed: [1]}}\n", "unknown axis kind 'important'; valid: scientific, nuisance"),
    ("name: x\naxes: {nuisance: {seed: [1]}}\n", "axis 'seed' must be a dotted config key"),
    ("name: x\naxes: {nuisance: {train.seed: [1, 1]}}\n", "axis train.seed repeats a value"),
    ("name: x\naxes: {nuisance: {train.seed: 1}}\n", "axis train.seed must be a non-empty list"),
    ("name: x\nfixed: {optimizer: {lr: 1}}\n" + GOOD_AXES, "unknown section 'optimizer'; valid: model, data, train"),
    ("name: x\nfixed: {train: {epochs: 0}}\n" + GOOD_AXES, "train.epochs must be in [1, 100000], got 0"),
    ("name: x\nfixed: {train: {batch_size: -4}}\n" + GOOD_AXES, "train.batch_size must be in [1, 65536], got -4"),
    ("name: x\nfixed: {data: {image_size: 0}}\n" + GOOD_AXES, "data.image_size must be in [64, 4096], got 0"),
    ("name: x\nfixed: {train: {epochs: many}}\n" + GOOD_AXES, "train.epochs: expected an integer, got 'many'"),
    (
        "name: x\nfixed: {data: {dataset: pascal_context, root: /nonexistent/PASCAL_MT}}\n" + GOOD_AXES,
        "data.root: folder not found: /nonexistent/PASCAL_MT",
    ),
    ("name: x\nfixed: {data: {dataset: nyud}}\n" + GOOD_AXES, "data.root is required for nyud"),
    (
        "name: x\nfixed: {data: {dataset: cityscapes}}\n" + GOOD_AXES,
        "data.dataset: 'cityscapes' is not valid; valid: nyud",
    ),
    (
        "name: x\nfixed: {data: {tasks: [semseg, sky]}}\n" + GOOD_AXES,
        "unknown task 'sky' for dataset 'synthetic'; valid",
    ),
    (
        "name: x\nfixed: {train: {schedule: random}}\n" + GOOD_AXES,
        "train.schedule: 'random' is not valid; valid: epoch, batch",
    ),
    ("name: x\nfixed: {model: {encoding: uniform}}\n" + GOOD_AXES, "unknown task encoding 'uniform'; valid"),
    ("name: x\nfixed: {model: {backbone: vgg16}}\n" + GOOD_AXES, "unknown backbone 'vgg16'; valid"),
    ("name: x\nfixed: {train: {plateau_factor: 2}}\n" + GOOD_AXES, "train.plateau_factor must be in (0, 1), got 2.0"),
    ("name: x\nfixed: {model: {decoder_width: -1}}\n" + GOOD_AXES, "model.decoder_width must be in (0, 16]"),
    ("name: x\nfixed: {train: {amp: sometimes}}\n" + GOOD_AXES, "train.amp: expected true or false"),
]


@pytest.mark.parametrize("text, message", BAD_EXPERIMENTS)
def test_malformed_experiment_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, text, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code = sweeps_main(sweep_argv(path, f"sqlite:///{tmp_path / 's.db'}", tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "runs").exists()


def test_storage_that_does_not_answer_is_one_line_exit_2_and_quick(tmp_path, capsys) -> None:
    started = time.monotonic()
    storage = "postgresql://postgres@127.0.0.1:1/test"
    code = sweeps_main(sweep_argv(REPO / "experiments" / "embedding.yaml", storage, tmp_path / "runs", tables=True))
    err = capsys.readouterr().err
    assert code == 2 and "cannot open study storage postgresql://postgres@127.0.0.1:1/test" in err
    assert err.count("\n") == 1 and time.monotonic() - started < 30 and not (tmp_path / "runs").exists()


def test_out_of_memory_in_one_trial_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS))
    original = Trainer.train_step

    def step(self, tasks, batch, where=""):
        if self.cfg.model.architecture == "tsn" and self.cfg.model.encoding == "gaussian":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return original(self, tasks, batch, where)

    monkeypatch.setattr(Trainer, "train_step", step)
    assert sweep.run() == {"complete": 1, "failed": 1}
    (failed,) = sweep.study.get_trials(states=(TrialState.FAIL,))
    assert failed.user_attrs[R.FAIL_REASON] == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert failed.params["model.encoding"] == "gaussian"


def test_disk_full_while_writing_keeps_the_previous_file_and_no_temp_file(tmp_path, monkeypatch) -> None:
    cfg = resolve("smoke", overrides=[*TINY])
    Trainer(cfg, tmp_path).fit()
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint.pt", tmp_path / "metrics.json")}

    def full_disk(obj, file, *args, **kwargs):
        Path(file).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Trainer(resolve("smoke", overrides=[*TINY, "train.epochs=2"]), tmp_path).fit(resume=False)
    with pytest.raises(OSError, match="No space left"):
        atomic.atomic_write(tmp_path / "metrics.json", lambda tmp: full_disk(None, tmp))
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint.pt", tmp_path / "metrics.json")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.json"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1


def test_damaged_label_file_in_a_real_dataset_names_the_file(nyud_root) -> None:  # noqa: F811
    (label,) = sorted((nyud_root / "segmentation").glob("*.png"))[:1]
    label.write_bytes(label.read_bytes()[:40])
    dataset = build_dataset("nyud", "train", ["semseg"], 64, root=str(nyud_root))
    index = [i for i, name in enumerate(dataset.ids) if name == label.stem][0]
    with pytest.raises(ValueError, match=f"damaged file {label}"):
        dataset[index]
    depth = sorted((nyud_root / "depth").glob("*.npy"))[0]
    depth.write_bytes(depth.read_bytes()[:20])
    with pytest.raises(ValueError, match=f"damaged file {depth}"):
        build_dataset("nyud", "train", ["depth"], 64, root=str(nyud_root))[
            [i for i, n in enumerate(dataset.ids) if n == depth.stem][0]
        ]


def test_checkpoints_load_weights_only(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "config": {}, "payload": Evil()}, path)
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(path)


def test_sweep_rebuilt_from_storage_is_the_same_sweep(tmp_path) -> None:
    sweep = make_sweep(tmp_path, write_experiment(tmp_path, ENCODINGS))
    again = Sweep.from_storage(sweep.study_name, sweep.storage_url, runs_dir=tmp_path / "runs", log=lambda _: None)
    assert again.by_hash.keys() == sweep.by_hash.keys()
    assert again.baseline_by_hash.keys() == sweep.baseline_by_hash.keys() and sweep.baseline_by_hash


def test_a_retried_trial_resumes_its_wandb_run_instead_of_creating_another(tmp_path) -> None:
    from wandb_offline import read_offline_run

    from sweeps.tracking import TrackingConfig, WandbRun

    cfg = TrackingConfig(mode="offline", dir=str(tmp_path))
    ids = []
    for attempt in range(2):  # the first attempt "crashes" (exit code 1), the retry finishes
        run = WandbRun(cfg, study="s", config_hash="abc", job_type="trial", name="s-0", tags=[], config={"a": 1})
        run.on_epoch_end(None, {"epoch": attempt + 1, "train_loss": {"semseg": 1.0 / (attempt + 1)}})
        ids.append(run.run_id)
        run.finish(exit_code=1 - attempt)
    assert ids[0] == ids[1] is not None
    logged = [read_offline_run(d) for d in sorted(tmp_path.glob("wandb/offline-run-*"))]
    assert {entry["run"]["id"] for entry in logged} == {ids[0]}  # one W&B run, resumed
