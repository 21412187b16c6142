"""A storage is never written while failing, never kept only in memory, and its password is never shown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sweeps.__main__ import main as sweeps_main
from sweeps.storage import StorageError, open_storage
from tsn.errors import redact

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, expected", [
    ("postgresql://user:s3cr:et@db.example/test", "postgresql://user:***@db.example/test"),
    ("cannot open postgresql+psycopg2://u:p@h:5432/x or mysql://a:b@c/d", "cannot open postgresql+psycopg2://u:***@h:5432/x or mysql://a:***@c/d"),
    ("postgresql://user@host/db and sqlite:///runs/studies.db", "postgresql://user@host/db and sqlite:///runs/studies.db"),
])
def test_redact_hides_every_urls_password_and_nothing_else(text: str, expected: str) -> None:
    assert redact(text) == expected


def _unrelated_sqlite(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("create table notes (text varchar)")
        db.execute("insert into notes values ('keep me')")
    return path.read_bytes()


def test_a_worker_pointed_at_an_unrelated_database_refuses_and_writes_nothing(tmp_path: Path, capsys) -> None:
    db = tmp_path / "app.db"
    before = _unrelated_sqlite(db)
    assert sweeps_main(["worker", "--study", "embedding-synthetic-cpu", "--storage", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "it holds no Optuna tables" in err and str(db) in err
    assert db.read_bytes() == before  # no Optuna table was created in the application's file


def test_reading_a_missing_storage_creates_no_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(StorageError, match="no study storage at .*nope.db: the file does not exist"):
        open_storage(f"sqlite:///{missing}", create=False)
    assert not missing.exists()
    assert sweeps_main(["export", "--storage", f"sqlite:///{missing}", "--out", str(tmp_path / "out")]) == 2
    assert not missing.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_storage_is_refused_for_a_sweep(tmp_path: Path, capsys, url: str) -> None:
    code = sweeps_main(["run", str(REPO / "experiments" / "embedding.yaml"), "--budget", "smoke", "--storage", url,
                        "--runs-dir", str(tmp_path / "runs"), "--no-wandb"])
    err = capsys.readouterr().err
    assert code == 2 and "keeps everything in memory" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_storage_password_never_reaches_the_terminal(tmp_path: Path, capsys) -> None:
    url = "postgresql://tsn:hunter2@127.0.0.1:1/test"  # nothing listens on port 1
    for argv in (["run", str(REPO / "experiments" / "embedding.yaml"), "--budget", "smoke", "--storage", url,
                  "--runs-dir", str(tmp_path / "runs"), "--no-wandb"],
                 ["worker", "--study", "embedding-synthetic-smoke", "--storage", url],
                 ["export", "--storage", url, "--out", str(tmp_path / "out")]):
        assert sweeps_main(argv) == 2
        captured = capsys.readouterr()
        assert "hunter2" not in captured.err + captured.out and "tsn:***@127.0.0.1:1/test" in captured.err, argv
