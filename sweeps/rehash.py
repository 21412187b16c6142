"""Records made before a change of the config identity, brought up to its current form.

A run's identity is its config hash (:func:`tsn.config.config_hash`): a sweep finds a finished point, a shared
baseline or another experiment's run of the same configuration by it. When the identity's definition changes,
as when ``model.pretrained=none`` came to name the same network as leaving ``model.pretrained`` unset
(``unset_means`` in :mod:`tsn.domains`), the records stored before keep the old hash: a sweep would train their
points again and the tables would show one configuration twice. A stored hash is *stale* when it is the hash of
its trial's stored config under the identity before ``unset_means`` and differs from the current one; any other
mismatch (a record from older code still) is left alone, since nothing here can tell what it meant.

A hash is recorded in three places (:mod:`sweeps.records`): a trial's own ``config_hash`` and the ``baseline_runs``
and ``recorded_from`` entries of the trials that used it. :func:`updated_attrs` rewrites all three in a trial's
attributes (an export's, before it is imported or merged with a storage's); :func:`rehash` rewrites them in an SQL
storage, across its studies, in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage

from tsn.config import identity, identity_hash

from . import records as R

HASH_KEY = "config_hash"  # the key of a hash inside a baseline_runs or recorded_from entry
HASHED_ATTRS = (R.CONFIG_HASH, R.BASELINE_RUNS, R.RECORDED_FROM)  # the attributes that hold one
WHY = "a value written out where leaving it unset means the same, e.g. model.pretrained: none, now counts as unset"


def stale_hashes(user_attrs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Stale hash -> current hash, over the trials whose attributes are ``user_attrs`` (see the module's docstring).

    A config that names a codes file is hashed with the file's content, which a record does not keep: left alone.
    """
    renamed = {}
    for attrs in user_attrs:
        stored, config = attrs.get(R.CONFIG_HASH), attrs.get(R.CONFIG)
        if not isinstance(stored, str) or not isinstance(config, dict):
            continue
        if config.get("model", {}).get("codes_file") is not None:
            continue
        before = identity_hash(identity(json.loads(json.dumps(config)), keep_written_out=True))
        current = identity_hash(identity(json.loads(json.dumps(config))))
        if stored == before != current:
            renamed[stored] = current
    return renamed


def updated(value: Any, renamed: Mapping[str, str], key: str | None = None) -> Any:
    """``value`` (a trial attribute called ``key``, or a part of one) with every hash it records renamed."""
    if key == R.CONFIG_HASH or key == HASH_KEY:
        return renamed.get(value, value) if isinstance(value, str) else value
    if isinstance(value, dict):
        return {k: updated(v, renamed, k) for k, v in value.items()}
    if isinstance(value, list):
        return [updated(v, renamed) for v in value]
    return value


def updated_attrs(user_attrs: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """A trial's attributes with every recorded hash renamed (the others as they are)."""
    return {k: updated(v, renamed, k) if k in HASHED_ATTRS else v for k, v in user_attrs.items()}


def updated_study(data: Mapping[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """An exported study (:func:`sweeps.export.study_dict`) with every recorded hash of its trials renamed."""
    return {**data, "trials": [{**t, "user_attrs": updated_attrs(t["user_attrs"], renamed)} for t in data["trials"]]}


def rehash(storage: optuna.storages.BaseStorage, log: Callable[[str], None]) -> dict[str, str]:
    """Rename every stale hash recorded in ``storage`` (every study's trials); stale hash -> current hash, of those
    renamed. ``log`` says how many configurations, once. A storage that cannot rewrite its records (a journal) keeps
    them, which ``log`` says: their points would be trained again."""
    if not isinstance(storage, RDBStorage):
        renamed = stale_hashes(_journal_attrs(storage))
        if renamed:
            log(
                f"{len(renamed)} recorded configuration(s) carry the config hash of an older identity ({WHY}); a "
                f"{type(storage).__name__} cannot rewrite it, so a sweep trains their points again (an SQL storage "
                "is brought up to date instead)"
            )
        return {}
    with storage.engine.begin() as connection:
        rows = connection.execute(
            sqlalchemy.text(
                "SELECT trial_user_attribute_id, trial_id, key, value_json FROM trial_user_attributes "
                "WHERE key IN :keys"
            ).bindparams(sqlalchemy.bindparam("keys", expanding=True)),
            {"keys": [*HASHED_ATTRS, R.CONFIG]},
        ).fetchall()
        by_trial: dict[int, dict[str, Any]] = {}
        for _, trial_id, key, value_json in rows:
            by_trial.setdefault(trial_id, {})[key] = json.loads(value_json)
        renamed = stale_hashes(by_trial.values())
        if not renamed:
            return {}
        for row_id, _, key, value_json in rows:
            if key not in HASHED_ATTRS:
                continue
            old = json.loads(value_json)
            new = updated(old, renamed, key)
            if new != old:
                connection.execute(
                    sqlalchemy.text(
                        "UPDATE trial_user_attributes SET value_json = :v WHERE trial_user_attribute_id = :i"
                    ),
                    {"v": json.dumps(new), "i": row_id},
                )
    log(f"{len(renamed)} recorded configuration(s) carried the config hash of an older identity ({WHY}): renamed")
    return renamed


def _journal_attrs(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    attrs = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        attrs.extend(t.user_attrs for t in study.get_trials(deepcopy=False))
    return attrs
