"""A compact, storage-free copy of finished studies (``python -m sweeps export``), which ``analysis/`` reads as it
reads the study storage (``make_tables.py --source export``), so results survive a machine without ``runs/``.

One file per study, ``{study}.json`` (``{study}.json.gz`` when the JSON is over :data:`GZIP_ABOVE` bytes):
``{"format", "study", "user_attrs", "trials"}``, each trial as :func:`trial_dict` turns a FrozenTrial into data
(number, state, params, their distributions, datetime_complete, the objective value and every user attr of
``sweeps.records``, history included). Sorted keys, no indentation, gzip without a timestamp: the same study gives the same bytes.

An export adds to the file already there (:func:`merge`): a study run in pieces, in sessions on different machines
each with a fresh storage, accumulates in one file. A trial of the file whose configuration (config hash) the storage
also holds is replaced by the storage's; the others are kept, renumbered after the storage's trials.

The way back (``python -m sweeps import``, :func:`restore`) adds an export's finished trials to a storage, so that
the next piece of such a sweep, on a machine without the earlier pieces' storage and ``runs/``, trains only what is
left: the driver finds those points (and single-task baselines) finished and compares new trials with their stored
metrics.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tsn.atomic import atomic_write
from tsn.errors import redact
from tsn.evaluate import mean_loss

from .grow import grown_distributions, union_of_choices
from .records import CONFIG_HASH, DELTA_M, EVALUATIONS, SEARCH_SLOT, WALL_TIME
from .rehash import rehash, stale_hashes, updated_study
from .storage import StorageError, open_storage

FORMAT = 1
GZIP_ABOVE = 1 << 20  # bytes of JSON
SUFFIXES = (".json", ".json.gz")


def trial_dict(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial as plain data: what ``analysis.runs`` needs of it, whichever store it came from."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": dict(trial.params),
        "distributions": {
            k: json.loads(optuna.distributions.distribution_to_json(d)) for k, d in trial.distributions.items()
        },
        "datetime_complete": None if trial.datetime_complete is None else trial.datetime_complete.isoformat(),
        "value": trial.value,  # the objective the study was told (None unless COMPLETE)
        "user_attrs": dict(trial.user_attrs),
    }


def distribution(data: Mapping[str, Any]) -> optuna.distributions.BaseDistribution:
    """A distribution of :func:`trial_dict` back as Optuna's object."""
    return optuna.distributions.json_to_distribution(json.dumps(data))


def study_dict(storage: str, name: str) -> dict[str, Any]:
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    return {
        "format": FORMAT,
        "study": name,
        "user_attrs": dict(study.user_attrs),
        "trials": [trial_dict(t) for t in trials],
    }


def merge(existing: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """``fresh`` (a storage's export) plus the trials of ``existing`` (the file) whose configuration it lacks, those
    renumbered after ``fresh``'s; the study attributes are ``fresh``'s. Trials without a config hash (never
    claimed) are not carried over."""
    hashes = {t["user_attrs"].get(CONFIG_HASH) for t in fresh["trials"]}
    kept = [t for t in existing["trials"] if t["user_attrs"].get(CONFIG_HASH) not in hashes | {None}]
    start = 1 + max((t["number"] for t in fresh["trials"]), default=-1)
    carried = [{**t, "number": start + i} for i, t in enumerate(sorted(kept, key=lambda t: t["number"]))]
    return {**fresh, "trials": [*fresh["trials"], *carried]}


def encode(data: Mapping[str, Any]) -> tuple[str, bytes]:
    """(suffix, bytes) of one study's file: compact sorted JSON, gzipped (mtime 0) when large."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    if len(text) > GZIP_ABOVE:
        return ".json.gz", gzip.compress(text, mtime=0)
    return ".json", text


def write_study(data: Mapping[str, Any], out_dir: str | Path) -> Path:
    """Write one study's file atomically; the other suffix's stale file (the study grew or shrank) is removed."""
    suffix, payload = encode(data)
    path = Path(out_dir) / f"{data['study']}{suffix}"
    atomic_write(path, lambda tmp: tmp.write_bytes(payload))
    for other in SUFFIXES:
        if other != suffix:
            (Path(out_dir) / f"{data['study']}{other}").unlink(missing_ok=True)
    return path


def select(studies: Iterable[str] | None, names: list[str], unknown: Callable[[str], str]) -> list[str]:
    """``studies`` (default: every one of ``names``); the first not among ``names`` is a one-line StorageError,
    ``unknown(name)`` followed by the valid ones."""
    chosen = list(studies) if studies else names
    for name in chosen:
        if name not in names:
            raise StorageError(f"{unknown(name)}; valid: {', '.join(names) or '(none)'}")
    return chosen


def export(storage: str, out_dir: str | Path, studies: Iterable[str] | None = None) -> list[Path]:
    """Export ``studies`` (default: every study in ``storage``), each merged into its file in ``out_dir`` if there is
    one (:func:`merge`); unknown names are a one-line StorageError."""
    backend = open_storage(storage, create=False)
    names = sorted(optuna.get_all_study_names(backend))
    chosen = select(studies, names, lambda name: f"unknown study {name!r} in {redact(storage)}")
    existing = {name: read_study(out_dir, name) for name in study_names(out_dir)} if Path(out_dir).is_dir() else {}
    # the storage's records and the files' under one identity, the current one, before points are merged
    rehash(backend, log=print)
    renamed = stale_hashes(t["user_attrs"] for data in existing.values() for t in data["trials"])
    paths = []
    for name in chosen:
        data = study_dict(storage, name)
        if name in existing:
            data = merge(updated_study(existing[name], renamed), data)
        paths.append(write_study(data, out_dir))
    return paths


def point_of(user_attrs: Mapping[str, Any]) -> tuple[Any, Any]:
    """What identifies a finished trial's point across storages: its configuration, and its slot in a search."""
    return user_attrs.get(CONFIG_HASH), user_attrs.get(SEARCH_SLOT)


def told_value(trial: Mapping[str, Any]) -> float:
    """The objective the study was told (``sweeps.runner.objective``); exports written before it was kept give it
    from the records: Δm, else the last evaluation's mean validation loss (older records: from its task losses)."""
    if trial.get("value") is not None:
        return trial["value"]
    attrs = trial["user_attrs"]
    if attrs.get(DELTA_M) is not None:
        return attrs[DELTA_M]
    last = attrs[EVALUATIONS][max(attrs[EVALUATIONS], key=int)]
    return last["mean_val_loss"] if "mean_val_loss" in last else mean_loss(last["val_loss"])


def frozen(trial: Mapping[str, Any]) -> optuna.trial.FrozenTrial:
    """A COMPLETE trial of an export as Optuna's object, with its completion time (start: that less its wall time)."""
    complete = datetime.fromisoformat(trial["datetime_complete"]) if trial["datetime_complete"] else datetime.now()
    wall = trial["user_attrs"].get(WALL_TIME) or 0.0
    return optuna.trial.FrozenTrial(
        number=trial["number"],
        state=TrialState.COMPLETE,
        value=told_value(trial),
        datetime_start=complete - timedelta(seconds=wall),
        datetime_complete=complete,
        params=trial["params"],
        distributions={k: distribution(d) for k, d in trial["distributions"].items()},
        user_attrs=trial["user_attrs"],
        system_attrs={},
        intermediate_values={},
        trial_id=0,  # the storage assigns its own
    )


def restore(storage: str, export_dir: str | Path, studies: Iterable[str] | None = None) -> dict[str, int]:
    """Add to ``storage`` the COMPLETE trials of the exported ``studies`` (default: every file in ``export_dir``)
    whose point the study there has not finished, creating a missing study with the export's attributes; failed and
    unfinished trials stay out (a sweep trains those points again). Study -> trials added; unknown names are a
    one-line error. Idempotent: a second call adds nothing."""
    names = study_names(export_dir)
    chosen = select(studies, names, lambda name: f"no export of study {name!r} in {export_dir}")
    backend = open_storage(storage)
    # the storage's and the export's records under one identity, the current one, before points are compared
    exports = {name: read_study(export_dir, name) for name in names}
    renamed = {
        **rehash(backend, log=print),
        **stale_hashes(t["user_attrs"] for data in exports.values() for t in data["trials"]),
    }
    added = {}
    for name in chosen:
        data = updated_study(exports[name], renamed)
        study = optuna.create_study(study_name=name, storage=backend, direction="minimize", load_if_exists=True)
        for key, value in data["user_attrs"].items():
            if key not in study.user_attrs:
                study.set_user_attr(key, value)
        finished = {point_of(t.user_attrs) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        trials = [
            frozen(t)
            for t in sorted(data["trials"], key=lambda t: t["number"])
            if t["state"] == TrialState.COMPLETE.name and point_of(t["user_attrs"])[0] is not None
        ]
        # one set of choices per categorical axis: the study's, grown by the levels only the export has
        axes = grown_distributions(backend, name, union_of_choices(trials), log=print)
        added[name] = 0
        for trial in trials:
            point = point_of(trial.user_attrs)
            if point in finished:
                continue
            trial.distributions = {k: axes.get(k, d) for k, d in trial.distributions.items()}
            study.add_trial(trial)
            finished.add(point)
            added[name] += 1
    return added


# ------------------------------------------------------------------------------------------------ reading
def study_names(export_dir: str | Path) -> list[str]:
    """The studies exported to ``export_dir``."""
    folder = Path(export_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"export folder {folder} does not exist (write it with `python -m sweeps export`)")
    names = set()
    for suffix in SUFFIXES:
        names.update(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    return sorted(names)


def read_study(export_dir: str | Path, name: str) -> dict[str, Any]:
    """One exported study; exactly one of its two possible files must exist."""
    paths = [p for p in (Path(export_dir) / f"{name}{s}" for s in SUFFIXES) if p.is_file()]
    if len(paths) != 1:
        found = " and ".join(str(p) for p in paths) or "no file"
        raise FileNotFoundError(f"study {name!r} in {export_dir}: expected one of {name}.json(.gz), found {found}")
    raw = paths[0].read_bytes()
    data = json.loads(gzip.decompress(raw) if paths[0].name.endswith(".gz") else raw)
    if data.get("format") != FORMAT or data.get("study") != name:
        raise ValueError(f"{paths[0]}: not a format-{FORMAT} export of study {name!r}")
    return data
