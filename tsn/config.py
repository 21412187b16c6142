"""Run configuration: dataclasses with defaults; YAML files, budgets and ``key=value`` overrides only override.

Every value is validated before any compute: an unknown key, a value of the wrong type or an impossible
combination is a one-line ``ConfigError`` naming the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from .models import ModelConfig, validate_model_config
from .pretrained import (IMAGENET, IMAGENET_WEIGHTS, NO_WEIGHTS, SYNTHETIC, WeightsUnavailableError,
                         ensure_imagenet_file)
from .tasks import DATASETS, dataset_tasks

BUDGETS_FILE = Path(__file__).resolve().parent.parent / "experiments" / "budgets.yaml"
SCHEDULES = ("epoch", "batch", "joint")
LR_SCHEDULES = ("plateau", "cosine")
EDGE_EVALUATORS = ("fast", "seism")
DEVICES = ("auto", "cpu", "cuda")
FROZEN_ENCODER_LR = 1e-5  # at or below this rate a ResNet encoder barely moves from its initialisation


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the key and the valid values."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None  # folder of a real dataset
    tasks: tuple[str, ...] = ()  # empty = the dataset's default task set
    image_size: int = 64
    train_samples: int | None = None  # None = the whole split (synthetic: its default size)
    val_samples: int | None = None
    augment: str | None = "flip"
    data_seed: int = 0  # the synthetic scenes' seed (fixed across training seeds)
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    schedule: str = "epoch"  # the paper's: a full pass per task, tasks in shuffled order each epoch
    epochs: int = 300
    batch_size: int = 16
    lr_encoder: float = 1e-6
    lr_decoder: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"  # the paper's; "cosine": annealed to zero over the run (tsn.engine)
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    eval_every: int = 1
    # Epochs at which the full evaluation (final_edge_evaluator) runs and is stored beside the last epoch's, with a
    # checkpoint of that epoch: the paper reports epoch 129 of its 300-epoch runs.
    eval_epochs: tuple[int, ...] = ()
    seed: int = 1337
    loss_weights: dict[str, float] = field(default_factory=dict)  # per-task overrides of the registry's
    edge_evaluator: str = "fast"  # during training; the final evaluation uses final_edge_evaluator
    final_edge_evaluator: str = "seism"
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # on CUDA only
    threads: int = 0  # CPU threads; 0 = all cores
    eval_workers: int = 1  # processes for the SEISM-compatible odsF of a full evaluation (same result for any count)
    progress: bool = True


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "RunConfig":
        _validate(self)
        return self


# Keys that change where or how fast a run executes, never its result: left out of the config hash.
RUNTIME_KEYS = {"train": ("device", "threads", "progress", "eval_workers"), "data": ("num_workers", "root")}
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def config_hash(cfg: RunConfig) -> str:
    """A short, stable hash of everything that determines a run's result (a codes file by its content)."""
    data = cfg.to_dict()
    for section, keys in RUNTIME_KEYS.items():
        for key in keys:
            data[section].pop(key)
    if cfg.model.codes_file is not None:
        data["model"]["codes_file"] = "sha256:" + _file_digest(cfg.model.codes_file)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise ConfigError(f"model.codes_file cannot be read: {path} ({err.strerror})") from None


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a field annotation (str, int, float, bool, X | None, tuple[str, ...], dict)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _coerce(key, value, inner)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if origin is tuple:
        item = typing.get_args(annotation)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item is int and all(v.lstrip("-").isdigit() for v in value):
                value = [int(v) for v in value]
        elif isinstance(value, int) and not isinstance(value, bool) and item is int:
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{key}: expected a list of {'integers' if item is int else 'names'}, got {value!r}")
    if origin is dict:
        if isinstance(value, Mapping) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()
        ):
            return {str(k): float(v) for k, v in value.items()}
        raise ConfigError(f"{key}: expected a mapping of names to numbers, got {value!r}")
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")


def _apply_section(obj: Any, section: str, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in fields(obj)]
    updates = {}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"unknown key {section}.{key}; valid keys in {section}: {', '.join(names)}")
        updates[key] = _coerce(f"{section}.{key}", value, hints[key])
    return replace(obj, **updates)


def merge(cfg: RunConfig, overrides: Mapping[str, Any]) -> RunConfig:
    """Apply a nested mapping ``{section: {key: value}}`` (the YAML layout) to ``cfg``."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"a configuration must be a mapping of sections {list(SECTIONS)}, got {overrides!r}")
    updated = {}
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section {section!r}; valid: {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise ConfigError(f"section {section!r} must be a mapping of keys to values, got {values!r}")
        updated[section] = _apply_section(getattr(cfg, section), section, values)
    return replace(cfg, **updated)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``train.epochs=5`` or ``epochs=5`` (a key that exists in one section only) -> (section, key, value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.epochs=5")
    value = yaml.safe_load(raw) if raw else ""
    if "." in key:
        section, _, name = key.partition(".")
        return section, name, value
    owners = [s for s, cls in SECTIONS.items() if key in {f.name for f in fields(cls)}]
    if len(owners) != 1:
        every = sorted(f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls))
        raise ConfigError(f"unknown key {key!r}; valid: {', '.join(every)}")
    return owners[0], key, value


def apply_overrides(cfg: RunConfig, overrides: Sequence[str]) -> RunConfig:
    nested: dict[str, dict[str, Any]] = {}
    for text in overrides:
        section, key, value = parse_override(text)
        nested.setdefault(section, {})[key] = value
    return merge(cfg, nested)


def load_yaml(path: str | Path) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        return yaml.safe_load(file.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: YAML syntax error{where}: {getattr(err, 'problem', err)}") from None


def load_budgets(path: Path = BUDGETS_FILE) -> dict[str, Mapping[str, Any]]:
    budgets = load_yaml(path)
    if not isinstance(budgets, Mapping):
        raise ConfigError(f"{path}: expected a mapping of budget names to configurations")
    return dict(budgets)


def resolve(
    budget: str | None = None,
    config_file: str | None = None,
    overrides: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Defaults <- budget profile <- config file <- ``extra`` (e.g. a sweep's grid point) <- overrides; validated."""
    cfg = RunConfig()
    if budget is not None:
        budgets = load_budgets()
        if budget not in budgets:
            raise ConfigError(f"unknown budget {budget!r}; valid: {', '.join(budgets)}")
        # A budget's "sweep" section (e.g. max_seeds) concerns the sweep driver, "report" (its epoch) the tables.
        cfg = merge(cfg, {k: v for k, v in budgets[budget].items() if k not in ("sweep", "report")})
    if config_file:
        cfg = merge(cfg, _no_empty_tasks(load_yaml(config_file) or {}))
    if extra:
        cfg = merge(cfg, _no_empty_tasks(extra))
    for text in overrides:
        section, key, value = parse_override(text)
        _no_empty_tasks({section: {key: value}})
    return apply_overrides(cfg, overrides).validate()


def _no_empty_tasks(values: Any) -> Any:
    """A user's explicit empty ``data.tasks`` is an error, not "the default set" (which is how () is stored)."""
    data = values.get("data") if isinstance(values, Mapping) else None
    tasks = data.get("tasks", None) if isinstance(data, Mapping) else None
    if tasks is not None and not tasks and isinstance(tasks, (list, tuple, str)):
        dataset = data.get("dataset", "synthetic")
        names = dataset_tasks(dataset, ()).names if dataset in DATASETS else ()
        raise ConfigError(f"data.tasks is empty; name at least one task (or leave the key out for all); "
                          f"valid: {', '.join(names) or ', '.join(sorted(DATASETS))}")
    return values


def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Rebuild a RunConfig from ``to_dict`` output (e.g. a checkpoint's or a trial's stored config)."""
    return merge(RunConfig(), data).validate()


def check_data_root(cfg: RunConfig) -> None:
    """A real dataset needs ``data.root`` to be an existing folder; checked before any run or sweep starts."""
    data = cfg.data
    if data.dataset == "synthetic":
        return
    if not data.root:
        raise ConfigError(
            f"data.root is required for {data.dataset}: the folder of the unpacked release (README, 'Datasets')"
        )
    if not Path(data.root).is_dir():
        raise ConfigError(f"data.root: folder not found: {data.root} (the unpacked {data.dataset} release)")


def check_pretrained(cfg: RunConfig) -> None:
    """The encoder's weights are at hand before a run starts: a local file exists; ImageNet weights are in the
    torch hub cache or are downloaded into it now (offline and absent: one line naming the file and folder)."""
    pretrained = cfg.model.pretrained
    if pretrained == IMAGENET:
        try:
            ensure_imagenet_file(cfg.model.backbone)
        except WeightsUnavailableError as err:
            raise ConfigError(str(err)) from None
    elif pretrained == SYNTHETIC:
        from .pretrain import ensure_synthetic_weights  # imports this module

        ensure_synthetic_weights()  # pretrains once (about 2-3 min on 2 cores), then the cached file is reused
    elif pretrained not in (None, NO_WEIGHTS) and not Path(pretrained).is_file():
        raise ConfigError(f"model.pretrained: file not found: {pretrained}; valid: none, imagenet, synthetic or a "
                          "local .pth file")


def _positive(key: str, value: float | int | None, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value}")


def _one_of(key: str, value: Any, valid: Sequence[Any]) -> None:
    if value not in valid:
        raise ConfigError(f"{key}: {value!r} is not valid; valid: {', '.join(map(str, valid))}")


def _validate(cfg: RunConfig) -> None:
    data, train, model = cfg.data, cfg.train, cfg.model
    _one_of("data.dataset", data.dataset, sorted(DATASETS))
    try:
        tasks = dataset_tasks(data.dataset, data.tasks)
        validate_model_config(model, len(tasks.tasks))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if data.image_size < 64 or data.image_size % 32:
        raise ConfigError(f"data.image_size must be a multiple of 32 and >= 64 (stride-32 encoder), got {data.image_size}")
    _positive("data.train_samples", data.train_samples, allow_none=True)
    _positive("data.val_samples", data.val_samples, allow_none=True)
    if data.num_workers < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {data.num_workers}")
    _one_of("train.schedule", train.schedule, SCHEDULES)
    _one_of("train.lr_schedule", train.lr_schedule, LR_SCHEDULES)
    _one_of("train.edge_evaluator", train.edge_evaluator, EDGE_EVALUATORS)
    _one_of("train.final_edge_evaluator", train.final_edge_evaluator, EDGE_EVALUATORS)
    _one_of("train.device", train.device, DEVICES)
    for key in ("epochs", "batch_size", "eval_every", "plateau_factor", "eval_workers"):
        _positive(f"train.{key}", getattr(train, key))
    for key in ("lr_encoder", "lr_decoder"):
        if getattr(train, key) < 0:
            raise ConfigError(f"train.{key} must be >= 0, got {getattr(train, key)}")
    beyond = [e for e in train.eval_epochs if not 1 <= e <= train.epochs]
    if beyond:
        raise ConfigError(f"train.eval_epochs: epoch {beyond[0]} is outside 1..train.epochs ({train.epochs})")
    if train.plateau_factor >= 1:
        raise ConfigError(f"train.plateau_factor must be in (0, 1), got {train.plateau_factor}")
    if model.backbone in IMAGENET_WEIGHTS and model.pretrained is None and train.lr_encoder <= FROZEN_ENCODER_LR:
        raise ConfigError(
            f"model.pretrained is not set and train.lr_encoder={train.lr_encoder:g} <= {FROZEN_ENCODER_LR:g}: the "
            f"{model.backbone} encoder would stay random and nearly frozen; set model.pretrained=imagenet (or a .pth "
            f"file), raise train.lr_encoder, or write model.pretrained=none to mean it"
        )
    unknown = sorted(set(train.loss_weights) - set(tasks.names))
    if unknown:
        raise ConfigError(f"train.loss_weights: unknown task {unknown[0]!r}; valid: {', '.join(tasks.names)}")
    _positive("model.decoder_width", model.decoder_width)
