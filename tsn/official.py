"""Import the authors' released PASCAL-Context checkpoints (github.com/GuoleiSun/TSNs) as runs of this suite.

``python -m tsn import-official FILE [FILE ...] --out RUN_DIR`` reads the official state dict, renames every tensor
by the table below (one row per official module-name pattern, each row usable in both directions), checks that
every official key is used, every key of our model is filled and every shape is equal, and writes
RUN_DIR/checkpoint.pt in the format ``python -m tsn eval`` reads.

What was checked in the official code (model.py, test.py, test-single-task.py of the authors' repository):

- TSN is ``ResNetUNet2_2(21, dim_latent=100)`` with ``n_fc=8``. Encoder: torchvision ResNet-18 children as
  ``layer0`` = (conv1, bn1, relu), ``layer1`` = (maxpool, layer1), ``layer2..4``; ours: ``encoder.stages.0..4``
  with the same Sequential structure, so the inner names are equal.
- Module A (``convrelu``): ``conv1`` (bias), InstanceNorm2d (eps 1e-5, no affine, no running stats: no state),
  ``style1.transform.linear`` (FC_A, gamma first then beta, gamma bias initialised to 1), LeakyReLU(0.01).
  Blocks ``layer{j}_1x1`` are our ``decoder.skips.{j}``, ``conv_up{j}`` (input [upsampled, skip]) our
  ``decoder.ups.{j}``, ``conv_original_size2`` our ``decoder.full``; widths equal (18,258,805 parameters).
- Equalised learning rate: the official ``ScaleW`` hook stores the raw weight as ``weight_orig`` and uses
  ``weight_orig * sqrt(2 / fan_in)`` with fan_in = in_features (the bias is not scaled); our ``EqualLinear`` stores
  the raw weight as ``weight`` and applies the same factor in forward. So no tensor needs a transform: every
  tensor is copied as it is (no transposes either: all layers are the same torch layer types).
- C (``fcs.mapping``): PixelNorm (eps 1e-8) at index 0, then SLinear + LeakyReLU(0.2) pairs at odd indices; ours
  ``embedding_net`` has the same indices.
- Head: ``conv_last.0`` = Conv2d(64, 21, 1); test.py reads parts / normals / edge / saliency by adaptive average
  pooling over the channel axis (21 -> 7, 3, 1), as our shared head does.
- Task codes are not in the checkpoint: test.py builds block one-hot codes, 20 ones per task at
  seg 0, parts 1, edges 2, normals 3, saliency 4 (d = 100), which is our ``orthogonal`` encoding in our PASCAL
  task order (semseg, parts, edge, normals, saliency); :data:`OFFICIAL_CODE_BLOCKS` records it and the import
  checks it, so no codes file is needed.
- Single-task networks (``single_task_{seg,parts,edges,normals,saliency}.pth``) are ``ResNetUNet2_2_no_adain(C)``:
  the same encoder and block names, each block ``conv1`` + InstanceNorm2d(affine) ``bn1`` + ReLU, head
  ``conv_last.0`` of the task's channels (21, 7, 1, 3, 1); ours: one ``nets.{task}`` of the ``single_task``
  architecture each. Several files make one ``single_task`` run over their tasks.
- The released files are read by test.py as ``checkpoint["model_state"]``; a bare state dict, other wrapper keys
  and DataParallel's ``module.`` prefix are accepted as well.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CHECKPOINT, save_checkpoint
from .config import RunConfig, config_hash, resolve
from .encodings import orthogonal_codes
from .errors import first_line
from .models import build_model
from .tasks import dataset_tasks

DATASET = "pascal_context"
# The official task names (test.py, file names of the released single-task models) -> ours.
OFFICIAL_TASKS = {"seg": "semseg", "parts": "parts", "edges": "edge", "normals": "normals", "saliency": "saliency"}
# test.py's task codes: task k has ones at [20 k, 20 (k + 1)) of a 100-d vector.
OFFICIAL_CODE_BLOCKS = ("seg", "parts", "edges", "normals", "saliency")
OFFICIAL_EMBEDDING_DIM = 100
OURS_ONLY = ("task_codes",)  # TSN's task codes: built by test.py, not stored in the official checkpoint
WRAPPER_KEYS = ("model_state", "state_dict", "model", "net")
DATA_PARALLEL_PREFIX = "module."
SINGLE_TASK_FILE = re.compile(r"single_task_(?P<task>[a-z]+)\.pth?")

# Name patterns: {j} one digit, {i} a number, {p} weight or bias, {rest} any dotted tail.
PLACEHOLDERS = {"j": r"\d", "i": r"\d+", "p": r"weight|bias", "rest": r".+"}
ENCODER = ("layer{j}.{rest}", "encoder.stages.{j}.{rest}")
DECODER_BLOCKS = (("layer{j}_1x1", "skips.{j}"), ("conv_up{j}", "ups.{j}"), ("conv_original_size2", "full"))
TSN_BLOCK_PARAMS = (
    ("conv1.{p}", "conv.{p}"),
    ("style1.transform.linear.weight_orig", "norm.fc.weight"),
    ("style1.transform.linear.bias", "norm.fc.bias"),
)
SINGLE_TASK_BLOCK_PARAMS = (("conv1.{p}", "conv.{p}"), ("bn1.{p}", "norm.{p}"))


def _decoder_rows(decoder: str, params: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"{block}.{param}", f"{decoder}.{ours}.{our_param}")
        for block, ours in DECODER_BLOCKS
        for param, our_param in params
    )


TSN_TABLE = (
    ENCODER,
    *_decoder_rows("decoder", TSN_BLOCK_PARAMS),
    ("fcs.mapping.{i}.linear.weight_orig", "embedding_net.{i}.weight"),
    ("fcs.mapping.{i}.linear.bias", "embedding_net.{i}.bias"),
    ("conv_last.0.{p}", "head.conv.{p}"),
)


def single_task_table(task: str) -> tuple[tuple[str, str], ...]:
    """One official single-task network -> ``nets.{task}`` of our ``single_task`` architecture."""
    rows = (
        ENCODER,
        *_decoder_rows(f"decoders.{task}", SINGLE_TASK_BLOCK_PARAMS),
        ("conv_last.0.{p}", f"head.convs.{task}.{{p}}"),
    )
    return tuple((official, f"nets.{task}.{ours}") for official, ours in rows)


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)  # literal, name, literal, name, ...
    regex = "".join(re.escape(p) if k % 2 == 0 else f"(?P<{p}>{PLACEHOLDERS[p]})" for k, p in enumerate(parts))
    return re.compile(regex)


class NameMap:
    """A table of (official template, our template) rows, applied by full match in either direction."""

    def __init__(self, table: Sequence[tuple[str, str]]) -> None:
        self.rows = [(_pattern(official), official, _pattern(ours), ours) for official, ours in table]

    def to_ours(self, name: str) -> str | None:
        for official_re, _, _, ours in self.rows:
            match = official_re.fullmatch(name)
            if match:
                return ours.format(**match.groupdict())
        return None

    def to_official(self, name: str) -> str | None:
        for _, official, ours_re, _ in self.rows:
            match = ours_re.fullmatch(name)
            if match:
                return official.format(**match.groupdict())
        return None


class OfficialCheckpointError(ValueError):
    """An official checkpoint that cannot be read or does not fit our model; the message is one line."""


@dataclass(frozen=True)
class OfficialFile:
    path: Path
    state: dict[str, torch.Tensor]
    epoch: int | None
    sha256: str

    @property
    def layout(self) -> str:
        """``tsn`` when the file has the embedding network C, else ``single_task``."""
        return "tsn" if any(k.startswith("fcs.") for k in self.state) else "single_task"


def read_official(path: str | Path) -> OfficialFile:
    """Load an official checkpoint with ``weights_only=True`` and unwrap its state dict.

    Training scripts often save their argparse arguments beside the weights: ``argparse.Namespace`` is allowed
    (a plain attribute bag); any other object is refused, never unpickled."""
    file = Path(path)
    if not file.is_file():
        raise OfficialCheckpointError(f"official checkpoint not found: {file}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt file, or a pickle with objects beyond tensors
        raise OfficialCheckpointError(f"cannot read official checkpoint {file}: {first_line(err)}") from None
    outer = loaded if isinstance(loaded, Mapping) else {}
    state: Any = loaded
    for key in WRAPPER_KEYS:
        if isinstance(outer.get(key), Mapping):
            state = outer[key]
            break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OfficialCheckpointError(
            f"{file} holds no state dict of tensors (looked at the file itself and the keys {', '.join(WRAPPER_KEYS)})"
        )
    state = dict(state)
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in state.items()}
    epoch = outer.get("epoch")
    return OfficialFile(file, state, epoch if isinstance(epoch, int) else None, _sha256(file))


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def map_state(
    official: Mapping[str, torch.Tensor], names: NameMap, ours: Mapping[str, torch.Tensor], source: str
) -> dict[str, torch.Tensor]:
    """Rename ``official`` into ``ours``'s keys; raise one line unless every key on both sides fits exactly.

    Keys in :data:`OURS_ONLY` (buffers the official model does not have) are left to the caller.
    """
    mapped: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    misshapen: dict[str, str] = {}  # our key -> description
    for key, value in official.items():
        target = names.to_ours(key)
        if target is None or target not in ours or target in mapped or target in OURS_ONLY:
            unexpected.append(key)
        elif value.shape != ours[target].shape:
            misshapen[target] = f"{key} {tuple(value.shape)} (ours {tuple(ours[target].shape)})"
        else:
            mapped[target] = value
    missing = [k for k in ours if k not in mapped and k not in misshapen and k not in OURS_ONLY]
    if missing or unexpected or misshapen:
        first = [f"first missing: {names.to_official(missing[0])} (our {missing[0]})"] if missing else []
        first += [f"first unexpected: {unexpected[0]}"] if unexpected else []
        first += [f"first misshapen: {next(iter(misshapen.values()))}"] if misshapen else []
        raise OfficialCheckpointError(
            f"{source} does not fit our model: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(misshapen)} misshapen keys; {'; '.join(first)}"
        )
    return mapped


def official_config(architecture: str, tasks: Sequence[str], overrides: Sequence[str] = ()) -> RunConfig:
    """The ``paper`` budget with the official model: ResNet-18, paper widths, d = 100, orthogonal codes.

    The encoder comes from the checkpoint (no pretrained weights are loaded), and evaluation runs in float32
    (``train.amp: false``) as the official test.py does. ``overrides`` (e.g. ``data.root=...``) come last.
    """
    extra = {
        "model": {
            "architecture": architecture,
            "backbone": "resnet18",
            "pretrained": "none",  # every weight comes from the checkpoint
            "decoder_width": 1.0,
            "encoding": "orthogonal",
            "embedding_dim": OFFICIAL_EMBEDDING_DIM,
            "n_fc": 8,
            "head": "shared" if architecture == "tsn" else "per_task",
        },
        "data": {"dataset": DATASET, "tasks": list(tasks)},
        "train": {"amp": False},
    }
    return resolve("paper", None, overrides, extra)


def _check_codes(codes: torch.Tensor, task_names: Sequence[str]) -> None:
    """Our codes must be test.py's (they are not stored in the official checkpoint)."""
    official = orthogonal_codes(len(OFFICIAL_CODE_BLOCKS), OFFICIAL_EMBEDDING_DIM)
    rows = {OFFICIAL_TASKS[t]: official[k] for k, t in enumerate(OFFICIAL_CODE_BLOCKS)}
    expected = torch.stack([rows[t] for t in task_names])
    if not torch.equal(codes, expected):
        raise OfficialCheckpointError("our task codes differ from the official test.py's; set model.codes_file")


def _single_task_name(file: OfficialFile, task: str | None) -> str:
    """The task of a single-task file: ``task`` (ours or official name), else the official file name."""
    if task is None:
        match = SINGLE_TASK_FILE.fullmatch(file.path.name)
        task = match.group("task") if match else None
        if task is None:
            raise OfficialCheckpointError(
                f"cannot tell the task of single-task checkpoint {file.path}: name it single_task_TASK.pth "
                f"(TASK one of {', '.join(OFFICIAL_TASKS)}) or pass --task"
            )
    name = OFFICIAL_TASKS.get(task, task)
    if name not in OFFICIAL_TASKS.values():
        raise OfficialCheckpointError(f"unknown task {task!r} for {file.path}; valid: {', '.join(OFFICIAL_TASKS)}")
    return name


def _plan(files: Sequence[OfficialFile], task: str | None) -> tuple[str, dict[str, OfficialFile]]:
    """The architecture and which file fills which task (TSN: one file for all tasks)."""
    layouts = {f.layout for f in files}
    if "tsn" in layouts:
        if len(files) > 1:
            raise OfficialCheckpointError("a TSN checkpoint is the whole model: give it alone")
        return "tsn", {t: files[0] for t in dataset_tasks(DATASET).names}
    if task is not None and len(files) > 1:
        raise OfficialCheckpointError("--task names the task of ONE single-task checkpoint; give one file")
    by_task: dict[str, OfficialFile] = {}
    for file in files:
        name = _single_task_name(file, task)
        if name in by_task:
            raise OfficialCheckpointError(f"two single-task checkpoints for {name}: {by_task[name].path}, {file.path}")
        by_task[name] = file
    order = dataset_tasks(DATASET).names
    return "single_task", {t: by_task[t] for t in order if t in by_task}


def import_official(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    task: str | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Write ``out_dir/checkpoint.pt`` from official checkpoint file(s); return its path."""
    files = [read_official(p) for p in paths]
    architecture, by_task = _plan(files, task)
    cfg = official_config(architecture, list(by_task), overrides)
    tasks = dataset_tasks(cfg.data.dataset, cfg.data.tasks)
    model = build_model(cfg.model, tasks)
    ours = model.state_dict()
    if architecture == "tsn":
        state = map_state(files[0].state, NameMap(TSN_TABLE), ours, str(files[0].path))
        _check_codes(model.task_codes, tasks.names)
    else:
        state = {}
        for name, file in by_task.items():
            part = {k: v for k, v in ours.items() if k.startswith(f"nets.{name}.")}
            state.update(map_state(file.state, NameMap(single_task_table(name)), part, str(file.path)))
    model.load_state_dict({**ours, **state}, strict=True)  # buffers that are ours alone (task codes) stay
    epochs = {f.epoch for f in files}
    target = Path(out_dir) / CHECKPOINT
    save_checkpoint(
        target,
        {
            "model": model.state_dict(),
            "epoch": epochs.pop() if len(epochs) == 1 else None,
            "history": [],
            "config": cfg.to_dict(),
            "config_hash": config_hash(cfg),
            "official": {
                "files": [str(f.path) for f in files],
                "sha256": [f.sha256 for f in files],
                "layout": architecture,
            },
        },
    )
    return target
