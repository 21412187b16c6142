"""Atomic files: a crash, a kill or a full disk while writing leaves the previous file intact."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write through ``write(tmp_path)`` into a temporary file beside ``path``, fsync, then rename over it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output_folder(path: str | Path, flag: str) -> Path:
    """Raise a one-line ValueError naming ``flag`` if ``path`` cannot become a folder (a file is in the way, or
    the nearest existing folder above it is not writable); checked before any compute."""
    folder = Path(path)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be created: {existing} is a file"
        raise ValueError(f"{flag}: {folder} {where}; give a folder path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag}: {folder} cannot be written ({existing} is read-only); give a writable folder")
    return folder


def check_output_file(path: str | Path, flag: str) -> Path:
    """Like :func:`check_output_folder` for a file to be written: not a folder, its folder creatable."""
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{flag}: {file} is a folder; give a file path")
    check_output_folder(file.parent, flag)
    return file


def write_json(path: str | Path, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"))
