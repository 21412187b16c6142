"""The five architectures behind one interface, built by name with :func:`build_model`.

Every model exposes ``encode`` / ``decode`` as separate steps (MAE-style), so a caller can run the encoder once
and the decoder for many tasks:

- ``forward(x, task)``: one task for the whole batch.
- ``forward_tasks(x, tasks)``: several tasks for the same batch, encoder computed once; the one-decoder
  architectures run all tasks as ONE decoder batch of B*T samples, each sample with its own conditioning.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from .backbones import BACKBONES, build_backbone
from .decoder import Decoder, DecoderWidths
from .domains import SEED_MAX, check_fields, domain, multi_task_only, unset_means
from .encodings import ENCODINGS, codes_from_file, task_codes
from .heads import HEADS, build_head
from .layers import TaskContext, TaskEmbeddingNet
from .pretrained import NAMED_WEIGHTS, NO_WEIGHTS
from .tasks import DatasetTasks

Features = list[torch.Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model; the defaults are the paper's (ResNet-18, paper widths, d = 100).

    The fields marked ``multi_task_only`` are reset to their defaults in a run's single-task baseline
    (tsn.config.baseline_config); the encoder and the widths are the baseline's too.
    """

    architecture: str = field(default="tsn", metadata=multi_task_only())
    backbone: str = "resnet18"
    # "none" | "imagenet" | "synthetic" | a local .pth file; None = not set (a random encoder, as "none")
    pretrained: str | None = field(default=None, metadata=unset_means(lambda model: NO_WEIGHTS))
    decoder_width: float = field(default=1.0, metadata=domain(0, 16, open_low=True))
    encoding: str = field(default="orthogonal", metadata=multi_task_only())
    embedding_dim: int = field(default=100, metadata=domain(1, 4096) | multi_task_only())
    n_fc: int = field(default=8, metadata=domain(0, 64) | multi_task_only())
    # seed of the Gaussian task codes
    code_seed: int = field(default=0, metadata=domain(0, SEED_MAX) | multi_task_only())
    # a T x d .npy array of task codes; replaces the encoding's draw
    codes_file: str | None = field(default=None, metadata=multi_task_only())
    # "shared" | "per_task"; None = the architecture's default
    head: str | None = field(
        default=None, metadata=multi_task_only() | unset_means(lambda model: default_head(model.get("architecture")))
    )


class MultiTaskModel(nn.Module):
    """Common interface; subclasses implement ``encode``, ``decode`` and (optionally) ``decode_tasks``, and name
    ``DEFAULT_HEAD``, the head (tsn.heads.HEADS) they build when ``model.head`` is not set."""

    DEFAULT_HEAD: str

    def __init__(self, tasks: DatasetTasks) -> None:
        super().__init__()
        self.tasks = tasks
        self.task_names = tasks.names
        self.task_ids = {name: k for k, name in enumerate(tasks.names)}

    def encode(self, x: torch.Tensor) -> Features:
        raise NotImplementedError

    def decode(self, features: Features, task: str) -> torch.Tensor:
        raise NotImplementedError

    def decode_tasks(self, features: Features, tasks: Sequence[str]) -> dict[str, torch.Tensor]:
        return {task: self.decode(features, task) for task in tasks}

    def forward(self, x: torch.Tensor, task: str) -> torch.Tensor:
        self._check_task(task)
        return self.decode(self.encode(x), task)

    def forward_tasks(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        tasks = list(tasks or self.task_names)
        for task in tasks:
            self._check_task(task)
        return self.decode_tasks(self.encode(x), tasks)

    def _check_task(self, task: str) -> None:
        if task not in self.task_ids:
            raise ValueError(f"unknown task {task!r}; this model serves {list(self.task_names)}")

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        return (p for name, p in self.named_parameters() if _is_encoder(name))

    def decoder_parameters(self) -> Iterator[nn.Parameter]:
        """Everything that is not encoder: decoders, heads, norms, C and FC_A."""
        return (p for name, p in self.named_parameters() if not _is_encoder(name))

    def task_embeddings(self) -> torch.Tensor | None:
        """The learned l_tau, one row per task (TSN only)."""
        return None

    def networks(self) -> dict[str, MultiTaskModel]:
        """The independently trained networks by name, each serving its ``task_names``: the whole model for the
        architectures that share an encoder; one per task for ``single_task``. Each gets its own optimiser and
        LR schedule (tsn.engine), so the single-task baselines train as separate runs, as the official ones do."""
        return {"shared": self}


def _is_encoder(name: str) -> bool:
    return name.startswith("encoder.") or ".encoder." in name


def _output_size(features: Features) -> tuple[int, int]:
    """Full resolution: twice F1's (every backbone's first stage has stride 2)."""
    h, w = features[0].shape[-2:]
    return 2 * h, 2 * w


class SharedDecoderModel(MultiTaskModel):
    """One encoder, ONE decoder for all tasks: ``tsn`` (AdaIN from C(v_tau)), ``task_in``, ``task_bn``."""

    DEFAULT_HEAD = "shared"

    def __init__(self, tasks: DatasetTasks, cfg: ModelConfig, norm: str, embedding: bool) -> None:
        super().__init__(tasks)
        num_tasks = len(tasks.tasks)
        dim = cfg.embedding_dim if embedding else 0
        self.encoder = build_backbone(cfg.backbone, cfg.pretrained)
        widths = DecoderWidths.scaled(cfg.decoder_width)
        self.decoder = Decoder(self.encoder.channels, widths, norm, num_tasks, dim)
        self.head = build_head(cfg.head or self.DEFAULT_HEAD, widths.out, tasks.tasks)
        self.embedding_net = TaskEmbeddingNet(dim, cfg.n_fc) if embedding else None
        if embedding:
            self.register_buffer("task_codes", condition_codes(cfg, num_tasks))

    def task_embeddings(self) -> torch.Tensor | None:
        return None if self.embedding_net is None else self.embedding_net(self.task_codes)

    def encode(self, x: torch.Tensor) -> Features:
        return self.encoder(x)

    def decode_blocks(self, features: Features, tasks: Sequence[str]) -> torch.Tensor:
        """Decoder output (before the head) for a batch made of ``len(tasks)`` equal blocks, block i for tasks[i]."""
        block = features[0].shape[0] // len(tasks)
        ctx = TaskContext.for_blocks(
            [self.task_ids[t] for t in tasks], block, features[0].device, self.task_embeddings()
        )
        return self.decoder(features, ctx, _output_size(features))

    def decode(self, features: Features, task: str) -> torch.Tensor:
        return self.head(self.decode_blocks(features, [task]), task)

    def decode_tasks(
        self, features: Features, tasks: Sequence[str], batched: bool | None = None
    ) -> dict[str, torch.Tensor]:
        """Every task on the same features. ``batched``: all tasks as ONE decoder batch of B*T samples (the
        default on GPUs, where one large batch fills the device); otherwise the decoder runs once per task on
        the shared features (the default on CPU, where the large batch is slower: BENCHMARKS.md, section 2).
        Both give the same outputs (tests/test_models.py)."""
        if batched is None:
            batched = features[0].device.type != "cpu"
        if not batched:
            return super().decode_tasks(features, tasks)
        batch, n = features[0].shape[0], len(tasks)
        stacked = [f.repeat(n, *([1] * (f.dim() - 1))) for f in features]
        out = self.decode_blocks(stacked, tasks)
        return {task: self.head(chunk, task) for task, chunk in zip(tasks, out.split(batch))}


class MultiDecoderModel(MultiTaskModel):
    """Shared encoder, one decoder (Conv -> IN(affine) -> ReLU blocks) and one head per task."""

    DEFAULT_HEAD = "per_task"

    def __init__(self, tasks: DatasetTasks, cfg: ModelConfig) -> None:
        super().__init__(tasks)
        self.encoder = build_backbone(cfg.backbone, cfg.pretrained)
        widths = DecoderWidths.scaled(cfg.decoder_width)
        self.decoders = nn.ModuleDict(
            {t: Decoder(self.encoder.channels, widths, "in", 1, activation="relu") for t in tasks.names}
        )
        self.head = build_head(cfg.head or self.DEFAULT_HEAD, widths.out, tasks.tasks)

    def encode(self, x: torch.Tensor) -> Features:
        return self.encoder(x)

    def decode(self, features: Features, task: str) -> torch.Tensor:
        ctx = TaskContext.for_blocks([0], features[0].shape[0], features[0].device)
        return self.head(self.decoders[task](features, ctx, _output_size(features)), task)


class SingleTaskModel(MultiTaskModel):
    """One whole network (encoder, decoder, head) per task; nothing is shared.

    Since no encoder is shared, ``encode`` is the identity and ``decode`` runs the task's whole network.
    """

    DEFAULT_HEAD = MultiDecoderModel.DEFAULT_HEAD  # each task's network is a one-task multi-decoder model

    def __init__(self, tasks: DatasetTasks, cfg: ModelConfig) -> None:
        super().__init__(tasks)
        self.nets = nn.ModuleDict({t: MultiDecoderModel(tasks.subset([t]), cfg) for t in tasks.names})

    def encode(self, x: torch.Tensor) -> Features:
        return [x]

    def decode(self, features: Features, task: str) -> torch.Tensor:
        return self.nets[task](features[0], task)

    def networks(self) -> dict[str, MultiTaskModel]:
        return dict(self.nets)


# name -> the model class with its arguments besides (tasks, cfg)
ARCHITECTURES: dict[str, partial[MultiTaskModel]] = {
    "tsn": partial(SharedDecoderModel, norm="adain", embedding=True),
    "task_in": partial(SharedDecoderModel, norm="task_in", embedding=False),
    "task_bn": partial(SharedDecoderModel, norm="task_bn", embedding=False),
    "multi_decoder": partial(MultiDecoderModel),
    "single_task": partial(SingleTaskModel),
}


def default_head(architecture: str | None) -> str | None:
    """The head ``architecture`` builds when ``model.head`` is not set; None for an unknown architecture."""
    build = ARCHITECTURES.get(architecture) if isinstance(architecture, str) else None
    return None if build is None else build.func.DEFAULT_HEAD


def condition_codes(cfg: ModelConfig, num_tasks: int) -> torch.Tensor:
    """The task-condition vectors v_tau: the rows of ``cfg.codes_file`` if given (``cfg.encoding`` then only
    names them), otherwise the draw of ``cfg.encoding``."""
    if cfg.codes_file is not None:
        return codes_from_file(cfg.codes_file, num_tasks, cfg.embedding_dim)
    return task_codes(cfg.encoding, num_tasks, cfg.embedding_dim, cfg.code_seed)


def validate_model_config(cfg: ModelConfig, num_tasks: int) -> None:
    """Raise a one-line ValueError for a configuration that cannot be built, before any compute."""
    check_fields(cfg, "model")
    if cfg.architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {cfg.architecture!r}; valid: {list(ARCHITECTURES)}")
    if cfg.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {cfg.backbone!r}; valid: {sorted(BACKBONES)}")
    if cfg.head is not None and cfg.head not in HEADS:
        raise ValueError(f"unknown head {cfg.head!r}; valid: {sorted(HEADS)} or null")
    if cfg.pretrained == "":
        raise ValueError(f"model.pretrained is empty; valid: none, {', '.join(NAMED_WEIGHTS)} or a local .pth file")
    if cfg.pretrained in NAMED_WEIGHTS and cfg.backbone not in NAMED_WEIGHTS[cfg.pretrained]:
        served = [name for name, backbones in NAMED_WEIGHTS.items() if cfg.backbone in backbones]
        raise ValueError(
            f"model.pretrained: {cfg.pretrained} weights exist for {', '.join(NAMED_WEIGHTS[cfg.pretrained])}, not "
            f"the {cfg.backbone} backbone; valid for it: none, {', '.join(served + ['a local .pth file'])}"
        )
    if cfg.architecture != "tsn":
        return
    if cfg.encoding not in ENCODINGS:
        raise ValueError(f"unknown task encoding {cfg.encoding!r}; valid: {list(ENCODINGS)}")
    condition_codes(cfg, num_tasks)  # raises for a bad orthogonal d or a codes file that does not fit


def build_model(cfg: ModelConfig, tasks: DatasetTasks) -> MultiTaskModel:
    """Build the architecture ``cfg.architecture`` for ``tasks``."""
    validate_model_config(cfg, len(tasks.tasks))
    return ARCHITECTURES[cfg.architecture](tasks, cfg)
