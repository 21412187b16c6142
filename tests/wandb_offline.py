"""Read what W&B wrote for an offline run (its ``run-*.wandb`` record log), for tests."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


HEADER = 7  # ":W&B", magic 0xBEE1, version
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    """The LevelDB-log framing W&B uses: 32 KiB blocks of (crc32, length, type) records."""
    pos, pending = HEADER, b""
    while pos + 7 <= len(data):
        block_left = BLOCK - pos % BLOCK
        if block_left < 7:
            pos += block_left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        if len(chunk) < length:  # the file ends mid-record: W&B is still writing it (or was killed writing it)
            break
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
        else:
            break


def _records(log: Path) -> list[Any]:
    records = []
    for payload in _payloads(log.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def finished_records(run_dir: Path, timeout_s: float = 60.0) -> list[Any]:
    """The run's records once its ``exit`` record is on disk.

    W&B's service process writes the log behind a buffer of its own: ``run.finish()`` can return before the last
    records reach the file (seen once in CI under load, as a log without the run's config), so a reader in the same
    process waits for the record W&B writes last.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        logs = sorted(Path(run_dir).glob("run-*.wandb"))
        records = _records(logs[0]) if len(logs) == 1 else []
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{run_dir}: no finished W&B record log after {timeout_s:.0f} s ({len(logs)} logs)")
        time.sleep(0.1)


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """{"run": {id, group, job_type, tags}, "config": {...}, "history": [...], "summary": {...}}."""
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}}
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out["run"] = {"id": run.run_id, "group": run.run_group, "job_type": run.job_type, "tags": list(run.tags)}
            out["config"].update({i.key: json.loads(i.value_json) for i in run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            out["summary"].update({_key(i): json.loads(i.value_json) for i in record.summary.update})
    return out
