"""The trainer: a plain loop over a task-switching schedule, with callbacks and exact resume.

All randomness of epoch e (task order, data order, augmentation) is drawn from generators seeded by
(seed, e), so a run resumed from the checkpoint of epoch e-1 continues bit-for-bit like an uninterrupted one.
The trainer imports neither W&B nor Optuna: the sweep layer plugs into :class:`Callback`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import write_json
from .checkpoint import CHECKPOINT, METRICS, CheckpointError, load_checkpoint, save_checkpoint
from .config import RunConfig, config_hash
from .data import build_dataset
from .engine import NonFiniteLossError, Optimisation, build_optimisation, build_run_model, channels_last, train_step
from .evaluate import Evaluation, evaluate, mean_loss
from .metrics.delta_m import delta_m
from .models import MultiTaskModel
from .params import count_parameters, macs_per_image
from .runtime import configure_threads, git_commit, select_device
from .schedules import Step, plan_epoch, steps_per_epoch
from .tasks import DatasetTasks, dataset_tasks

__all__ = ["Baseline", "Callback", "NonFiniteLossError", "Trainer", "load_finished", "epoch_checkpoint"]


def epoch_checkpoint(epoch: int) -> str:
    """File name of the model kept at one of ``train.eval_epochs``."""
    return f"checkpoint-epoch{epoch}.pt"


class Callback:
    """Hooks for the sweep layer (W&B logging, Optuna reporting). Every method is optional."""

    def on_epoch_end(self, trainer: Trainer, record: Mapping[str, Any]) -> None: ...

    def on_evaluation(self, trainer: Trainer, epoch: int, evaluation: Evaluation) -> None: ...

    def on_finish(self, trainer: Trainer, summary: Mapping[str, Any]) -> None: ...


@dataclass
class Baseline:
    """Single-task metrics to compute Delta-m against, and where they came from."""

    metrics: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    by_epoch: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # its evaluations at eval_epochs

    def at(self, epoch: int, last: bool) -> Mapping[str, float] | None:
        """The single-task metrics to compare epoch ``epoch`` with: its own evaluation there, else (at the run's last
        epoch) the final metrics; None when the baseline was not evaluated at that epoch."""
        return self.by_epoch.get(str(epoch), self.metrics if last else None)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


class Trainer:
    def __init__(
        self,
        cfg: RunConfig,
        out_dir: str | Path,
        callbacks: Sequence[Callback] = (),
        baseline: Baseline | None = None,
    ) -> None:
        self.cfg = cfg.validate()
        self.out_dir = Path(out_dir)
        self.callbacks = list(callbacks)
        self.baseline = baseline
        self.tasks: DatasetTasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
        self.loss_weights = {t.name: cfg.train.loss_weights.get(t.name, t.loss_weight) for t in self.tasks.tasks}
        self.device = select_device(cfg.train.device)
        self.channels_last = channels_last(cfg.train, self.device)
        self.threads = configure_threads(cfg.train.threads)
        self.config_hash = config_hash(cfg)
        self.model: MultiTaskModel = build_run_model(cfg, self.tasks, self.device)
        self.history: list[dict[str, Any]] = []
        self.evaluations: dict[str, dict[str, Any]] = {}  # epoch -> full evaluation at train.eval_epochs
        self.start_epoch = 1

    # ----------------------------------------------------------------------------------------------- data
    # Built on first use: evaluating a checkpoint (`python -m tsn eval`) never builds the training split.
    @cached_property
    def train_set(self) -> torch.utils.data.Dataset:
        data = self.cfg.data
        scenes = data.train_samples * self.cfg.train.epochs if data.fresh_scenes else data.train_samples
        return self._dataset("train", scenes, data.augment)

    @cached_property
    def val_set(self) -> torch.utils.data.Dataset:
        return self._dataset("val", self.cfg.data.val_samples, None)

    @cached_property
    def optimisation(self) -> Optimisation:
        """Optimisers and LR schedules, built on first use (the cosine schedule counts the training steps)."""
        train = self.cfg.train
        steps = (
            steps_per_epoch(train.schedule, self.labelled_in(1), train.batch_size)
            if train.lr_schedule != "plateau"
            else None
        )
        return build_optimisation(self.model, train, steps)

    @cached_property
    def labelled(self) -> dict[str, list[int]]:
        """Each task's training samples, of every epoch."""
        return {task: self.train_set.labelled(task) for task in self.tasks.names}

    def labelled_in(self, epoch: int) -> dict[str, list[int]]:
        """Each task's samples of epoch ``epoch`` (those its pass iterates over): all of them, or with
        ``data.fresh_scenes`` that epoch's own ``train_samples`` scenes."""
        if not self.cfg.data.fresh_scenes:
            return self.labelled
        first, end = (epoch - 1) * self.cfg.data.train_samples, epoch * self.cfg.data.train_samples
        return {task: [i for i in indices if first <= i < end] for task, indices in self.labelled.items()}

    def _dataset(self, split: str, num_samples: int | None, augment: str | None) -> torch.utils.data.Dataset:
        data = self.cfg.data
        return build_dataset(
            data.dataset,
            split,
            self.tasks.names,
            data.image_size,
            root=data.root,
            seed=data.data_seed,
            num_samples=num_samples,
            augment=augment,
        )

    def _loader(self, dataset: torch.utils.data.Dataset, **batching: Any) -> DataLoader:
        return DataLoader(
            dataset, num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda", **batching
        )

    def validation_batches(self) -> DataLoader:
        return self._loader(self.val_set, batch_size=self.cfg.train.batch_size)

    # ----------------------------------------------------------------------------------------- checkpoint
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimisation": self.optimisation.state_dict(),
            "epoch": epoch,
            "history": self.history,
            "evaluations": self.evaluations,
            "config": self.cfg.to_dict(),
            "config_hash": self.config_hash,
        }

    def resume(self) -> bool:
        """Continue from ``out_dir/checkpoint.pt`` if there is one; True when a checkpoint was loaded."""
        path = self.out_dir / CHECKPOINT
        if not path.exists():
            return False
        state = load_checkpoint(path)
        if state.get("config_hash") != self.config_hash:
            raise CheckpointError(
                f"{path} belongs to another configuration (hash {state.get('config_hash')} != {self.config_hash}); "
                "use a new --out folder or drop --resume"
            )
        if "optimisation" not in state:
            raise CheckpointError(f"{path} was written by an older version of the trainer; use a new --out folder")
        self.model.load_state_dict(state["model"])
        self.optimisation.load_state_dict(state["optimisation"])
        self.history = list(state["history"])
        self.evaluations = dict(state["evaluations"])
        self.start_epoch = int(state["epoch"]) + 1
        return True

    # ------------------------------------------------------------------------------------------- training
    def train_step(self, tasks: tuple[str, ...], batch: Mapping, where: str = "") -> dict[str, float]:
        """One optimisation step of this run (tsn.engine.train_step); returns each task's loss."""
        return train_step(
            self.model,
            self.optimisation,
            self.tasks,
            self.loss_weights,
            tasks,
            batch,
            device=self.device,
            amp=self.cfg.train.amp,
            channels_last=self.channels_last,
            where=where,
        )

    def epoch_batches(self, epoch: int) -> tuple[list[Step], DataLoader]:
        """Epoch ``epoch``'s steps (tasks and sample indices, tsn.schedules) and the loader of their batches."""
        generator = _epoch_generator(self.cfg.train.seed, epoch)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))  # augmentation randomness
        plan = plan_epoch(self.cfg.train.schedule, self.labelled_in(epoch), self.cfg.train.batch_size, generator)
        # each item names the tasks its step trains, so the augmentation follows their pipelines (tsn.data.transforms)
        items = [[(index, step.tasks) for index in step.indices] for step in plan]
        return plan, self._loader(self.train_set, batch_sampler=items)

    def _train_epoch(self, epoch: int, eta: str) -> tuple[dict[str, float], list[str]]:
        """Mean training loss per task, and the tasks in the order of their last step (the last-trained last)."""
        plan, loader = self.epoch_batches(epoch)
        sums = dict.fromkeys(self.tasks.names, 0.0)
        counts = dict.fromkeys(self.tasks.names, 0)
        total_steps = len(plan)
        bar = tqdm(
            total=total_steps,
            desc=f"epoch {epoch}/{self.cfg.train.epochs}",
            disable=None if self.cfg.train.progress else True,  # None: off when stderr is not a terminal
            leave=False,
            dynamic_ncols=True,
        )
        self.model.train()
        for step, (planned, batch) in enumerate(zip(plan, loader), start=1):
            for task, value in self.train_step(planned.tasks, batch, f"epoch {epoch}, step {step - 1}").items():
                sums[task] += value
                counts[task] += 1
            bar.update()
            if step % 10 == 0 or step == total_steps:
                bar.set_postfix_str(
                    " ".join(f"{t}={sums[t] / counts[t]:.3g}" for t in self.tasks.names if counts[t]) + eta
                )
        bar.close()
        last_step = {task: k for k, step in enumerate(plan) for task in step.tasks}
        return {t: sums[t] / max(counts[t], 1) for t in self.tasks.names}, sorted(last_step, key=last_step.get)

    def run_validation(self, edge_evaluator: str) -> Evaluation:
        """Validation losses and metrics of the current model (edge odsF by ``edge_evaluator``)."""
        return evaluate(
            self.model,
            self.validation_batches(),
            self.tasks,
            self.loss_weights,
            edge_evaluator=edge_evaluator,
            device=self.device,
            amp=self.cfg.train.amp,
            channels_last=self.channels_last,
            workers=self.cfg.train.eval_workers,
        )

    def _delta_m(self, primary: Mapping[str, float], epoch: int | None) -> float | None:
        """Δm against the baseline's metrics of the same ``epoch`` (None without them); ``epoch`` None: against
        the baseline's final metrics (the per-epoch progress in the history)."""
        if self.baseline is None:
            return None
        base = self.baseline.metrics if epoch is None else self.baseline.at(epoch, epoch == self.cfg.train.epochs)
        if base is None:
            return None
        higher = {t.name: t.higher_is_better for t in self.tasks.tasks}
        return delta_m(primary, base, higher, convention="astmt")

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``train.epochs`` epochs (continuing a checkpoint when ``resume``), evaluate, write metrics.json."""
        if resume and self.resume() and self.start_epoch > self.cfg.train.epochs and (self.out_dir / METRICS).exists():
            return load_finished(self.out_dir)
        train_cfg = self.cfg.train
        started = time.perf_counter()
        epoch_times: list[float] = []
        for epoch in range(self.start_epoch, train_cfg.epochs + 1):
            t0 = time.perf_counter()
            remaining = train_cfg.epochs - epoch + 1
            eta = f" | eta {_format_seconds(remaining * sum(epoch_times) / len(epoch_times))}" if epoch_times else ""
            train_losses, task_order = self._train_epoch(epoch, eta)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": train_losses, "task_order": task_order}
            if epoch % train_cfg.eval_every == 0 or epoch == train_cfg.epochs:
                evaluation = self.run_validation(train_cfg.edge_evaluator)
                self.optimisation.step_schedulers(evaluation)
                primary = evaluation.primary(self.tasks)
                record.update(val_loss=evaluation.losses, metrics=primary, delta_m=self._delta_m(primary, None))
                for callback in self.callbacks:
                    callback.on_evaluation(self, epoch, evaluation)
            record["lr"] = self.optimisation.learning_rates()
            if epoch in train_cfg.eval_epochs and epoch < train_cfg.epochs:  # the last epoch's comes below
                self.evaluations[str(epoch)] = self._report(self.run_validation(train_cfg.final_edge_evaluator), epoch)
                save_checkpoint(self.out_dir / epoch_checkpoint(epoch), self._state(epoch))
            epoch_times.append(time.perf_counter() - t0)
            record["seconds"] = epoch_times[-1]
            self.history.append(record)
            save_checkpoint(self.out_dir / CHECKPOINT, self._state(epoch))
            for callback in self.callbacks:
                callback.on_epoch_end(self, record)
        final = self.run_validation(train_cfg.final_edge_evaluator)
        summary = self._summary(final, time.perf_counter() - started)
        write_json(self.out_dir / METRICS, summary)
        for callback in self.callbacks:
            callback.on_finish(self, summary)
        return summary

    def _report(self, evaluation: Evaluation, epoch: int) -> dict[str, Any]:
        """Metrics (values and conventions), primary metrics, validation losses and Δm of one full evaluation."""
        primary = evaluation.primary(self.tasks)
        dm = self._delta_m(primary, epoch)
        return {
            "metrics": {
                t.name: {
                    "values": dict(evaluation.results[t.name].values),
                    "conventions": dict(evaluation.results[t.name].conventions),
                    "primary": t.metric,
                    "higher_is_better": t.higher_is_better,
                }
                for t in self.tasks.tasks
            },
            "primary": primary,
            "val_loss": evaluation.losses,
            "mean_val_loss": evaluation.mean_loss,
            "delta_m": None
            if dm is None
            else {
                "value": dm,
                "convention": "astmt",
                "baseline": dict(self.baseline.provenance),
                "baseline_metrics": dict(self.baseline.at(epoch, last=epoch == self.cfg.train.epochs)),
            },
        }

    def _summary(self, final: Evaluation, seconds: float) -> dict[str, Any]:
        """metrics.json: the last epoch's full evaluation, with those of ``train.eval_epochs`` under "evaluations"."""
        report = self._report(final, self.cfg.train.epochs)
        return {
            "config": self.cfg.to_dict(),
            "config_hash": self.config_hash,
            "git_commit": git_commit(),
            "architecture": self.cfg.model.architecture,
            "dataset": self.cfg.data.dataset,
            "tasks": list(self.tasks.names),
            **report,
            "evaluations": {**self.evaluations, str(self.cfg.train.epochs): report},
            "params": count_parameters(self.model),
            "macs": macs_per_image(self.cfg.model, self.tasks, self.cfg.data.image_size),
            "wall_time_s": seconds,
            "epochs": self.cfg.train.epochs,
            "history": self.history,
            "device": str(self.device),
            "threads": self.threads,
        }


def load_finished(out_dir: str | Path) -> dict[str, Any]:
    summary = json.loads((Path(out_dir) / METRICS).read_text())
    summary.setdefault("mean_val_loss", mean_loss(summary["val_loss"]))  # written before the key existed
    return summary


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
