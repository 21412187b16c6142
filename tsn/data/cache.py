"""On-disk cache of rendered synthetic splits: one ``.npz`` per (generator version, seed, split, size, N).

The file is written atomically (temporary file + ``os.replace``) and its SHA-256 is stored in a ``.sha256`` file
beside it, written after it; a cache whose checksum is missing or wrong, or that fails to load, is reported with
one warning and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..atomic import atomic_write

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$TSN_CACHE_DIR`` or ``.cache/tsn`` under the current directory."""
    return Path(os.environ.get("TSN_CACHE_DIR") or Path.cwd() / ".cache" / "tsn")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path) -> str:
    """The SHA-256 of ``path``; raises OSError (a half missing) or ValueError (mismatch) unless it matches its
    ``.sha256`` file."""
    digest = sha256_file(path)
    if path.with_suffix(".sha256").read_text().strip() != digest:
        raise ValueError("checksum mismatch")
    return digest


def write_checksum(path: Path) -> str:
    """Store the SHA-256 of ``path`` in its ``.sha256`` file (atomically, after ``path`` itself was written)."""
    digest = sha256_file(path)
    atomic_write(path.with_suffix(".sha256"), lambda tmp: tmp.write_text(digest + "\n"))
    return digest


def _load_verified(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of ``path`` when it exists and matches its checksum; None (with a warning) when it is bad."""
    if not path.exists() and not path.with_suffix(".sha256").exists():
        return None
    try:
        verify_checksum(path)
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as err:  # missing half, bad checksum, unreadable zip
        log.warning("corrupt synthetic cache %s (%s); rebuilding it", path, err)
        return None


def cached_arrays(name: str, build: Callable[[], dict[str, np.ndarray]], cache_dir: str | Path | None = None):
    """The arrays cached under ``name``.npz, building and storing them first when the cache is absent or bad."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = root / f"{name}.npz"
    arrays = _load_verified(path)
    if arrays is not None:
        return arrays
    root.mkdir(parents=True, exist_ok=True)
    arrays = build()

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(path, save)
    write_checksum(path)
    return arrays
