"""A pretrained-encoder analogue for the CPU budgets: the compact encoder, trained once on a split of its own.

The paper fine-tunes an ImageNet-pretrained ResNet-18 at a small encoder LR. Here the compact encoder is trained on
the ``pretrain`` split of the synthetic scenes (disjoint from train and val by its split id, see
``tsn.data.synthetic``) with an image-level objective of its own, as ImageNet classification is: which object
classes are visible (multi-label) and how many objects of each class, predicted by a linear head on the globally
pooled F5 feature. The head is discarded. The encoder's state dict is cached like downloaded weights: one ``.pth``
file under ``$TSN_CACHE_DIR/weights``, named by a hash of everything that determines it, with a SHA-256 file that is
verified on every use; a bad file is reported and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from .atomic import atomic_write
from .backbones import compact_encoder
from .config import ConfigError, _apply_section
from .data import cache, synthetic
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

RECIPE_VERSION = 1  # bump whenever a change of this module (objective, data, optimisation) changes the weights
NUM_CLASSES = len(synthetic.SHAPES)  # object classes: semseg labels 1..NUM_CLASSES


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines the pretrained weights (with the generator and recipe versions)."""

    image_size: int = 64
    samples: int = 4096
    epochs: int = 16
    batch_size: int = 64
    lr: float = 2e-3  # AdamW, cosine-decayed to 0 over the run
    weight_decay: float = 1e-4
    seed: int = 0  # initialisation, shuffling and flips
    data_seed: int = 0  # the pretrain split's scenes

    def __post_init__(self) -> None:
        for key in ("image_size", "samples", "epochs", "batch_size", "lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"pretrain.{key} must be > 0, got {getattr(self, key)}")
        if self.weight_decay < 0:
            raise ConfigError(f"pretrain.weight_decay must be >= 0, got {self.weight_decay}")
        if self.image_size % 32:
            raise ConfigError(f"pretrain.image_size must be a multiple of 32 got {self.image_size}")


def with_overrides(cfg: PretrainConfig, overrides: Sequence[str]) -> PretrainConfig:
    """``cfg`` with ``key=value`` overrides (``epochs=4`` or ``pretrain.epochs=4``), checked like a run config."""
    values = {}
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {text!r} must look like key=value, e.g. epochs=4")
        values[key.removeprefix("pretrain.")] = yaml.safe_load(raw)
    return _apply_section(cfg, "pretrain", values)


def object_counts(sample: dict[str, np.ndarray]) -> np.ndarray:
    """Visible objects per class [NUM_CLASSES] of one rendered sample (from its instance and semseg maps)."""
    objects = sample["instance"] >= synthetic.FIRST_OBJECT
    pairs = np.unique(np.stack([sample["instance"][objects], sample["semseg"][objects]]), axis=1)
    return np.bincount(pairs[1] - 1, minlength=NUM_CLASSES)


def pretrain_data(cfg: PretrainConfig) -> dict[str, np.ndarray]:
    """The pretrain split: images uint8 [N, S, S, 3] and object counts uint8 [N, NUM_CLASSES], cached on disk."""

    def build() -> dict[str, np.ndarray]:
        images, counts = [], []
        for i in range(cfg.samples):
            sample = synthetic.render(cfg.data_seed, "pretrain", i, cfg.image_size)
            images.append(sample["image"])
            counts.append(object_counts(sample))
        return {"image": np.stack(images), "counts": np.stack(counts).astype(np.uint8)}

    name = (
        f"synthetic-v{synthetic.GENERATOR_VERSION}-seed{cfg.data_seed}-pretrain-{cfg.image_size}px"
        f"-n{cfg.samples}-counts"
    )
    return cache.cached_arrays(name, build)


def pretrain_loss(output: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Multi-label presence (BCE on the first NUM_CLASSES outputs) plus count regression (MSE on the rest)."""
    presence, count = output.split(NUM_CLASSES, dim=1)
    return F.binary_cross_entropy_with_logits(presence, (counts > 0).float()) + F.mse_loss(count, counts)


def pretrain_encoder(
    cfg: PretrainConfig, on_epoch: Callable[[int, float], None] | None = None
) -> dict[str, torch.Tensor]:
    """Train a compact encoder on the pretrain split; its state dict. ``on_epoch(epoch, mean loss)`` per epoch.

    Deterministic for a given config and thread count; the global torch RNG is left as it was.
    """
    data = pretrain_data(cfg)
    images = torch.from_numpy(data["image"]).permute(0, 3, 1, 2)
    counts = torch.from_numpy(data["counts"]).float()
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    n, size = len(images), cfg.batch_size
    # Full batches only (a batch of one breaks BatchNorm), or all samples when there are fewer than a batch.
    used = min(n, max(size, n - n % size))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = compact_encoder()
        head = nn.Linear(encoder.channels[-1], 2 * NUM_CLASSES)
        optimizer = torch.optim.AdamW(
            [*encoder.parameters(), *head.parameters()], cfg.lr, weight_decay=cfg.weight_decay
        )
        steps = cfg.epochs * math.ceil(used / size)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        generator = torch.Generator().manual_seed(cfg.seed)
        encoder.train()
        for epoch in range(1, cfg.epochs + 1):
            total = 0.0
            for batch in torch.randperm(n, generator=generator)[:used].split(size):
                x = images[batch].float().div_(255)
                flip = torch.rand(len(batch), generator=generator) < 0.5
                x = torch.where(flip[:, None, None, None], x.flip(-1), x).sub_(mean).div_(std)
                loss = pretrain_loss(head(encoder(x)[-1].mean(dim=(2, 3))), counts[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(batch)
            log.info("pretrain epoch %d/%d: loss %.4f", epoch, cfg.epochs, total / used)
            if on_epoch is not None:
                on_epoch(epoch, total / used)
    return {key: value.detach().clone() for key, value in encoder.state_dict().items()}


def recipe_hash(cfg: PretrainConfig) -> str:
    """A short hash of the config, the generator and recipe versions and the encoder's layout (names, shapes)."""
    with torch.random.fork_rng(devices=[]):
        layout = {key: list(value.shape) for key, value in compact_encoder().state_dict().items()}
    recipe = {
        "config": asdict(cfg),
        "generator": synthetic.GENERATOR_VERSION,
        "recipe": RECIPE_VERSION,
        "encoder": layout,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def synthetic_weights_path(cfg: PretrainConfig, cache_dir: str | Path | None = None) -> Path:
    """Where the weights of ``cfg`` are cached: ``<cache>/weights/compact-synthetic-v<G>-<hash>.pth``."""
    root = Path(cache_dir) if cache_dir is not None else cache.default_cache_dir()
    return root / "weights" / f"compact-synthetic-v{synthetic.GENERATOR_VERSION}-{recipe_hash(cfg)}.pth"


def _verified(path: Path) -> bool:
    if not path.exists() and not path.with_suffix(".sha256").exists():
        return False
    try:
        cache.verify_checksum(path)
        return True
    except (OSError, ValueError) as err:  # a half missing or a checksum mismatch
        log.warning("corrupt pretrained weights %s (%s); rebuilding them", path, err)
        return False


def _save(state: dict[str, torch.Tensor], tmp: Path) -> None:
    with open(tmp, "wb") as f:  # through a handle: the archive's inner name is fixed, not the temporary file's
        torch.save(state, f)


def ensure_synthetic_weights(
    cfg: PretrainConfig = PretrainConfig(),
    path: str | Path | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> Path:
    """The verified weights file of ``cfg`` (default: its cache path), pretraining it first if absent or bad.

    Idempotent and safe across processes: the build runs under an exclusive lock on ``<file>.lock``, so a second
    caller waits and then reuses the file the first one wrote.
    """
    target = Path(path) if path is not None else synthetic_weights_path(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        if _verified(target):
            return target
        log.warning(
            "pretraining the compact encoder once (%d samples, %d epochs) into %s", cfg.samples, cfg.epochs, target
        )
        state = pretrain_encoder(cfg, on_epoch)
        atomic_write(target, lambda tmp: _save(state, tmp))
        cache.write_checksum(target)
    return target
