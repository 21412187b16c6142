"""An axis that gains levels in a study that already has trials (``train.seed: [1337, 1338]`` becomes three seeds).

Optuna records a categorical parameter once per study, with its choices, and refuses any other choices for the same
name afterwards ("CategoricalDistribution does not support dynamic value space"). A grid's points are enqueued with
one categorical distribution per axis, so adding a level to an experiment's axis, the most ordinary way a study
grows, would stop every worker at its first new point. :func:`grown_distributions` keeps the study's recorded
choices, appends the new levels at their end and rewrites the recorded parameters to the longer choices. A
categorical value is stored as its index among the choices, so every stored index keeps its value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, CategoricalDistribution, distribution_to_json
from optuna.storages import RDBStorage


def grown_distributions(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    wanted: Mapping[str, BaseDistribution],
    log: Callable[[str], None],
) -> dict[str, BaseDistribution]:
    """The distributions to give the points of study ``study_name`` that ``wanted`` describes.

    A categorical parameter the study already records keeps its recorded choices, followed by the values of
    ``wanted`` it lacks; when there are any, the study's recorded parameters are rewritten to those choices first
    (SQL storages; a journal cannot rewrite its past, which is a one-line error), and ``log`` says so. Anything else
    is ``wanted``.
    """
    recorded = _recorded_distributions(storage, study_name)
    grown: dict[str, BaseDistribution] = {}
    for name, distribution in wanted.items():
        old = recorded.get(name)
        if not (isinstance(old, CategoricalDistribution) and isinstance(distribution, CategoricalDistribution)):
            grown[name] = distribution
            continue
        new_levels = [c for c in distribution.choices if c not in old.choices]
        grown[name] = CategoricalDistribution([*old.choices, *new_levels]) if new_levels else old
        if new_levels:
            _rewrite(storage, study_name, name, grown[name], new_levels)
            log(f"study {study_name}: axis {name} gained the levels {new_levels}")
    return grown


def _recorded_distributions(storage: optuna.storages.BaseStorage, study_name: str) -> dict[str, BaseDistribution]:
    if study_name not in optuna.get_all_study_names(storage):
        return {}
    recorded: dict[str, BaseDistribution] = {}
    for trial in optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False):
        for name, distribution in trial.distributions.items():
            recorded.setdefault(name, distribution)
    return recorded


def _rewrite(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    name: str,
    distribution: CategoricalDistribution,
    new_levels: list,
) -> None:
    if not isinstance(storage, RDBStorage):
        raise ValueError(
            f"study {study_name}: axis {name} gained the levels {new_levels}, and a {type(storage).__name__} cannot "
            "rewrite the parameters its trials recorded; give the new levels an experiment of their own, or use an "
            "SQL storage (sqlite:///… or postgresql://…)"
        )
    study_id = storage.get_study_id_from_name(study_name)
    with storage.engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "UPDATE trial_params SET distribution_json = :distribution WHERE param_name = :name "
                "AND trial_id IN (SELECT trial_id FROM trials WHERE study_id = :study_id)"
            ),
            {"distribution": distribution_to_json(distribution), "name": name, "study_id": study_id},
        )


def union_of_choices(trials: Iterable[optuna.trial.FrozenTrial]) -> dict[str, CategoricalDistribution]:
    """Per categorical parameter of ``trials``, every choice any of them records, in the order they first appear."""
    levels: dict[str, list] = {}
    for trial in trials:
        for name, distribution in trial.distributions.items():
            if isinstance(distribution, CategoricalDistribution):
                seen = levels.setdefault(name, [])
                seen.extend(c for c in distribution.choices if c not in seen)
    return {name: CategoricalDistribution(choices) for name, choices in levels.items()}
