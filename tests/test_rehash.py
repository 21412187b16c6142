"""One network, one identity: a value written out where leaving it unset means the same (``model.pretrained: none``,
``model.head`` at the architecture's own) hashes as unset, and records made before that rule are brought up to it
(sweeps.rehash) in a storage and in an export, so that nothing recorded is trained or tabulated twice."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from functools import partial
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from test_sweeps import SHARED, make_sweep, write_experiment

import tsn.config
from sweeps import records as R
from sweeps.export import export, read_study, restore
from sweeps.rehash import rehash, stale_hashes, updated_attrs
from tsn.config import RunConfig, baseline_config, config_hash, resolve
from tsn.models import ARCHITECTURES, default_head

REPO = Path(__file__).resolve().parent.parent
SMOKE = resolve("smoke")
NONE = "  scientific:\n    model.encoding: [orthogonal]\n  nuisance:\n    train.seed: [1337]\n"


def _older_hash(config: dict) -> str:
    """The hash the code before ``unset_means`` gave a stored config."""
    return tsn.config.identity_hash(tsn.config.identity(json.loads(json.dumps(config)), keep_written_out=True))


def _model(**changes) -> RunConfig:
    return replace(SMOKE, model=replace(SMOKE.model, **changes))


# ------------------------------------------------------------------------------------------------- identity
def test_a_value_written_out_where_unset_means_the_same_hashes_as_unset() -> None:
    assert config_hash(_model(pretrained="none")) == config_hash(_model(pretrained=None))
    assert config_hash(_model(pretrained="synthetic")) != config_hash(_model(pretrained=None))
    for arch in ARCHITECTURES:
        own, other = default_head(arch), {"shared": "per_task", "per_task": "shared"}[default_head(arch)]
        assert config_hash(_model(architecture=arch, head=own)) == config_hash(_model(architecture=arch)), arch
        assert config_hash(_model(architecture=arch, head=other)) != config_hash(_model(architecture=arch)), arch
    assert default_head("tsn") == "shared" and default_head("multi_decoder") == "per_task"
    assert default_head("no_such_architecture") is None and default_head(None) is None


def test_a_single_task_baseline_of_pretrained_none_is_the_baseline_of_pretrained_unset() -> None:
    assert config_hash(baseline_config(_model(pretrained="none"))) == config_hash(baseline_config(SMOKE))


def test_every_recorded_trial_keeps_its_hash_or_is_renamed_exactly_as_the_rule_says() -> None:
    """The records in reports/trials: each stored hash is today's, or stale by the one rule; no identity change
    leaves a record behind unnoticed."""
    attrs = []
    for path in sorted((REPO / "reports" / "trials").glob("*.json*")):
        data = json.loads(gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text())
        for trial in data["trials"]:
            config = trial["user_attrs"].get(R.CONFIG)
            if isinstance(config, dict) and config["model"].get("codes_file") is None:  # a file's hash: its content
                attrs.append(trial["user_attrs"])
    renamed = stale_hashes(attrs)
    for a in attrs:
        config = json.loads(json.dumps({k: v for k, v in a[R.CONFIG].items() if k != "config_hash"}))
        today = tsn.config.identity_hash(tsn.config.identity(config))
        assert renamed.get(a[R.CONFIG_HASH], a[R.CONFIG_HASH]) == today, a[R.CONFIG]
        if a[R.CONFIG_HASH] in renamed:  # only a record of a written-out value is renamed (none left since 2026-11-28)
            assert a[R.CONFIG]["model"].get("pretrained") == "none", a[R.CONFIG]


def test_a_record_of_older_code_or_of_a_codes_file_is_left_alone() -> None:
    config = _model(pretrained="none").to_dict()
    stale = _older_hash(config)
    assert stale_hashes([{R.CONFIG_HASH: stale, R.CONFIG: config}]) == {stale: config_hash(_model())}
    assert stale_hashes([{R.CONFIG_HASH: "0123456789abcdef", R.CONFIG: config}]) == {}  # not this rule's hash
    with_codes = {**config, "model": {**config["model"], "codes_file": "/gone/codes.npy"}}
    assert stale_hashes([{R.CONFIG_HASH: stale, R.CONFIG: with_codes}]) == {}
    assert stale_hashes([{R.CONFIG_HASH: stale}, {R.CONFIG: config}]) == {}  # half a record


def test_every_place_a_hash_is_recorded_is_renamed_and_nothing_else() -> None:
    attrs = {
        R.CONFIG_HASH: "old",
        R.CONFIG: {"model": {"pretrained": "none"}},
        R.BASELINE_RUNS: [{"study": "s", "trial": 3, "config_hash": "old"}, {"study": "s", "config_hash": "kept"}],
        R.RECORDED_FROM: {"study": "t", "trial": 1, "config_hash": "old"},
        R.RUN_DIR: "runs/synthetic-smoke/old",
        "note": "old",
    }
    new = updated_attrs(attrs, {"old": "new"})
    assert new[R.CONFIG_HASH] == new[R.RECORDED_FROM]["config_hash"] == "new" and new[R.CONFIG] == attrs[R.CONFIG]
    assert [b["config_hash"] for b in new[R.BASELINE_RUNS]] == ["new", "kept"]
    assert new[R.RUN_DIR] == attrs[R.RUN_DIR] and new["note"] == "old" and attrs[R.CONFIG_HASH] == "old"


# --------------------------------------------------------------------------------------- a stored sweep
@pytest.fixture
def legacy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str, Path]:
    """A smoke sweep of TSN with ``model.pretrained: none`` recorded by the code before the rule (its identity kept
    the written-out value), exported: (experiment, storage, export folder)."""
    experiment = write_experiment(tmp_path, NONE, fixed="{model: {architecture: tsn, pretrained: none}}")
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    with monkeypatch.context() as old_code:
        old_code.setattr(tsn.config, "identity", partial(tsn.config.identity, keep_written_out=True))
        for module in ("sweeps.driver", "sweeps.export"):  # nor did it rename anything
            old_code.setattr(f"{module}.rehash", lambda storage, log: {})
        counts = make_sweep(tmp_path, experiment, storage).run()
        export(storage, tmp_path / "export", ["mini-synthetic-smoke", SHARED])
    assert counts.get("complete") == 1 and not counts.get("failed"), counts
    return experiment, storage, tmp_path / "export"


def _only(storage: str, study: str) -> optuna.trial.FrozenTrial:
    (trial,) = optuna.load_study(study_name=study, storage=storage).get_trials()
    return trial


def test_a_sweep_on_a_storage_of_the_older_identity_renames_its_records_and_trains_nothing(legacy, tmp_path) -> None:
    experiment, storage, _ = legacy
    before = {s: _only(storage, s) for s in ("mini-synthetic-smoke", SHARED)}
    said: list[str] = []
    sweep = make_sweep(tmp_path, experiment, storage, log=said.append)
    counts = sweep.run()
    assert counts.get("complete") == 1 and not counts.get("failed"), counts
    assert not any(line.startswith("[") for line in said), said  # no trial started or recorded: it was found
    point, baseline = _only(storage, "mini-synthetic-smoke"), _only(storage, SHARED)
    (cfg,) = [p.config for p in sweep.points]
    assert point.user_attrs[R.CONFIG_HASH] == config_hash(cfg)
    unset = replace(cfg, model=replace(cfg.model, pretrained=None))
    assert (
        baseline.user_attrs[R.CONFIG_HASH] == config_hash(baseline_config(unset)) == config_hash(baseline_config(cfg))
    )
    assert point.user_attrs[R.BASELINE_RUNS][0]["config_hash"] == baseline.user_attrs[R.CONFIG_HASH]
    for old, new in ((before["mini-synthetic-smoke"], point), (before[SHARED], baseline)):
        assert old.user_attrs[R.CONFIG_HASH] != new.user_attrs[R.CONFIG_HASH]
        assert (old.value, old.params, old.user_attrs[R.RUN_DIR]) == (new.value, new.params, new.user_attrs[R.RUN_DIR])
        assert {k: v for k, v in old.user_attrs.items() if k not in ("config_hash", "baseline_runs")} == {
            k: v for k, v in new.user_attrs.items() if k not in ("config_hash", "baseline_runs")
        }
    assert sum("older identity" in line for line in said) == 1
    assert rehash(optuna.storages.RDBStorage(storage), said.append) == {}  # once


def test_an_export_of_the_older_identity_imports_once_under_todays_hashes(legacy, tmp_path) -> None:
    experiment, storage, folder = legacy
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert restore(fresh, folder) == {"mini-synthetic-smoke": 1, SHARED: 1}
    assert restore(fresh, folder) == {"mini-synthetic-smoke": 0, SHARED: 0}
    (cfg,) = [p.config for p in make_sweep(tmp_path, experiment, fresh).points]  # opening it renames nothing more
    point = _only(fresh, "mini-synthetic-smoke")
    assert point.user_attrs[R.CONFIG_HASH] == config_hash(cfg)
    assert point.user_attrs[R.BASELINE_RUNS][0]["config_hash"] == _only(fresh, SHARED).user_attrs[R.CONFIG_HASH]
    assert restore(storage, folder) == {"mini-synthetic-smoke": 0, SHARED: 0}  # the older storage itself
    assert _only(storage, "mini-synthetic-smoke").user_attrs[R.CONFIG_HASH] == config_hash(cfg)
    export(storage, folder)  # merged into the older files: one trial per point, under today's hash
    (trial,) = read_study(folder, "mini-synthetic-smoke")["trials"]
    assert trial["user_attrs"][R.CONFIG_HASH] == config_hash(cfg)


def test_a_journal_keeps_its_records_and_says_that_their_points_train_again(tmp_path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    config = _model(pretrained="none").to_dict()
    stale = _older_hash(config)
    study = optuna.create_study(study_name="s", storage=storage)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=1.0, user_attrs={R.CONFIG_HASH: stale, R.CONFIG: config}
        )
    )
    said: list[str] = []
    assert rehash(storage, said.append) == {}
    assert len(said) == 1 and "\n" not in said[0] and "JournalStorage cannot rewrite" in said[0]
    assert study.get_trials()[0].user_attrs[R.CONFIG_HASH] == stale
