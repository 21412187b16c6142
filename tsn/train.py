"""The trainer: a plain loop over a task-switching schedule, with callbacks and exact resume.

All randomness of epoch e (task order, data order, augmentation) is drawn from generators seeded by
(seed, e), so a run resumed from the checkpoint of epoch e-1 continues bit-for-bit like an uninterrupted one.
The trainer imports neither W&B nor Optuna: the sweep layer plugs into :class:`Callback`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import RunConfig, TrainConfig, config_hash
from .data import build_dataset
from .evaluate import Evaluation, autocast, evaluate, move_batch
from .losses import task_loss
from .metrics.delta_m import delta_m
from .models import MultiTaskModel, build_model
from .params import count_macs, count_parameters, meta_model
from .runtime import configure_threads, git_commit, seed_everything, select_device
from .schedules import plan_epoch
from .tasks import DatasetTasks, dataset_tasks

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names the task, epoch and step."""


class Callback:
    """Hooks for the sweep layer (W&B logging, Optuna reporting). Every method is optional."""

    def on_epoch_end(self, trainer: "Trainer", record: Mapping[str, Any]) -> None: ...

    def on_evaluation(self, trainer: "Trainer", epoch: int, evaluation: Evaluation) -> None: ...

    def on_finish(self, trainer: "Trainer", summary: Mapping[str, Any]) -> None: ...


@dataclass
class Baseline:
    """Single-task metrics to compute Delta-m against, and where they came from."""

    metrics: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def build_optimizer(model: MultiTaskModel, train: TrainConfig) -> torch.optim.Optimizer:
    """Adam with the encoder and decoder learning rates as two named parameter groups."""
    return torch.optim.Adam(
        [
            {"params": list(model.encoder_parameters()), "lr": train.lr_encoder, "name": "encoder"},
            {"params": list(model.decoder_parameters()), "lr": train.lr_decoder, "name": "decoder"},
        ],
        weight_decay=train.weight_decay,
    )


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
        self.channels_last = cfg.train.channels_last and self.device.type == "cuda"
        self.threads = configure_threads(cfg.train.threads)
        self.config_hash = config_hash(cfg)
        seed_everything(cfg.train.seed)
        self.model: MultiTaskModel = build_model(cfg.model, self.tasks).to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, factor=cfg.train.plateau_factor, patience=cfg.train.plateau_patience
        )
        data = cfg.data
        common = dict(root=data.root, seed=data.data_seed)
        self.train_set = build_dataset(
            data.dataset, "train", self.tasks.names, data.image_size, num_samples=data.train_samples,
            augment=data.augment, **common,
        )
        self.val_set = build_dataset(
            data.dataset, "val", self.tasks.names, data.image_size, num_samples=data.val_samples, augment=None,
            **common,
        )
        self.history: list[dict[str, Any]] = []
        self.start_epoch = 1

    # ----------------------------------------------------------------------------------------------- data
    def _loader(self, dataset, generator: torch.Generator | None) -> DataLoader:
        workers = self.cfg.data.num_workers
        return DataLoader(
            dataset,
            batch_size=self.cfg.train.batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            drop_last=generator is not None and len(dataset) > self.cfg.train.batch_size,
        )

    def validation_batches(self) -> DataLoader:
        return self._loader(self.val_set, None)

    # ----------------------------------------------------------------------------------------- checkpoint
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": epoch,
            "history": self.history,
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
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = list(state["history"])
        self.start_epoch = int(state["epoch"]) + 1
        return True

    # ------------------------------------------------------------------------------------------- training
    def _train_step(self, tasks: tuple[str, ...], batch: Mapping, epoch: int, step: int) -> dict[str, float]:
        images, targets = move_batch(batch, self.device, self.channels_last)
        with autocast(self.device, self.cfg.train.amp):
            if len(tasks) == 1:
                outputs = {tasks[0]: self.model(images, tasks[0])}
            else:
                outputs = self.model.forward_tasks(images, tasks)
        losses = {t: task_loss(self.tasks.get(t), outputs[t].float(), targets[t]) for t in tasks}
        for task, loss in losses.items():
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"non-finite {task} loss ({loss.item()}) at epoch {epoch}, step {step}; "
                    "lower train.lr_decoder / train.lr_encoder or check the data"
                )
        total = sum(self.loss_weights[t] * loss for t, loss in losses.items())
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {t: loss.item() for t, loss in losses.items()}

    def _train_epoch(self, epoch: int, eta: str) -> dict[str, float]:
        generator = _epoch_generator(self.cfg.train.seed, epoch)
        torch.manual_seed(int(torch.randint(2**62, (1,), generator=generator)))  # augmentation randomness
        loader = self._loader(self.train_set, generator)
        plan = plan_epoch(self.cfg.train.schedule, self.tasks.names, len(loader), generator)
        sums = dict.fromkeys(self.tasks.names, 0.0)
        counts = dict.fromkeys(self.tasks.names, 0)
        total_steps = sum(len(p) for p in plan)
        bar = tqdm(
            total=total_steps,
            desc=f"epoch {epoch}/{self.cfg.train.epochs}",
            disable=None if self.cfg.train.progress else True,  # None: off when stderr is not a terminal
            leave=False,
            dynamic_ncols=True,
        )
        step = 0
        self.model.train()
        for steps in plan:
            for tasks, batch in zip(steps, loader):
                for task, value in self._train_step(tasks, batch, epoch, step).items():
                    sums[task] += value
                    counts[task] += 1
                step += 1
                bar.update()
                if step % 10 == 0 or step == total_steps:
                    bar.set_postfix_str(
                        " ".join(f"{t}={sums[t] / counts[t]:.3g}" for t in self.tasks.names if counts[t]) + eta
                    )
        bar.close()
        return {t: sums[t] / max(counts[t], 1) for t in self.tasks.names}

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
        )

    def _delta_m(self, primary: Mapping[str, float]) -> float | None:
        if self.baseline is None:
            return None
        higher = {t.name: t.higher_is_better for t in self.tasks.tasks}
        return delta_m(primary, self.baseline.metrics, higher, convention="astmt")

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
            train_losses = self._train_epoch(epoch, eta)
            record: dict[str, Any] = {"epoch": epoch, "train_loss": train_losses}
            if epoch % train_cfg.eval_every == 0 or epoch == train_cfg.epochs:
                evaluation = self.run_validation(train_cfg.edge_evaluator)
                self.scheduler.step(evaluation.mean_loss)
                primary = evaluation.primary(self.tasks)
                record.update(val_loss=evaluation.losses, metrics=primary, delta_m=self._delta_m(primary))
                for callback in self.callbacks:
                    callback.on_evaluation(self, epoch, evaluation)
            record["lr"] = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
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

    def _summary(self, final: Evaluation, seconds: float) -> dict[str, Any]:
        primary = final.primary(self.tasks)
        dm = self._delta_m(primary)
        counting = meta_model(self.cfg.model, self.tasks)
        return {
            "config": self.cfg.to_dict(),
            "config_hash": self.config_hash,
            "git_commit": git_commit(),
            "architecture": self.cfg.model.architecture,
            "dataset": self.cfg.data.dataset,
            "tasks": list(self.tasks.names),
            "metrics": {
                t.name: {
                    "values": dict(final.results[t.name].values),
                    "conventions": dict(final.results[t.name].conventions),
                    "primary": t.metric,
                    "higher_is_better": t.higher_is_better,
                }
                for t in self.tasks.tasks
            },
            "primary": primary,
            "val_loss": final.losses,
            "delta_m": None
            if dm is None
            else {"value": dm, "convention": "astmt", "baseline": dict(self.baseline.provenance), "baseline_metrics": dict(self.baseline.metrics)},
            "params": count_parameters(self.model),
            "macs": count_macs(counting, self.cfg.data.image_size),
            "wall_time_s": seconds,
            "epochs": self.cfg.train.epochs,
            "history": self.history,
            "device": str(self.device),
            "threads": self.threads,
        }


def load_finished(out_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(out_dir) / METRICS).read_text())


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
