"""An axis that gains (or loses) levels in a study that already has trials: the sweep goes on, nothing recorded moves."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from test_sweeps import make_sweep, write_experiment

from sweeps.export import export, restore
from sweeps.grow import grown_distributions, union_of_choices
from sweeps.ledger import Ledger

TWO = {"x": CategoricalDistribution([1.0, 2.0])}
THREE = {"x": CategoricalDistribution([1.0, 0.5, 2.0])}  # a level added in the middle of the list


def _finish(storage, distributions, value: float) -> Ledger:
    ledger = Ledger(storage, "s", {str(value): None}, distributions)
    trial = ledger.claim({"x": value}, str(value))
    ledger.complete(trial, value, {})
    return ledger


def test_a_level_added_to_an_axis_is_appended_to_the_recorded_choices_and_every_stored_value_stays(tmp_path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    _finish(storage, TWO, 1.0)
    _finish(storage, TWO, 2.0)
    said: list[str] = []
    grown = grown_distributions(storage, "s", THREE, said.append)
    assert grown == {"x": CategoricalDistribution([1.0, 2.0, 0.5])}
    assert said == ["study s: axis x gained the levels [0.5]"]
    _finish(storage, grown, 0.5)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials(states=(TrialState.COMPLETE,))
    assert [(t.params["x"], t.value) for t in trials] == [(1.0, 1.0), (2.0, 2.0), (0.5, 0.5)]
    assert {t.distributions["x"] for t in trials} == {grown["x"]}
    assert grown_distributions(storage, "s", THREE, said.append) == grown and len(said) == 1  # once


def test_a_level_removed_or_a_new_study_keeps_what_is_recorded_or_wanted(tmp_path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    assert grown_distributions(storage, "s", TWO, print) == TWO  # no study yet
    _finish(storage, TWO, 1.0)
    fewer = grown_distributions(storage, "s", {"x": CategoricalDistribution([2.0])}, print)
    assert fewer == TWO
    _finish(storage, fewer, 2.0)


def test_a_journal_cannot_rewrite_its_trials_and_says_what_to_do(tmp_path) -> None:
    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    _finish(storage, TWO, 1.0)
    with pytest.raises(ValueError) as err:
        grown_distributions(storage, "s", THREE, print)
    message = str(err.value)
    assert "\n" not in message and "axis x gained the levels [0.5]" in message and "experiment of their own" in message


def test_the_choices_of_several_trials_are_united_in_the_order_they_appear(tmp_path) -> None:
    storage = RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    _finish(storage, TWO, 1.0)
    _finish(storage, grown_distributions(storage, "s", THREE, print), 0.5)
    trials = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert union_of_choices(trials) == {"x": CategoricalDistribution([1.0, 2.0, 0.5])}


def test_an_experiment_whose_axis_gained_a_level_claims_its_new_points_in_the_same_study(tmp_path: Path) -> None:
    one = "  scientific:\n    model.embedding_dim: [10]\n  nuisance:\n    train.seed: [1337]\n"
    first = make_sweep(tmp_path, write_experiment(tmp_path, one))
    ((key, point),) = first.by_hash.items()
    first.ledger.complete(first.ledger.claim(point.params, key), 0.0, {})  # finished, as a run would leave it
    grown = make_sweep(tmp_path, write_experiment(tmp_path, one.replace("[10]", "[10, 20]")))
    new = [(k, p) for k, p in grown.by_hash.items() if k != key]
    assert len(new) == 1 and grown.ledger.status() == {key: "complete"}
    trial = grown.ledger.claim(new[0][1].params, new[0][0])
    assert trial.params == {"model.embedding_dim": 20, "train.seed": 1337}
    (done,) = grown.study.get_trials(states=(TrialState.COMPLETE,))
    assert done.params == {"model.embedding_dim": 10, "train.seed": 1337}


def test_an_export_with_more_levels_than_the_study_imports_and_widens_it(tmp_path: Path) -> None:
    wide, narrow = f"sqlite:///{tmp_path / 'wide.db'}", f"sqlite:///{tmp_path / 'narrow.db'}"
    for value in (1.0, 0.5):
        _finish(RDBStorage(wide), grown_distributions(RDBStorage(wide), "s", THREE, print), value)
    _finish(RDBStorage(narrow), TWO, 2.0)
    export(wide, tmp_path / "export", ["s"])
    assert restore(narrow, tmp_path / "export", ["s"]) == {"s": 2}
    trials = optuna.load_study(study_name="s", storage=narrow).get_trials()
    assert [t.params["x"] for t in trials] == [2.0, 1.0, 0.5]
    assert {t.distributions["x"] for t in trials} == {CategoricalDistribution([1.0, 2.0, 0.5])}
