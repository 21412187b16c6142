"""Read what W&B wrote for an offline run (its ``run-*.wandb`` record log), for tests."""

from __future__ import annotations

import json
import struct
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


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """{"run": {id, group, job_type, tags}, "config": {...}, "history": [...], "summary": {...}}."""
    (log,) = sorted(Path(run_dir).glob("run-*.wandb"))
    out: dict[str, Any] = {"run": {}, "config": {}, "history": [], "summary": {}}
    for payload in _payloads(log.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
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
