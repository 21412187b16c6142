"""`python -m tsn import-official`: the authors' released PASCAL-Context checkpoints as runs of this suite.

Official-layout state dicts are generated from our model through the inverse of the name table, with random
values, and checked against names and shapes written here by hand from the official model.py, so a wrong table
fails. A functional re-implementation of the official forward pass (model.py, test.py) on the official state
dict must give our imported model's outputs.
"""

from __future__ import annotations

import argparse
import datetime
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from tsn.__main__ import main
from tsn.checkpoint import load_checkpoint
from tsn.config import from_dict
from tsn.models import build_model
from tsn.official import DATASET, TSN_TABLE, NameMap, official_config, single_task_table
from tsn.tasks import dataset_tasks

# From the official model.py: ResNetUNet2_2(21, dim_latent=100) (TSN) and ResNetUNet2_2_no_adain(7) (parts).
OFFICIAL_TSN_SHAPES = {
    "layer0.0.weight": (64, 3, 7, 7),
    "layer0.1.running_var": (64,),
    "layer1.1.0.conv1.weight": (64, 64, 3, 3),
    "layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "layer4.1.bn2.num_batches_tracked": (),
    "layer0_1x1.conv1.weight": (64, 64, 1, 1),
    "layer4_1x1.style1.transform.linear.weight_orig": (1024, 100),
    "conv_up3.conv1.weight": (512, 768, 3, 3),
    "conv_up2.conv1.weight": (256, 640, 3, 3),
    "conv_up1.conv1.weight": (256, 320, 3, 3),
    "conv_up0.conv1.weight": (128, 320, 3, 3),
    "conv_up0.style1.transform.linear.bias": (256,),
    "conv_original_size2.conv1.weight": (64, 128, 3, 3),
    "conv_original_size2.style1.transform.linear.weight_orig": (128, 100),
    "fcs.mapping.1.linear.weight_orig": (100, 100),
    "fcs.mapping.15.linear.bias": (100,),
    "conv_last.0.weight": (21, 64, 1, 1),
    "conv_last.0.bias": (21,),
}
OFFICIAL_PARTS_SHAPES = {
    "layer0.0.weight": (64, 3, 7, 7),
    "layer3.1.conv2.weight": (256, 256, 3, 3),
    "layer0_1x1.bn1.weight": (64,),
    "conv_up3.bn1.bias": (512,),
    "conv_original_size2.conv1.weight": (64, 128, 3, 3),
    "conv_last.0.weight": (7, 64, 1, 1),
}
RESNET18_KEYS = 120  # torchvision resnet18's state dict without fc
# test.py's codes: 20 ones per task, blocks in this order.
OFFICIAL_CODE_ORDER = {"semseg": 0, "parts": 1, "edge": 2, "normals": 3, "saliency": 4}


def _official_state(architecture: str, tasks: tuple[str, ...], table, seed: int) -> dict[str, torch.Tensor]:
    """Random values in the official layout, named through the inverse of ``table``."""
    model = build_model(official_config(architecture, tasks).model, dataset_tasks(DATASET, tasks))
    names, gen = NameMap(table), torch.Generator().manual_seed(seed)
    state = {}
    for key, value in model.state_dict().items():
        official = names.to_official(key)
        if official is None:
            continue
        if not value.is_floating_point():
            state[official] = torch.randint(0, 1000, value.shape, generator=gen)
        elif key.endswith("running_var"):
            state[official] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            state[official] = 0.1 * torch.randn(value.shape, generator=gen)
    return state


@pytest.fixture(scope="module")
def tsn_state() -> dict[str, torch.Tensor]:
    return _official_state("tsn", dataset_tasks(DATASET).names, TSN_TABLE, seed=0)


@pytest.fixture(scope="module")
def parts_state() -> dict[str, torch.Tensor]:
    return _official_state("single_task", ("parts",), single_task_table("parts"), seed=1)


def _import(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["import-official", *map(str, args)])
    return rc, capsys.readouterr().err


def _imported_model(path: Path) -> torch.nn.Module:
    state = load_checkpoint(path)
    cfg = from_dict(state["config"])  # what `python -m tsn eval` rebuilds
    model = build_model(cfg.model, dataset_tasks(cfg.data.dataset, cfg.data.tasks))
    model.load_state_dict(state["model"])
    return model.eval()


def test_official_layout_matches_the_official_model_code(tsn_state, parts_state) -> None:
    for state, expected in ((tsn_state, OFFICIAL_TSN_SHAPES), (parts_state, OFFICIAL_PARTS_SHAPES)):
        assert {k: tuple(state[k].shape) for k in expected} == expected
    assert len(tsn_state) == RESNET18_KEYS + 10 * 4 + 8 * 2 + 2
    assert sorted(k for k in tsn_state if k.startswith("fcs.")) == sorted(
        f"fcs.mapping.{i}.linear.{p}" for i in range(1, 16, 2) for p in ("weight_orig", "bias")
    )
    assert len(parts_state) == RESNET18_KEYS + 10 * 4 + 2 and not any(k.startswith("fcs.") for k in parts_state)
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(v.numel() for k, v in tsn_state.items() if not k.endswith(buffers)) == 18_258_805  # the paper's


def _official_tsn_forward(state: dict[str, torch.Tensor], x: torch.Tensor, task: str, channels: int) -> torch.Tensor:
    """model.py's ResNetUNet2_2.forward and test.py's codes and channel pooling, written on the raw state dict."""
    resnet = torchvision.models.resnet18(weights=None).double().eval()
    renamed = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head == "layer0":
            index, _, name = rest.partition(".")
            renamed[f"{('conv1', 'bn1')[int(index)]}.{name}"] = value
        elif head == "layer1":
            renamed[f"layer1.{rest.partition('.')[2]}"] = value
        elif head in ("layer2", "layer3", "layer4"):
            renamed[key] = value
    resnet.load_state_dict({**resnet.state_dict(), **renamed})

    def linear(name: str, v: torch.Tensor) -> torch.Tensor:
        weight = state[f"{name}.weight_orig"]
        return F.linear(v, weight * math.sqrt(2 / weight.shape[1]), state[f"{name}.bias"])

    code = torch.zeros(1, 100, dtype=torch.float64)
    block = OFFICIAL_CODE_ORDER[task]
    code[:, 20 * block : 20 * (block + 1)] = 1
    w = code / torch.sqrt(torch.mean(code**2, dim=1, keepdim=True) + 1e-8)
    for i in range(1, 16, 2):
        w = F.leaky_relu(linear(f"fcs.mapping.{i}.linear", w), 0.2)

    def convrelu(name: str, v: torch.Tensor) -> torch.Tensor:
        weight = state[f"{name}.conv1.weight"]
        v = F.conv2d(v, weight, state[f"{name}.conv1.bias"], padding=weight.shape[-1] // 2)
        gamma, beta = linear(f"{name}.style1.transform.linear", w).chunk(2, 1)
        return F.leaky_relu(F.instance_norm(v) * gamma[..., None, None] + beta[..., None, None], 0.01)

    def up(v: torch.Tensor) -> torch.Tensor:
        return F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=True)

    l0 = resnet.relu(resnet.bn1(resnet.conv1(x)))
    l1 = resnet.layer1(resnet.maxpool(l0))
    l2 = resnet.layer2(l1)
    l3 = resnet.layer3(l2)
    l4 = resnet.layer4(l3)
    out = up(convrelu("layer4_1x1", l4))
    out = up(convrelu("conv_up3", torch.cat([out, convrelu("layer3_1x1", l3)], 1)))
    out = up(convrelu("conv_up2", torch.cat([out, convrelu("layer2_1x1", l2)], 1)))
    out = up(convrelu("conv_up1", torch.cat([out, convrelu("layer1_1x1", l1)], 1)))
    out = up(convrelu("conv_up0", torch.cat([out, convrelu("layer0_1x1", l0)], 1)))
    out = F.conv2d(convrelu("conv_original_size2", out), state["conv_last.0.weight"], state["conv_last.0.bias"])
    return F.adaptive_avg_pool3d(out.unsqueeze(1), (channels, *out.shape[-2:])).squeeze(1)


def test_tsn_checkpoint_imports_every_tensor_in_place_and_predicts_as_the_official_model(
    tsn_state, tmp_path, capsys
) -> None:
    source = tmp_path / "tsns_model.pth"
    torch.save({"model_state": tsn_state, "epoch": 129}, source)
    rc, err = _import(capsys, source, "data.root=/data/PASCAL", "--out", tmp_path / "run")
    assert rc == 0, err
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    cfg = from_dict(saved["config"])
    assert (cfg.model.architecture, cfg.model.backbone, cfg.model.embedding_dim, cfg.model.encoding) == (
        "tsn",
        "resnet18",
        100,
        "orthogonal",
    )
    assert (cfg.data.dataset, cfg.data.root, cfg.model.pretrained, saved["epoch"]) == (
        "pascal_context",
        "/data/PASCAL",
        "none",
        129,
    )
    ours = saved["model"]
    names = NameMap(TSN_TABLE)
    assert all(torch.equal(ours[names.to_ours(k)], v) for k, v in tsn_state.items())
    for official, our in [
        ("conv_last.0.weight", "head.conv.weight"),
        ("fcs.mapping.3.linear.weight_orig", "embedding_net.3.weight"),
        ("layer1.1.0.conv1.weight", "encoder.stages.1.1.0.conv1.weight"),
        ("layer3_1x1.conv1.weight", "decoder.skips.3.conv.weight"),
        ("conv_up2.style1.transform.linear.bias", "decoder.ups.2.norm.fc.bias"),
        ("conv_original_size2.conv1.bias", "decoder.full.conv.bias"),
    ]:
        assert torch.equal(ours[our], tsn_state[official]), official
    assert set(ours) == {names.to_ours(k) for k in tsn_state} | {"task_codes"}
    for task, block in OFFICIAL_CODE_ORDER.items():
        ones = ours["task_codes"][cfg.data.tasks.index(task)].nonzero().flatten()
        assert torch.equal(ones, torch.arange(20) + 20 * block), task

    model = _imported_model(tmp_path / "run" / "checkpoint.pt").double()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    official64 = {k: v.double() if v.is_floating_point() else v for k, v in tsn_state.items()}
    with torch.no_grad():
        for task in model.tasks.tasks:
            out = model(x, task.name)
            assert out.shape == (2, task.channels, 64, 64) and torch.isfinite(out).all()
            expected = _official_tsn_forward(official64, x, task.name, task.channels)
            torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("wrap", ["bare", "state_dict+DataParallel"])
def test_wrapped_or_data_parallel_checkpoints_import(wrap, tsn_state, tmp_path, capsys) -> None:
    payload = tsn_state if wrap == "bare" else {"state_dict": {f"module.{k}": v for k, v in tsn_state.items()}}
    torch.save(payload, tmp_path / "tsn.pth")
    rc, err = _import(capsys, tmp_path / "tsn.pth", "--out", tmp_path / "run")
    assert rc == 0, err
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert torch.equal(saved["model"]["head.conv.bias"], tsn_state["conv_last.0.bias"]) and saved["epoch"] is None


def test_saved_arguments_are_read_and_any_other_object_is_refused_unread(tsn_state, tmp_path, capsys) -> None:
    torch.save({"model_state": tsn_state, "args": argparse.Namespace(lr=1e-4)}, tmp_path / "tsn.pth")
    rc, err = _import(capsys, tmp_path / "tsn.pth", "--out", tmp_path / "run")
    assert rc == 0, err
    torch.save({"model_state": tsn_state, "started": datetime.timedelta(days=1)}, tmp_path / "other.pth")
    rc, err = _import(capsys, tmp_path / "other.pth", "--out", tmp_path / "run2")
    assert rc == 2 and "cannot read official checkpoint" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run2").exists()


def _broken(state: dict[str, torch.Tensor], kind: str) -> tuple[dict[str, torch.Tensor], str]:
    state = dict(state)
    if kind == "missing":
        del state["conv_up2.conv1.weight"]
        return state, "conv_up2.conv1.weight"
    if kind == "unexpected":
        state["conv_up2.extra.weight"] = torch.zeros(3)
        return state, "conv_up2.extra.weight"
    state["conv_last.0.weight"] = torch.zeros(20, 64, 1, 1)
    return state, "conv_last.0.weight"


@pytest.mark.parametrize("kind", ["missing", "unexpected", "misshapen"])
def test_a_checkpoint_that_does_not_fit_is_one_line_naming_the_key(kind, tsn_state, tmp_path, capsys) -> None:
    state, key = _broken(tsn_state, kind)
    torch.save({"model_state": state}, tmp_path / "tsn.pth")
    rc, err = _import(capsys, tmp_path / "tsn.pth", "--out", tmp_path / "run")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert f"1 {kind}" in err and f"first {kind}: {key}" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_unreadable_or_non_state_dict_files_are_one_line(tmp_path, capsys) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    torch.save({"model_state": {"a": 1}}, tmp_path / "nodict.pth")
    for name, needle in (("junk.pth", "cannot read"), ("nodict.pth", "no state dict"), ("absent.pth", "not found")):
        rc, err = _import(capsys, tmp_path / name, "--out", tmp_path / "run")
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def _official_single_forward(state: dict[str, torch.Tensor], model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ResNetUNet2_2_no_adain's decoder (conv1 -> affine IN bn1 -> ReLU) on our encoder's features."""
    features = model.nets["parts"].encoder(x)

    def convrelu(name: str, v: torch.Tensor) -> torch.Tensor:
        weight = state[f"{name}.conv1.weight"]
        v = F.conv2d(v, weight, state[f"{name}.conv1.bias"], padding=weight.shape[-1] // 2)
        return F.relu(F.instance_norm(v, weight=state[f"{name}.bn1.weight"], bias=state[f"{name}.bn1.bias"]))

    def up(v: torch.Tensor) -> torch.Tensor:
        return F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=True)

    out = convrelu("layer4_1x1", features[4])
    for j in (3, 2, 1, 0):
        out = convrelu(f"conv_up{j}", torch.cat([up(out), convrelu(f"layer{j}_1x1", features[j])], 1))
    out = convrelu("conv_original_size2", up(out))
    return F.conv2d(out, state["conv_last.0.weight"], state["conv_last.0.bias"])


def test_single_task_checkpoints_import_by_file_name_or_task(parts_state, tmp_path, capsys) -> None:
    torch.save({"model_state": parts_state}, tmp_path / "single_task_parts.pth")
    rc, err = _import(capsys, tmp_path / "single_task_parts.pth", "--out", tmp_path / "run")
    assert rc == 0, err
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    config = saved["config"]
    assert config["model"]["architecture"] == "single_task" and tuple(config["data"]["tasks"]) == ("parts",)
    assert torch.equal(saved["model"]["nets.parts.head.convs.parts.weight"], parts_state["conv_last.0.weight"])
    skip0 = saved["model"]["nets.parts.decoders.parts.skips.0.norm.weight"]
    assert torch.equal(skip0, parts_state["layer0_1x1.bn1.weight"])
    model = _imported_model(tmp_path / "run" / "checkpoint.pt").double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    official64 = {k: v.double() if v.is_floating_point() else v for k, v in parts_state.items()}
    with torch.no_grad():
        out = model(x, "parts")
        assert out.shape == (1, 7, 64, 64) and torch.isfinite(out).all()
        torch.testing.assert_close(out, _official_single_forward(official64, model, x), rtol=1e-9, atol=1e-9)

    # A file not named as released needs --task; a saliency file given as parts does not fit (1 != 7 channels).
    torch.save({"model_state": parts_state}, tmp_path / "mine.pth")
    rc, err = _import(capsys, tmp_path / "mine.pth", "--out", tmp_path / "other")
    assert rc == 2 and "--task" in err
    rc, err = _import(capsys, tmp_path / "mine.pth", "--task", "parts", "--out", tmp_path / "other")
    assert rc == 0, err
    rc, err = _import(capsys, tmp_path / "mine.pth", "--task", "saliency", "--out", tmp_path / "bad")
    assert rc == 2 and "first misshapen: conv_last.0.weight" in err


def test_several_single_task_files_make_one_single_task_run(parts_state, tmp_path, capsys) -> None:
    saliency_state = _official_state("single_task", ("saliency",), single_task_table("saliency"), seed=2)
    torch.save({"model_state": saliency_state}, tmp_path / "single_task_saliency.pth")
    torch.save({"model_state": parts_state}, tmp_path / "single_task_parts.pth")
    files = (tmp_path / "single_task_saliency.pth", tmp_path / "single_task_parts.pth")
    rc, err = _import(capsys, *files, "--out", tmp_path / "run")
    assert rc == 0, err
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert tuple(saved["config"]["data"]["tasks"]) == ("parts", "saliency")  # the dataset's order
    for task, state in (("parts", parts_state), ("saliency", saliency_state)):
        names = NameMap(single_task_table(task))
        assert all(torch.equal(saved["model"][names.to_ours(k)], v) for k, v in state.items())
    rc, err = _import(capsys, *files, tmp_path / "single_task_parts.pth", "--out", tmp_path / "twice")
    assert rc == 2 and "two single-task checkpoints for parts" in err
