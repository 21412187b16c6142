"""Study storage: SQLite (one machine), PostgreSQL/MySQL (a cluster), Optuna's journal file (shared file system).

A database password never travels in a URL beyond the command line that gave it: :func:`hide_password` moves it
to the environment (:data:`PASSWORD_VARIABLE`), where :func:`open_storage` (in this process and its children) reads
it back. PostgreSQL's own ``PGPASSWORD`` and ``~/.pgpass`` work as well, with a URL that names no password.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from urllib.parse import unquote

import optuna
import sqlalchemy
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from tsn.errors import URL_PASSWORD, redact

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
JOURNAL_PREFIX = "journal:"
PASSWORD_VARIABLE = "TSN_STORAGE_PASSWORD"


class StorageError(ValueError):
    """The study storage cannot be reached or opened; the message says which URL and why."""


IN_MEMORY = ("sqlite://", "sqlite:///:memory:")


def open_storage(url: str, create: bool = True) -> optuna.storages.BaseStorage:
    """Open ``url``: ``sqlite:///path.db``, ``postgresql://…``, ``mysql://…`` or ``journal:/shared/path.log``.

    RDB storages get a heartbeat, so a trial whose worker died (kill -9, a vanished node) is detected as stale
    and retried by the next worker that looks. ``create=False`` (workers, exports, tables) opens only a storage
    that already holds Optuna's tables and writes nothing otherwise: pointed at an unrelated database by mistake,
    it refuses instead of creating Optuna's tables in it. An in-memory SQLite storage is refused: nothing in it
    would outlive the process. Every message names the URL without its password.
    """
    if url.split("?")[0] in IN_MEMORY:
        raise StorageError(
            f"study storage {url} keeps everything in memory and loses it when the process ends; "
            "give a file, e.g. sqlite:///runs/studies.db"
        )
    if not create:
        _require_optuna_tables(url)
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageError(f"cannot open study storage {redact(url)}: {err.strerror or err}") from None
    if url.startswith("sqlite:///"):
        folder = _sqlite_path(url).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a missing, read-only or non-folder parent: say which URL, not only the path
            raise StorageError(
                f"cannot open study storage {redact(url)}: cannot create folder {folder}: {err.strerror or err}"
            ) from None
    elif "://" not in url:
        raise StorageError(
            f"storage {redact(url)!r} is not a URL; valid: sqlite:///runs/studies.db, postgresql://user@host/db, "
            "journal:/shared/path/journal.log"
        )
    warnings.filterwarnings("ignore", message="Argument ``heartbeat_interval`` is an experimental feature")
    try:
        storage = RDBStorage(
            _driver_url(url),
            engine_kwargs=_engine_kwargs(url),
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
        )
    except Exception as err:  # noqa: BLE001 - driver errors vary by backend; all mean "cannot open"
        raise StorageError(f"cannot open study storage {redact(url)}: {_reason(err)}") from None
    if url.startswith("sqlite"):
        _serialise_sqlite_transactions(storage.engine)
    return storage


def _serialise_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Make every SQLite transaction take the database's write lock when it begins (``BEGIN IMMEDIATE``).

    Optuna hands a waiting trial to one worker by reading it ``FOR UPDATE`` and marking it running in one
    transaction. SQLite ignores ``FOR UPDATE``, and Python's sqlite3 driver begins a transaction only at the first
    write, so two workers could both read the trial as waiting and both run it (seen with 4 workers: "Trial#4 has
    already finished"). Beginning every transaction with the write lock makes that read-then-write atomic, at the
    cost of serialising the workers' (short) storage transactions; ``timeout`` (60 s) is how long one waits. This is
    SQLAlchemy's documented recipe for pysqlite: the driver's own transaction handling off, SQLAlchemy's ``begin``
    emitting the statement.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _driver_autocommit(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while Optuna created its tables predate the listeners


def hide_password(url: str) -> str:
    """``url`` without its password, which moves to the environment variable :data:`PASSWORD_VARIABLE`.

    Called by each entry point on the ``--storage`` it was given: child processes get the URL without the password
    and inherit it through the environment, and the process's own ``sys.argv``, which W&B records with every run
    (and ``wandb sync`` uploads), is redacted too.
    """
    match = URL_PASSWORD.match(url)
    if match is None:
        return url
    os.environ[PASSWORD_VARIABLE] = unquote(match["password"])
    sys.argv[:] = [redact(arg) for arg in sys.argv]
    return match["head"] + "@" + url[match.end() :]


def _reason(err: BaseException) -> str:
    return redact(str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__


def _sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite:///") :].split("?")[0])


def _driver_url(url: str) -> str:
    """The URL SQLAlchemy connects with: psycopg2 for PostgreSQL, the password from the environment if it has none."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; requirements.txt ships psycopg2.
        url = "postgresql+psycopg2://" + url.partition("://")[2]
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password or url.startswith("sqlite"):
        return url
    parsed = sqlalchemy.engine.make_url(url)
    if parsed.username is None or parsed.password is not None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def _engine_kwargs(url: str) -> dict:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgres"):
        return {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    return {"pool_pre_ping": True}


def _require_optuna_tables(url: str) -> None:
    """Raise StorageError unless ``url`` already holds an Optuna storage; reads only."""
    shown = redact(url)
    if url.startswith(JOURNAL_PREFIX):
        if not Path(url[len(JOURNAL_PREFIX) :]).is_file():
            raise StorageError(f"no study storage at {shown}: the journal file does not exist")
        return
    if url.startswith("sqlite:///") and not _sqlite_path(url).is_file():
        raise StorageError(f"no study storage at {shown}: the file does not exist")
    if "://" not in url:
        return  # open_storage reports a value that is not a URL
    try:
        engine = sqlalchemy.create_engine(_driver_url(url), **_engine_kwargs(url))
        try:
            has_tables = sqlalchemy.inspect(engine).has_table("studies")
        finally:
            engine.dispose()
    except Exception as err:  # noqa: BLE001 - driver errors vary by backend; all mean "cannot open"
        raise StorageError(f"cannot open study storage {shown}: {_reason(err)}") from None
    if not has_tables:
        raise StorageError(
            f"no study storage at {shown}: it holds no Optuna tables (nothing was written to it); "
            "start a sweep with `python -m sweeps run` first, or check --storage"
        )
