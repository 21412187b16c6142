"""Study storage: SQLite (one machine), PostgreSQL/MySQL (a cluster), Optuna's journal file (shared file system)."""

from __future__ import annotations

from pathlib import Path

import warnings

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

DEFAULT_STORAGE = "sqlite:///runs/studies.db"
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120
JOURNAL_PREFIX = "journal:"


class StorageError(ValueError):
    """The study storage cannot be reached or opened; the message says which URL and why."""


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open ``url``: ``sqlite:///path.db``, ``postgresql://…``, ``mysql://…`` or ``journal:/shared/path.log``.

    RDB storages get a heartbeat, so a trial whose worker died (kill -9, a vanished node) is detected as stale
    and retried by the next worker that looks.
    """
    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise StorageError(f"cannot open study storage {url}: {err.strerror or err}") from None
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a missing, read-only or non-folder parent: say which URL, not only the path
            raise StorageError(f"cannot open study storage {url}: cannot create folder {folder}: "
                               f"{err.strerror or err}") from None
    elif "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; valid: sqlite:///runs/studies.db, postgresql://user@host/db, "
            "journal:/shared/path/journal.log"
        )
    given = url
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; requirements.txt ships psycopg2.
        url = "postgresql+psycopg2://" + url.partition("://")[2]
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    warnings.filterwarnings("ignore", message="Argument ``heartbeat_interval`` is an experimental feature")
    try:
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=HEARTBEAT_SECONDS,
            grace_period=GRACE_SECONDS,
        )
    except Exception as err:  # noqa: BLE001 - driver errors vary by backend; all mean "cannot open"
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise StorageError(f"cannot open study storage {given}: {reason}") from None
