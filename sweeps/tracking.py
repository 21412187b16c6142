"""W&B mirroring of trials: one run per trial, offline unless the user has logged in, never fatal.

Run ids are derived from (study, config hash), so a trial retried after a crash resumes its W&B run instead of
creating a second one. Only the resolved run configuration is logged: never the environment, never a key.
"""

from __future__ import annotations

import hashlib
import netrc
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsn.train import Callback

WANDB_HOST = "api.wandb.ai"


@dataclass(frozen=True)
class TrackingConfig:
    enabled: bool = True
    project: str = "tsn-ablations"
    entity: str | None = None
    mode: str | None = None  # None: online with credentials, else offline; or "offline" / "online" / "disabled"
    dir: str = "runs"


def has_credentials() -> bool:
    """True when a W&B API key is configured (environment or ~/.netrc), without reading the key's value."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(cfg: TrackingConfig) -> str:
    if not cfg.enabled:
        return "disabled"
    if cfg.mode:
        return cfg.mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if has_credentials() else "offline"


def run_id(study: str, config_hash: str) -> str:
    return hashlib.sha256(f"{study}/{config_hash}".encode()).hexdigest()[:16]


def flatten_record(record: Mapping[str, Any]) -> dict[str, float]:
    """An epoch record as W&B keys: ``train_loss/semseg``, ``val_loss/edge``, ``val/normals``, ``lr/encoder``…"""
    flat: dict[str, float] = {}
    for group, key in (("train_loss", "train_loss"), ("val_loss", "val_loss"), ("metrics", "val"), ("lr", "lr")):
        for name, value in (record.get(group) or {}).items():
            flat[f"{key}/{name}"] = value
    if record.get("delta_m") is not None:
        flat["val/delta_m"] = record["delta_m"]
    return flat


class WandbRun(Callback):
    """A trainer callback that mirrors one trial into one W&B run; every W&B failure is a warning only."""

    def __init__(
        self,
        cfg: TrackingConfig,
        *,
        study: str,
        config_hash: str,
        job_type: str,
        name: str,
        tags: list[str],
        config: Mapping[str, Any],
    ) -> None:
        self.mode = resolve_mode(cfg)
        self.run = None
        self.callback_seconds = 0.0  # wall time spent in the trainer callbacks below (the sweep's, not training's)
        # Under a W&B sweep agent the agent names the run; otherwise the id derives from the config hash.
        self.id = None if os.environ.get("WANDB_SWEEP_ID") else run_id(study, config_hash)
        if self.mode == "disabled":
            return
        try:
            import wandb

            Path(cfg.dir).mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                group=study,
                job_type=job_type,
                name=name,
                tags=tags,
                config=dict(config),
                id=self.id,
                resume="allow",
                mode=self.mode,
                dir=cfg.dir,
                reinit="create_new",
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )
        except Exception as err:  # noqa: BLE001 - tracking must never stop a sweep
            self._warn("start", err)

    @property
    def run_id(self) -> str | None:
        return self.run.id if self.run is not None else None

    @property
    def run_dir(self) -> str | None:
        return getattr(self.run, "dir", None) if self.run is not None else None

    def _warn(self, what: str, err: Exception) -> None:
        print(f"warning: W&B {what} failed ({type(err).__name__}: {err}); the sweep goes on", file=sys.stderr)
        self.run = None

    @contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.callback_seconds += time.perf_counter() - start

    def on_epoch_end(self, trainer, record) -> None:
        if self.run is None:
            return
        with self._timed():
            try:
                self.run.log(flatten_record(record), step=int(record["epoch"]))
            except Exception as err:  # noqa: BLE001
                self._warn("log", err)

    def on_finish(self, trainer, summary) -> None:
        with self._timed():
            self.log_summary(summary)

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        try:
            values: dict[str, Any] = {f"final/{t}": v for t, v in summary["primary"].items()}
            for task, result in summary["metrics"].items():
                values.update({f"final/{task}/{k}": v for k, v in result["values"].items()})
            if summary.get("delta_m"):
                values["delta_m"] = summary["delta_m"]["value"]
                values["delta_m_convention"] = summary["delta_m"]["convention"]
            values.update(
                params=summary["params"],
                macs=summary["macs"],
                wall_time_s=summary["wall_time_s"],
                mean_val_loss=summary["mean_val_loss"],
            )
            self.run.summary.update(values)
        except Exception as err:  # noqa: BLE001
            self._warn("summary", err)

    def finish(self, exit_code: int = 0, reason: str | None = None) -> None:
        if self.run is None:
            return
        try:
            if reason:
                self.run.summary["fail_reason"] = reason
            self.run.finish(exit_code=exit_code)
        except Exception as err:  # noqa: BLE001
            self._warn("finish", err)
        self.run = None
