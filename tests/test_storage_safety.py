"""A storage is never written while failing, never kept only in memory, and its password is never shown; bad input
to any entry point writes nothing at all."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from test_analysis_fixtures import build_storage
from test_sweeps import ENCODINGS, ONE_TASK, TINY, _postgres_url, sweep_argv, write_experiment

from analysis.make_tables import main as tables_main
from sweeps.__main__ import main as sweeps_main
from sweeps.storage import PASSWORD_VARIABLE, StorageError, _driver_url, hide_password, open_storage
from tsn.config import resolve
from tsn.errors import redact

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("postgresql://user:s3cr:et@db.example/test", "postgresql://user:***@db.example/test"),
        (
            "cannot open postgresql+psycopg2://u:p@h:5432/x or mysql://a:b@c/d",
            "cannot open postgresql+psycopg2://u:***@h:5432/x or mysql://a:***@c/d",
        ),
        (
            "postgresql://user@host/db and sqlite:///runs/studies.db",
            "postgresql://user@host/db and sqlite:///runs/studies.db",
        ),
    ],
)
def test_redact_hides_every_urls_password_and_nothing_else(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_password_moves_from_the_url_and_the_command_line_to_the_environment(monkeypatch) -> None:
    url = "postgresql://tsn:p%40ss:w@db.example:5432/optuna"  # '@' percent-encoded, as a URL requires
    monkeypatch.setattr(sys, "argv", ["python -m sweeps", "worker", "--storage", url])
    assert hide_password(url) == "postgresql://tsn@db.example:5432/optuna"
    assert os.environ[PASSWORD_VARIABLE] == "p@ss:w" and sys.argv[-1] == "postgresql://tsn:***@db.example:5432/optuna"
    connects = sqlalchemy.engine.make_url(_driver_url("postgresql://tsn@db.example:5432/optuna"))  # what is opened
    assert (connects.drivername, connects.username, connects.password) == ("postgresql+psycopg2", "tsn", "p@ss:w")
    assert hide_password("sqlite:///runs/studies.db") == "sqlite:///runs/studies.db"  # nothing to hide


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
    code = sweeps_main(sweep_argv(REPO / "experiments" / "embedding.yaml", url, tmp_path / "runs", tables=True))
    err = capsys.readouterr().err
    assert code == 2 and "keeps everything in memory" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_a_storage_password_never_reaches_the_terminal(tmp_path: Path, capsys) -> None:
    url = "postgresql://tsn:hunter2@127.0.0.1:1/test"  # nothing listens on port 1
    for argv in (
        sweep_argv(REPO / "experiments" / "embedding.yaml", url, tmp_path / "runs", tables=True),
        ["worker", "--study", "embedding-synthetic-smoke", "--storage", url],
        ["export", "--storage", url, "--out", str(tmp_path / "out")],
    ):
        assert sweeps_main(argv) == 2
        captured = capsys.readouterr()
        assert "hunter2" not in captured.err + captured.out, argv
        assert "postgresql://tsn@127.0.0.1:1/test: " in captured.err, argv


# ------------------------------------------------------------------------------- nothing written while failing
GOOD = "sqlite:///{tmp}/studies.db"  # an existing storage with finished studies
BAD_INPUT = [  # (entry point, argv, fragment of the one-line error); paths relative to the working folder {tmp}
    ("run", ["run", "bad.yaml"], "unknown key model.encodings"),
    ("run", ["run", "missing.yaml"], "config file not found: missing.yaml"),
    ("run", ["run", "exp.yaml", "--set", "train.epochs=0"], "train.epochs must be in [1, 100000], got 0"),
    ("run", ["run", "exp.yaml", "--set", "epochs"], "override 'epochs' must look like section.key=value"),
    ("run", ["run", "exp.yaml", "--budget", "huge"], "unknown budget 'huge'; valid: smoke"),
    ("run", ["run", "exp.yaml", "--storage", "sqlite://"], "keeps everything in memory"),
    ("run", ["run", "exp.yaml", "--storage", "runs/studies.db"], "is not a URL"),
    ("run", ["run", "exp.yaml", "--storage", "sqlite:///afile/studies.db"], "cannot create folder afile"),
    ("run", ["run", "exp.yaml", "--runs-dir", "afile"], "--runs-dir: afile is a file; give a folder path"),
    ("run", ["run", "exp.yaml", "--reports-dir", "afile/reports"], "--reports-dir: afile/reports cannot be created"),
    ("worker", ["worker", "--study", "embedding-synthetic-smoke"], "no study storage at sqlite:///runs/studies.db"),
    ("worker", ["worker", "--study", "nope-synthetic-smoke", "--storage", GOOD], "no experiment study 'nope-synthetic"),
    ("worker", ["worker", "--study", "_single_task-synthetic-smoke", "--storage", GOOD], "valid: baselines-synthetic"),
    ("worker", ["worker", "--study", "embedding-synthetic-smoke", "--storage", "sqlite:///app.db"], "no Optuna tables"),
    ("worker", ["worker", "--study", "embedding-synthetic-smoke", "--storage", "sqlite:///:memory:"], "in memory"),
    (
        "worker",
        ["worker", "--study", "embedding-synthetic-smoke", "--storage", GOOD, "--runs-dir", "afile/runs"],
        "--runs-dir: afile/runs cannot be created: afile is a file",
    ),
    ("retry", ["retry", "--failed", "embedding-synthetic-smoke"], "no study storage at sqlite:///runs/studies.db"),
    ("retry", ["retry", "--failed", "nope-synthetic-smoke", "--storage", GOOD], "no experiment study 'nope-synthetic"),
    ("export", ["export"], "no study storage at sqlite:///runs/studies.db"),
    ("export", ["export", "--storage", GOOD, "--study", "nope-synthetic-smoke"], "unknown study 'nope-synthetic"),
    ("export", ["export", "--storage", GOOD, "--out", "afile"], "--out: afile is a file; give a folder path"),
    ("export", ["export", "--storage", "sqlite:///app.db"], "no Optuna tables"),
    ("tables", [], "no study storage at sqlite:///runs/studies.db"),
    ("tables", ["--storage", GOOD, "--study", "nope-synthetic-smoke"], "unknown study 'nope-synthetic-smoke'"),
    ("tables", ["--storage", GOOD, "--out", "afile"], "--out: afile is a file; give a folder path"),
    ("tables", ["--storage", GOOD, "--out", "afile/reports"], "--out: afile/reports cannot be created"),
    ("tables", ["--storage", GOOD, "--epoch", "0"], "argument --epoch: expected a positive integer epoch"),
    ("tables", ["--storage", "sqlite:///app.db"], "no Optuna tables"),
    ("tables", ["--source", "export"], "export folder reports/trials does not exist"),
]


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("entry, argv, message", BAD_INPUT, ids=[f"{e}-{k}" for k, (e, _, _) in enumerate(BAD_INPUT)])
def test_bad_input_to_any_entry_point_creates_changes_and_removes_nothing(
    tmp_path: Path, capsys, monkeypatch, entry: str, argv: list[str], message: str
) -> None:
    """Run from a folder that already holds a study storage, an unrelated database and a file where a folder could
    go: exit 2, one line, and no file or folder created (no runs/, no studies.db, no reports/), changed or removed."""
    build_storage(tmp_path, resolve("smoke").to_dict())
    _unrelated_sqlite(tmp_path / "app.db")
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "bad.yaml").write_text("name: x\naxes: {scientific: {model.encodings: [orthogonal]}}\n")
    (tmp_path / "exp.yaml").write_text("name: x\naxes: {scientific: {model.embedding_dim: [5, 10]}}\n")
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if entry in ("run", "worker"):
        argv.append("--no-wandb")
    assert (tables_main if entry == "tables" else sweeps_main)(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert _tree(tmp_path) == before


# ------------------------------------------------------------------------------------------------ credentials
PASSWORD = "S3cretPW-xyz"


@pytest.mark.services
def test_a_storage_password_reaches_no_file_output_child_process_or_storage_row(
    tmp_path: Path, monkeypatch, capfd
) -> None:
    """A PostgreSQL sweep given its password in the URL, W&B on (offline), tables and an export: the password is in
    no file under the runs and reports folders, no output, no command line of a child, no row of the database. The
    sweep runs as its own process (the tables are its child); the export in this one, its output read at the fds."""
    plain = _postgres_url()  # skips without PostgreSQL (fails instead under TSN_REQUIRE_SERVICES=1)
    url = sqlalchemy.engine.make_url(plain).set(password=PASSWORD).render_as_string(hide_password=False)
    name = f"pw{os.getpid()}{int(time.time())}"
    experiment = write_experiment(tmp_path, ENCODINGS.replace("[orthogonal, gaussian]", "[orthogonal]"), name=name)
    argv = [
        *sweep_argv(experiment, url, tmp_path / "runs", [*TINY, ONE_TASK], wandb=True, tables=True),
        "--reports-dir",
        str(tmp_path / "reports"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    env.pop("WANDB_SERVICE", None)
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)  # the in-process calls below set it; restored after
    try:
        done = subprocess.run(
            [sys.executable, "-m", "sweeps", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stdout + done.stderr
        capfd.readouterr()
        assert sweeps_main(["export", "--storage", url, "--out", str(tmp_path / "reports" / "trials")]) == 0
        exported = capfd.readouterr()
        outputs = [done.stdout + done.stderr, exported.out + exported.err]
        assert all(PASSWORD not in output for output in outputs), outputs
        assert f"storage {plain}" in outputs[0]  # the sweep's first line names the storage, without its password

        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        wandb_logs = [p for p in files if p.suffix == ".wandb"]
        assert wandb_logs and all(b"--storage" in p.read_bytes() for p in wandb_logs)  # W&B records the command line
        assert any(p.suffix == ".md" for p in files) and any(p.name == f"{name}-synthetic-smoke.json" for p in files)
        assert [p for p in files if PASSWORD.encode() in p.read_bytes()] == []

        engine = sqlalchemy.create_engine(_driver_url(plain))
        with engine.connect() as db:
            for table in sqlalchemy.inspect(engine).get_table_names():
                rows = db.execute(sqlalchemy.text(f'SELECT * FROM "{table}"')).fetchall()
                assert PASSWORD not in repr(rows), table
        engine.dispose()

        # The child process making the tables gets the URL without the password and the password in its environment.
        calls = []
        monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append((cmd, os.environ.get(PASSWORD_VARIABLE))))
        monkeypatch.setattr(sys, "argv", ["python -m sweeps", *argv])
        assert sweeps_main([*argv, "--no-wandb"]) == 0  # finished: trains nothing, makes the tables
        ((command, password),) = calls
        assert PASSWORD not in " ".join(command) and plain in command and password == PASSWORD
        assert PASSWORD not in " ".join(sys.argv) and os.environ[PASSWORD_VARIABLE] == PASSWORD
    finally:
        optuna.delete_study(study_name=f"{name}-synthetic-smoke", storage=open_storage(plain, create=False))


def test_sqlite_transactions_take_the_write_lock_when_they_begin(tmp_path) -> None:
    """Optuna's read-then-mark-running of a waiting trial is atomic on SQLite only if the read already holds the
    write lock: while another connection holds it, even a read-only transaction of ours must wait (here: time out)."""
    import sqlalchemy

    from sweeps.storage import _serialise_sqlite_transactions

    path = tmp_path / "studies.db"
    sqlite3.connect(path).close()
    plain = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    serialised = sqlalchemy.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    _serialise_sqlite_transactions(serialised)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another worker's transaction, holding the write lock
    try:
        with plain.connect() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1  # pysqlite's default: no lock taken
        with pytest.raises(sqlalchemy.exc.OperationalError, match="database is locked"):
            with serialised.connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with serialised.connect() as conn:  # and once the lock is free, it proceeds
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
