"""The one error boundary of every entry point (``python -m tsn``, ``python -m sweeps``, ``analysis/make_tables.py``).

:func:`entry_point` wraps a ``main(argv) -> int``: any exception becomes ONE line on stderr and an exit code:

- 2, bad input: a value, key, flag or file the user gave (ValueError and its subclasses such as ConfigError,
  missing files, and OS errors about a path: a file where a folder is expected, a read-only folder or database);
- 1, a failed run: any other exception, reported with its type; ``TSN_DEBUG=1`` prints the traceback;
- 130, an interrupt (Ctrl-C).

:func:`environment_fault` tells a fault of the machine (a full disk, a folder that cannot be written, a lost
storage connection) from a failure of the work itself: a sweep stops on the first and retries the work next time.

``TSN_DEBUG=1`` prints the traceback for every class. Command-line mistakes go through :class:`ArgumentParser`,
which reports them the same way (one line, exit 2) instead of argparse's usage block.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import re
import sqlite3
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
DEBUG_VARIABLE = "TSN_DEBUG"

# OS errors about a path the user gave: what is wrong with it and what would be valid.
PATH_ERRORS = {
    errno.ENOTDIR: "a file is in the way where a folder is expected; give a folder path",
    errno.EISDIR: "is a folder where a file is expected; give a file path",
    errno.EACCES: "permission denied; give a path this user can write (and read)",
    errno.EPERM: "operation not permitted; give a path this user can write",
    errno.EROFS: "is on a read-only file system; give a writable path",
    errno.EEXIST: "already exists as a file where a folder is expected; give a folder path",
    errno.ENAMETOOLONG: "the name is too long; give a shorter path",
    errno.ENOENT: "not found",
}


# Faults of the environment a run works in, not of the run: errno -> (what happened, what to do about it).
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: ("disk full", "free some space"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or raise the quota"),
    errno.EACCES: ("permission denied", "make the folder writable for this user"),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user"),
    errno.EROFS: ("read-only file system", "make the file system writable or give another --runs-dir"),
    errno.ENOTDIR: ("a file is in the way of a folder", "move the file away"),
    errno.EIO: ("input/output error", "check the disk"),
}
STORAGE_LOST = ("study storage lost", "check that the study storage answers")


class UsageError(ValueError):
    """A command-line mistake (unknown flag, missing argument, value of the wrong type)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, reporting a mistake as a UsageError (one line through the boundary) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}; see {self.prog} --help")


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message (its type's name when it has none): every one-line error
    that quotes an underlying exception (a YAML parser, torch.load, a database driver) goes through it."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """``Type: message`` on one line (whitespace collapsed, the message cut at 300 characters): how a failed trial's
    reason, a failed benchmark measurement or a failed stage of ``make gpu-check`` is recorded."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    return seen


def describe(err: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that reached the boundary."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "stopped: interrupted"
    for cause in _chain(err):
        if isinstance(cause, sqlite3.OperationalError) and "readonly database" in str(cause):
            return EXIT_BAD_INPUT, (
                "error: the study storage is a read-only SQLite database (attempt to write a "
                "readonly database); give a writable --storage"
            )
    if isinstance(err, OSError) and err.errno in PATH_ERRORS and (err.filename or isinstance(err, FileNotFoundError)):
        where = err.filename if err.filename is not None else ""
        return EXIT_BAD_INPUT, f"error: {where}: {PATH_ERRORS[err.errno]} ({err.strerror})"
    if isinstance(err, (ValueError, FileNotFoundError)):
        return EXIT_BAD_INPUT, f"error: {first_line(err)}"
    fault = environment_fault(err)
    why = f"{fault[0]}: {fault[1]}, then run the same command again" if fault else "the run failed"
    return EXIT_FAILED, (
        f"error: {type(err).__name__}: {first_line(err)} ({why}; {DEBUG_VARIABLE}=1 shows the traceback)"
    )


def _storage_lost(err: BaseException) -> bool:
    """A database error of the study storage: a lost connection, a locked or read-only file (not the work's fault)."""
    exc = sys.modules.get("sqlalchemy.exc")  # loaded only in a process that opened a study storage
    database_errors = (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError) if exc else ()
    return isinstance(err, (sqlite3.OperationalError, *database_errors))


def environment_fault(err: BaseException) -> tuple[str, str] | None:
    """(what happened, what to do) if ``err`` or one of its causes is a fault of the environment rather than of the
    work that raised it: a full disk or quota, a folder that cannot be written, a lost study storage. None otherwise.

    The one classification: the sweep driver stops on such a fault and leaves the trial to be retried, where any
    other exception is recorded as the trial's failure."""
    for cause in _chain(err):
        if isinstance(cause, OSError) and cause.errno in ENVIRONMENT_ERRNOS:
            return ENVIRONMENT_ERRNOS[cause.errno]
        if _storage_lost(cause):
            return STORAGE_LOST
    return None


URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/:@\s]*):(?P<password>[^@\s]*)@")


def redact(text: str) -> str:
    """``text`` with the password of every URL in it replaced: ``postgresql://user:***@host/db``.

    The one redaction helper: every message the boundary prints, every sweep log line and every stored command line
    goes through it, so a storage password never reaches a terminal, a log or a tracking record."""
    return URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)


def entry_point(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Run ``main`` inside the boundary: its return value, or the exit code of the exception it raised."""

    @functools.wraps(main)
    def guarded(argv: Sequence[str] | None = None) -> int:
        try:
            return main(argv)
        except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - the boundary: every failure becomes one line
            if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
                traceback.print_exc(file=sys.stderr)
            code, message = describe(err)
            print(redact(message), file=sys.stderr)
            return code

    return guarded
