"""``python -m sweeps export`` -> files -> ``make_tables.py --source export``: the same tables as from the storage."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import optuna
import pytest
from test_analysis_fixtures import BASELINES, EMBEDDING, SHARED, build_storage

from analysis import make_tables
from sweeps import export as E
from sweeps.__main__ import main as sweeps_main
from tsn.config import resolve


@pytest.fixture()
def storage(tmp_path: Path, few_task_counts) -> str:
    return build_storage(tmp_path, resolve("smoke").to_dict())


def tables_of(tmp_path: Path, capsys, *source: str) -> tuple[str, dict[str, str]]:
    """Printed Markdown and every written table/claims file (name -> text) of one full make_tables run."""
    out = tmp_path / "-".join(source)
    assert make_tables.main([*source, "--out", str(out), "--no-figures"]) == 0
    files = {p.name: p.read_text() for p in sorted(out.glob("*.*"))}
    return capsys.readouterr().out, files


def test_tables_from_the_export_are_the_tables_from_the_storage(storage: str, tmp_path: Path, capsys) -> None:
    exported = tmp_path / "trials"
    assert sweeps_main(["export", "--storage", storage, "--out", str(exported)]) == 0
    assert sorted(p.name for p in exported.iterdir()) == [f"{s}.json" for s in (SHARED, BASELINES, EMBEDDING)]
    capsys.readouterr()
    printed, files = tables_of(tmp_path, capsys, "--storage", storage)
    from_export, export_files = tables_of(tmp_path, capsys, "--source", "export", "--export-dir", str(exported))
    assert from_export == printed and "| orthogonal | 10 |" in printed and "trial 6 FAIL" in printed
    assert export_files == files and f"{EMBEDDING}.md" in files and "claims-synthetic-smoke.md" in files


def test_the_export_is_deterministic_compact_and_keeps_every_record(storage: str, tmp_path: Path) -> None:
    first = E.export(storage, tmp_path / "a", [EMBEDDING])[0].read_bytes()
    assert E.export(storage, tmp_path / "b", [EMBEDDING])[0].read_bytes() == first
    assert b"\n" not in first and b": " not in first
    data = json.loads(first)
    assert data["study"] == EMBEDDING and [t["number"] for t in data["trials"]] == list(range(7))
    done = data["trials"][0]
    assert done["state"] == "COMPLETE" and done["params"]["model.encoding"] == "orthogonal"
    assert {"metrics", "primary", "history", "config", "config_hash", "delta_m"} <= set(done["user_attrs"])
    assert data["trials"][6]["user_attrs"]["fail_reason"] == "non-finite loss at epoch 1"


def test_a_large_study_is_gzipped_and_the_stale_json_removed(storage: str, tmp_path: Path, monkeypatch) -> None:
    E.export(storage, tmp_path / "t", [EMBEDDING])
    monkeypatch.setattr(E, "GZIP_ABOVE", 100)
    path = E.export(storage, tmp_path / "t", [EMBEDDING])[0]
    assert path.name == f"{EMBEDDING}.json.gz" and not (tmp_path / "t" / f"{EMBEDDING}.json").exists()
    assert (
        gzip.decompress(path.read_bytes())
        == json.dumps(E.read_study(tmp_path / "t", EMBEDDING), sort_keys=True, separators=(",", ":")).encode()
    )
    assert E.export(storage, tmp_path / "u", [EMBEDDING])[0].read_bytes() == path.read_bytes()  # no timestamp


def test_export_errors_are_one_line(storage: str, tmp_path: Path, capsys) -> None:
    assert sweeps_main(["export", "--storage", storage, "--study", "nope-synthetic-smoke", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown study 'nope-synthetic-smoke'")
    assert make_tables.main(["--source", "export", "--export-dir", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "export folder" in capsys.readouterr().err


def _trial(number: int, config_hash: str | None, metric: float) -> dict:
    attrs = {} if config_hash is None else {"config_hash": config_hash}
    return {"number": number, "state": "COMPLETE", "params": {}, "user_attrs": {**attrs, "m": metric}}


def test_an_export_merges_into_the_file_of_an_earlier_session() -> None:
    earlier = {"format": E.FORMAT, "study": "s", "user_attrs": {"v": 1}}
    earlier["trials"] = [_trial(0, "a", 1.0), _trial(1, "b", 2.0), _trial(2, None, 0.0), _trial(3, "c", 3.0)]
    fresh = {"format": E.FORMAT, "study": "s", "user_attrs": {"v": 2}, "trials": [_trial(0, "b", 20.0)]}
    merged = E.merge(earlier, fresh)
    assert merged["user_attrs"] == {"v": 2}
    got = [(t["number"], t["user_attrs"].get("config_hash"), t["user_attrs"]["m"]) for t in merged["trials"]]
    assert got == [(0, "b", 20.0), (1, "a", 1.0), (2, "c", 3.0)]  # b replaced, a and c renumbered, unclaimed dropped


def test_exporting_again_keeps_the_trials_of_another_machine(storage: str, tmp_path: Path) -> None:
    out = tmp_path / "export"
    E.export(storage, out, [SHARED])
    mine = E.read_study(out, SHARED)["trials"]
    elsewhere = [dict(t, user_attrs={**t["user_attrs"], "config_hash": f"other-{i}"}) for i, t in enumerate(mine)]
    E.write_study({**E.read_study(out, SHARED), "trials": elsewhere}, out)  # the file an earlier session committed
    E.export(storage, out, [SHARED])
    trials = E.read_study(out, SHARED)["trials"]
    assert trials[: len(mine)] == mine
    assert [t["user_attrs"]["config_hash"] for t in trials[len(mine) :]] == [f"other-{i}" for i in range(len(mine))]
    assert [t["number"] for t in trials] == list(range(2 * len(mine))) == sorted({t["number"] for t in trials})


# ------------------------------------------------------------------------------------------------ import
def finished(storage_url: str, name: str) -> list[tuple]:
    study = optuna.load_study(study_name=name, storage=storage_url)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return sorted((t.user_attrs["config_hash"], t.params, t.value, t.datetime_complete, t.user_attrs) for t in trials)


def test_import_restores_every_finished_trial_once_and_no_failed_one(storage: str, tmp_path: Path, capsys) -> None:
    exported = tmp_path / "trials"
    E.export(storage, exported)
    restored = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert sweeps_main(["import", "--storage", restored, "--from", str(exported)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{SHARED}: 2 finished trial(s) added",
        f"{BASELINES}: 6 finished trial(s) added",
        f"{EMBEDDING}: 6 finished trial(s) added",  # of 7: the failed one is trained again by the next sweep
    ]
    for name in (SHARED, BASELINES, EMBEDDING):
        assert finished(restored, name) == finished(storage, name)
        attrs = optuna.load_study(study_name=name, storage=restored).user_attrs
        assert attrs == optuna.load_study(study_name=name, storage=storage).user_attrs
    assert E.restore(restored, exported) == {SHARED: 0, BASELINES: 0, EMBEDDING: 0}  # idempotent
    assert (
        sweeps_main(["import", "--storage", restored, "--from", str(exported), "--study", "nope-synthetic-smoke"]) == 2
    )
    assert capsys.readouterr().err.strip().startswith("error: no export of study 'nope-synthetic-smoke'")


def test_a_sweep_continued_on_an_imported_storage_trains_nothing_finished(tmp_path: Path) -> None:
    """A sweep run in pieces: the next piece, on a machine with only the committed export, resumes after it."""
    from test_sweeps import ENCODINGS, ONE_TASK, TINY, write_experiment

    from sweeps.driver import Sweep
    from sweeps.experiment import load_experiment
    from sweeps.tracking import TrackingConfig

    experiment = load_experiment(write_experiment(tmp_path, ENCODINGS))

    def sweep(machine: str, lines: list[str]) -> Sweep:
        return Sweep(
            experiment,
            "smoke",
            f"sqlite:///{tmp_path / machine / 'studies.db'}",
            overrides=[*TINY, ONE_TASK],
            runs_dir=tmp_path / machine / "runs",
            tracking=TrackingConfig(enabled=False),
            log=lines.append,
        )

    first: list[str] = []
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert sweep("a", first).run(n_trials=1) == {
        "complete": 1,
        "pending": 1,
    }  # one point (and its baseline) in the first piece
    E.export(f"sqlite:///{tmp_path / 'a' / 'studies.db'}", tmp_path / "trials")
    E.restore(f"sqlite:///{tmp_path / 'b' / 'studies.db'}", tmp_path / "trials")
    second: list[str] = []
    assert sweep("b", second).run() == {"complete": 2}
    started = [line for line in second if line.endswith(" ...")]
    assert len(started) == 1 and "2/2" in started[0]  # only the point left; its baseline was restored, not retrained
    assert not list((tmp_path / "b" / "runs").glob("*single_task*"))


def test_an_older_export_without_the_objective_gets_it_from_its_records() -> None:
    evaluation = {"val_loss": {"semseg": 1.0, "normals": 2.0}}
    assert E.told_value({"value": 3.0, "user_attrs": {"delta_m": 9.0}}) == 3.0
    assert E.told_value({"user_attrs": {"delta_m": 9.0}}) == 9.0
    assert (
        E.told_value({"user_attrs": {"evaluations": {"2": {"mean_val_loss": 0.7}, "10": {"mean_val_loss": 0.5}}}})
        == 0.5
    )
    assert E.told_value({"user_attrs": {"evaluations": {"8": evaluation}}}) == 1.5
