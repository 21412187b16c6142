"""Run configuration: dataclasses with defaults; YAML files, budgets and ``key=value`` overrides only override.

Every value is validated before any compute: an unknown key, a value of the wrong type or an impossible
combination is a one-line ``ConfigError`` naming the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from .decoder import DecoderWidths
from .domains import (
    SEED_MAX,
    check_fields,
    domain,
    hashed_when_set,
    is_hashed_when_set,
    is_multi_task_only,
    multi_task_only,
    unset_meaning,
)
from .lr_schedules import LR_SCHEDULES as LR_SCHEDULE_TYPES
from .models import ModelConfig, validate_model_config
from .pretrained import IMAGENET, IMAGENET_WEIGHTS, NO_WEIGHTS, SYNTHETIC, WeightsUnavailableError, ensure_imagenet_file
from .schedules import SCHEDULES as TASK_SCHEDULES
from .tasks import DATASETS, dataset_tasks

BUDGETS_FILE = Path(__file__).resolve().parent.parent / "experiments" / "budgets.yaml"
SCHEDULES = tuple(TASK_SCHEDULES)
LR_SCHEDULES = tuple(LR_SCHEDULE_TYPES)
EDGE_EVALUATORS = ("fast", "seism")
DEVICES = ("auto", "cpu", "cuda")
FROZEN_ENCODER_LR = 1e-5  # at or below this rate a ResNet encoder barely moves from its initialisation
MAX_SAMPLES = 10**8
MAX_EPOCHS = 100_000
MAX_LR = 10.0
MAX_LOSS_WEIGHT = 1e6
# Limits of every YAML document the suite reads: nodes after expanding aliases, nesting depth, alias references.
YAML_MAX_NODES = 100_000
YAML_MAX_DEPTH = 32
YAML_MAX_ALIASES = 1_000


class ConfigError(ValueError):
    """A configuration that cannot run; the message is one line naming the key and the valid values."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"
    root: str | None = None  # folder of a real dataset
    tasks: tuple[str, ...] = ()  # empty = the dataset's default task set
    image_size: int = field(default=64, metadata=domain(64, 4096))  # and a multiple of 32
    train_samples: int | None = field(default=None, metadata=domain(1, MAX_SAMPLES))  # None = the whole split
    val_samples: int | None = field(default=None, metadata=domain(1, MAX_SAMPLES))
    augment: str | None = "flip"
    data_seed: int = field(default=0, metadata=domain(0, SEED_MAX))  # the synthetic scenes' seed (fixed across seeds)
    num_workers: int = field(default=0, metadata=domain(0, 256))
    # synthetic only: every epoch trains on train_samples scenes of its own (epoch e: scenes (e-1)*N .. e*N-1), so
    # the training stream never repeats; the same steps as without, on train.epochs times as many scenes
    fresh_scenes: bool = field(default=False, metadata=hashed_when_set())


@dataclass(frozen=True)
class TrainConfig:
    # the paper's: a full pass per task, tasks in shuffled order each epoch (a single-task run has one task)
    schedule: str = field(default="epoch", metadata=multi_task_only())
    epochs: int = field(default=300, metadata=domain(1, MAX_EPOCHS))
    batch_size: int = field(default=16, metadata=domain(1, 65536))
    lr_encoder: float = field(default=1e-6, metadata=domain(0, MAX_LR))
    lr_decoder: float = field(default=1e-4, metadata=domain(0, MAX_LR))
    weight_decay: float = field(default=0.0, metadata=domain(0, 1))
    lr_schedule: str = "plateau"  # the paper's; "cosine": annealed to zero over the run (tsn.engine)
    plateau_factor: float = field(default=0.5, metadata=domain(0, 1, open_low=True, open_high=True))
    plateau_patience: int = field(default=10, metadata=domain(0, MAX_EPOCHS))
    eval_every: int = field(default=1, metadata=domain(1, MAX_EPOCHS))
    # Epochs at which the full evaluation (final_edge_evaluator) runs and is stored beside the last epoch's, with a
    # checkpoint of that epoch: the paper reports epoch 129 of its 300-epoch runs.
    eval_epochs: tuple[int, ...] = field(default=(), metadata=domain(1, MAX_EPOCHS))  # and <= epochs
    seed: int = field(default=1337, metadata=domain(0, SEED_MAX))
    # per-task overrides of the registry's; not all of a run's tasks may weigh 0
    loss_weights: dict[str, float] = field(default_factory=dict, metadata=domain(0, MAX_LOSS_WEIGHT))
    edge_evaluator: str = "fast"  # during training; the final evaluation uses final_edge_evaluator
    final_edge_evaluator: str = "seism"
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    channels_last: bool = True  # on CUDA only
    threads: int = field(default=0, metadata=domain(0, 1024))  # CPU threads; 0 = all cores
    # processes for the SEISM-compatible odsF of a full evaluation (the same result for any count)
    eval_workers: int = field(default=1, metadata=domain(1, 1024))
    progress: bool = True


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> RunConfig:
        _validate(self)
        return self


# Keys that change where or how fast a run executes, never its result: left out of the config hash.
RUNTIME_KEYS = {"train": ("device", "threads", "progress", "eval_workers"), "data": ("num_workers", "root")}
SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def without_runtime(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict (``RunConfig.to_dict()``, or as stored) without its :data:`RUNTIME_KEYS`, in place."""
    for section, keys in RUNTIME_KEYS.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    return data


def identity(data: dict[str, Any], *, keep_written_out: bool = False) -> dict[str, Any]:
    """A config dict (``RunConfig.to_dict()``, or as stored) reduced, in place, to what tells runs apart: without
    its :data:`RUNTIME_KEYS`; a value written out where a field's ``None`` stands for it (``unset_means``) as
    ``None``; and without the fields declared ``hashed_when_set`` while at their default (a record stored before
    such a field existed has the identity of a new record that leaves it at its default).

    ``keep_written_out`` keeps written-out values as they are: the identity that records made before
    ``unset_means`` existed carry, which :mod:`sweeps.rehash` brings up to date.
    """
    without_runtime(data)
    for name, section in SECTIONS.items():
        values = data.get(name, {})
        for item in fields(section):
            if item.name not in values:
                continue
            meaning = None if keep_written_out else unset_meaning(item, values)
            if meaning is not None and values[item.name] == meaning:
                values[item.name] = None
            if is_hashed_when_set(item) and values[item.name] == _default(item):
                del values[item.name]
    return data


def identity_hash(data: Mapping[str, Any]) -> str:
    """The short, stable hash of an identity (:func:`identity`'s result)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def config_hash(cfg: RunConfig) -> str:
    """A short, stable hash of everything that determines a run's result (a codes file by its content)."""
    data = identity(cfg.to_dict())
    if cfg.model.codes_file is not None:
        data["model"]["codes_file"] = "sha256:" + _file_digest(cfg.model.codes_file)
    return identity_hash(data)


def baseline_config(cfg: RunConfig) -> RunConfig:
    """The single-task run that ``cfg``'s Delta-m is measured against: architecture ``single_task``, every field
    marked :func:`tsn.domains.multi_task_only` at its default, every other field (data, encoder, widths, seed, ...)
    as in ``cfg``, so that a new field is compared like for like unless it is marked."""
    sections = {}
    for name in SECTIONS:
        section = getattr(cfg, name)
        sections[name] = replace(section, **{f.name: _default(f) for f in fields(section) if is_multi_task_only(f)})
    sections["model"] = replace(sections["model"], architecture="single_task")
    return replace(cfg, **sections)


def _default(item: dataclasses.Field) -> Any:
    return item.default_factory() if item.default is dataclasses.MISSING else item.default


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
    value = parse_yaml(raw, f"override {key}") if raw else ""
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


class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader with bounded nesting depth, alias references and expanded size ("billion laughs")."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise _YamlLimit(f"more than {YAML_MAX_ALIASES} alias references (*name)")
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise _YamlLimit(f"nested deeper than {YAML_MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        _expanded_size(node, 1, {}, set())
        return node


class _YamlLimit(Exception):
    """A YAML document beyond the loader's limits (message completes "the file is ...")."""


def _expanded_size(
    node: yaml.Node, depth: int, sizes: dict[int, tuple[int, int]], open_nodes: set[int]
) -> tuple[int, int]:
    """(nodes, height) of ``node`` with every alias expanded; raises _YamlLimit beyond the limits or on a cycle."""
    key = id(node)
    if key in sizes:
        count, height = sizes[key]
    else:
        if key in open_nodes:
            raise _YamlLimit("recursive (an alias inside its own anchor)")
        open_nodes.add(key)
        children = (
            node.value
            if isinstance(node, yaml.SequenceNode)
            else ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        )
        count, height = 1, 1
        for child in children:
            child_count, child_height = _expanded_size(child, depth + 1, sizes, open_nodes)
            count, height = count + child_count, max(height, child_height + 1)
            if count > YAML_MAX_NODES:
                raise _YamlLimit(f"larger than {YAML_MAX_NODES} values once its aliases are expanded")
        open_nodes.discard(key)
        sizes[key] = count, height
    if depth - 1 + height > YAML_MAX_DEPTH:
        raise _YamlLimit(f"nested deeper than {YAML_MAX_DEPTH} levels once its aliases are expanded")
    return count, height


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` within the limits above; ``source`` (a file, or a flag) names it in any error."""
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    except _YamlLimit as err:
        raise ConfigError(f"{source}: refused, the YAML document is {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(f"{source}: YAML syntax error{where}: {problem}") from None
    finally:
        loader.dispose()


def load_yaml(path: str | Path) -> Any:
    """The one reader of YAML files: UTF-8 only, within the limits of :func:`parse_yaml`."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}" + (" (it is a folder)" if file.is_dir() else ""))
    try:
        raw = file.read_bytes()
    except OSError as err:
        raise ConfigError(f"{file}: cannot be read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{file}: not UTF-8 text (byte {err.start}: {raw[err.start : err.start + 1]!r}); save it as UTF-8"
        ) from None
    return parse_yaml(text, str(file))


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
        raise ConfigError(
            f"data.tasks is empty; name at least one task (or leave the key out for all); "
            f"valid: {', '.join(names) or ', '.join(sorted(DATASETS))}"
        )
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
        raise ConfigError(
            f"model.pretrained: file not found: {pretrained}; valid: none, imagenet, synthetic or a local .pth file"
        )


# A lower bound of the encoder's activations: one float per channel of each ResNet stage's output, per input pixel
# (64/2^2 + 64/4^2 + 128/8^2 + 256/16^2 + 512/32^2 for ResNet-18, rounded up).
ENCODER_FLOATS_PER_PIXEL = 24


def activation_bytes(cfg: RunConfig) -> int:
    """A rough LOWER bound of the memory one training step needs: the input batch and one copy of each encoder
    stage's and decoder block's output (backward, optimiser state and workspaces come on top)."""
    widths = DecoderWidths.scaled(cfg.model.decoder_width)
    decoder = widths.out + sum((s + u) / 4 ** (j + 1) for j, (s, u) in enumerate(zip(widths.skip, (*widths.up, 0))))
    per_pixel = 3 + ENCODER_FLOATS_PER_PIXEL + decoder
    return int(cfg.train.batch_size * cfg.data.image_size**2 * per_pixel * 4)


def available_memory(device: str) -> tuple[str, int]:
    """(name, bytes) of the memory a run on ``device`` (train.device) allocates from: the GPU's or the RAM."""
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available():
            return "GPU", torch.cuda.get_device_properties(0).total_memory
    return "RAM", os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(cfg: RunConfig) -> None:
    """Refuse, in one line and before allocating anything, a run whose activations cannot fit this machine."""
    need = activation_bytes(cfg)
    where, total = available_memory(cfg.train.device)
    if need > total:
        gib = 2**30
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} at data.image_size={cfg.data.image_size} (model.decoder_width="
            f"{cfg.model.decoder_width:g}) needs more than {need / gib:.1f} GiB, this machine's {where} has "
            f"{total / gib:.1f} GiB; lower train.batch_size or data.image_size"
        )


def _one_of(key: str, value: Any, valid: Sequence[Any]) -> None:
    if value not in valid:
        raise ConfigError(f"{key}: {value!r} is not valid; valid: {', '.join(map(str, valid))}")


def _validate(cfg: RunConfig) -> None:
    data, train, model = cfg.data, cfg.train, cfg.model
    try:
        for section in SECTIONS:
            check_fields(getattr(cfg, section), section)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _one_of("data.dataset", data.dataset, sorted(DATASETS))
    try:
        tasks = dataset_tasks(data.dataset, data.tasks)
        validate_model_config(model, len(tasks.tasks))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if data.image_size % 32:
        raise ConfigError(f"data.image_size must be a multiple of 32 (stride-32 encoder), got {data.image_size}")
    if data.fresh_scenes and (data.dataset != "synthetic" or data.train_samples is None):
        raise ConfigError(
            f"data.fresh_scenes draws new scenes every epoch: it needs data.dataset=synthetic and data.train_samples "
            f"(the scenes per epoch), got dataset {data.dataset} and train_samples {data.train_samples}"
        )
    if data.fresh_scenes and data.train_samples * train.epochs > MAX_SAMPLES:
        raise ConfigError(
            f"data.fresh_scenes: train_samples x train.epochs = {data.train_samples * train.epochs} scenes, more "
            f"than {MAX_SAMPLES}; lower either"
        )
    _one_of("train.schedule", train.schedule, SCHEDULES)
    _one_of("train.lr_schedule", train.lr_schedule, LR_SCHEDULES)
    _one_of("train.edge_evaluator", train.edge_evaluator, EDGE_EVALUATORS)
    _one_of("train.final_edge_evaluator", train.final_edge_evaluator, EDGE_EVALUATORS)
    _one_of("train.device", train.device, DEVICES)
    beyond = [e for e in train.eval_epochs if e > train.epochs]
    if beyond:
        raise ConfigError(f"train.eval_epochs: epoch {beyond[0]} is outside 1..train.epochs ({train.epochs})")
    if model.backbone in IMAGENET_WEIGHTS and model.pretrained is None and train.lr_encoder <= FROZEN_ENCODER_LR:
        raise ConfigError(
            f"model.pretrained is not set and train.lr_encoder={train.lr_encoder:g} <= {FROZEN_ENCODER_LR:g}: the "
            f"{model.backbone} encoder would stay random and nearly frozen; set model.pretrained=imagenet (or a .pth "
            f"file), raise train.lr_encoder, or write model.pretrained=none to mean it"
        )
    unknown = sorted(set(train.loss_weights) - set(tasks.names))
    if unknown:
        raise ConfigError(f"train.loss_weights: unknown task {unknown[0]!r}; valid: {', '.join(tasks.names)}")
    if not any(train.loss_weights.get(t.name, t.loss_weight) > 0 for t in tasks.tasks):
        raise ConfigError(
            f"train.loss_weights: every task ({', '.join(tasks.names)}) weighs 0, nothing would "
            f"be trained; give at least one task a weight > 0"
        )
