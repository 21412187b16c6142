"""The model zoo: shapes, the paper's parameter counts, module A, task switching, encoder-once equivalence."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tsn import params
from tsn.encodings import gaussian_codes, orthogonal_codes
from tsn.layers import AdaIN, EqualLinear, PixelNorm, TaskContext, TaskEmbeddingNet
from tsn.models import ARCHITECTURES, ModelConfig, build_model
from tsn.params import count_macs, count_parameters, meta_model, scaling_table
from tsn.tasks import dataset_tasks

SMALL = dict(backbone="compact", decoder_width=0.25, embedding_dim=60, n_fc=2)  # 60 = 4·15 = 5·12 = 6·10


def small_model(arch: str, dataset: str = "pascal_context", **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(architecture=arch, **{**SMALL, **overrides})
    return build_model(cfg, dataset_tasks(dataset))


@pytest.mark.parametrize("dataset", ["pascal_context", "nyud", "synthetic"])
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_architecture_predicts_every_task_at_full_resolution(arch: str, dataset: str) -> None:
    model = small_model(arch, dataset)
    x = torch.randn(2, 3, 64, 48)
    for task in model.tasks.tasks:
        assert model(x, task.name).shape == (2, task.channels, 64, 48)


@pytest.mark.parametrize(
    "arch, expected",
    [
        ("tsn", 18_258_805),
        ("single_task", 88_645_345),
        ("multi_decoder", 43_939_297),
        ("task_in", 17_747_925),
        ("task_bn", 17_747_925),
    ],
)
def test_parameter_counts_are_the_papers(arch: str, expected: int) -> None:
    cfg = ModelConfig(architecture=arch, backbone="resnet18", embedding_dim=100)
    assert count_parameters(meta_model(cfg, dataset_tasks("pascal_context"))) == expected


def test_paper_counts_decompose_as_in_the_reference() -> None:
    model = meta_model(ModelConfig(), dataset_tasks("pascal_context"))
    assert count_parameters(model.encoder) == 11_176_512
    fc_a = sum(count_parameters(m.norm) for m in model.decoder.modules() if hasattr(m, "norm"))
    assert fc_a == 2 * 2240 * 101
    assert count_parameters(model.embedding_net) == 8 * (100 * 100 + 100)
    assert count_parameters(model.head) == 64 * 21 + 21


def test_tsn_parameters_do_not_grow_with_the_number_of_tasks() -> None:
    table = scaling_table(ModelConfig(), dataset_tasks("pascal_context"), range(1, 10), list(ARCHITECTURES))
    assert set(table["tsn"].values()) == {18_258_805}
    per_task_norms = [table["task_in"][t + 1] - table["task_in"][t] for t in range(1, 9)]
    assert per_task_norms == [4480] * 8  # 2 x 2240 affine parameters per added task
    assert table["single_task"][9] > 8 * table["single_task"][1]


def test_module_a_matches_the_formula_by_hand() -> None:
    torch.manual_seed(1)
    norm = AdaIN(channels=4, num_tasks=3, embedding_dim=5).double()  # float64: the formula and the layer agree
    with torch.no_grad():
        norm.fc.bias.normal_()
    x = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    embeddings = torch.randn(3, 5, dtype=torch.float64)
    ctx = TaskContext.for_blocks([2, 0], 1, torch.device("cpu"), embeddings)
    out = norm(x, ctx)
    for b, task in enumerate([2, 0]):
        style = embeddings[task] @ (norm.fc.weight * math.sqrt(2 / 5)).T + norm.fc.bias
        gamma, beta = style[:4], style[4:]
        mu = x[b].mean(dim=(1, 2), keepdim=True)
        var = x[b].var(dim=(1, 2), unbiased=False, keepdim=True)
        expected = gamma[:, None, None] * (x[b] - mu) / torch.sqrt(var + 1e-5) + beta[:, None, None]
        torch.testing.assert_close(out[b], expected, rtol=1e-10, atol=1e-10)


def test_adain_gamma_bias_starts_at_one_and_beta_bias_at_zero() -> None:
    norm = AdaIN(channels=3, num_tasks=2, embedding_dim=4)
    assert norm.fc.bias.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_equal_linear_scales_weights_at_run_time() -> None:
    layer = EqualLinear(8, 2)
    x = torch.randn(3, 8)
    torch.testing.assert_close(layer(x), x @ (layer.weight.T * math.sqrt(2 / 8)))


def test_pixel_norm_gives_unit_rms_codes() -> None:
    out = PixelNorm()(torch.tensor([[3.0, 4.0, 0.0, 0.0]]))
    torch.testing.assert_close(out.pow(2).mean(), torch.tensor(1.0))


def test_embedding_network_shape() -> None:
    net = TaskEmbeddingNet(dim=6, n_fc=8)
    assert sum(isinstance(m, EqualLinear) for m in net) == 8
    assert net(torch.randn(4, 6)).shape == (4, 6)


def test_orthogonal_codes_are_block_one_hot() -> None:
    codes = orthogonal_codes(3, 6)
    assert codes.tolist() == [[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]]


def test_gaussian_codes_are_fixed_by_the_seed() -> None:
    torch.manual_seed(123)
    a = gaussian_codes(5, 50, seed=7)
    torch.manual_seed(456)
    assert torch.equal(a, gaussian_codes(5, 50, seed=7))
    assert not torch.equal(a, gaussian_codes(5, 50, seed=8))


def test_task_codes_are_buffers_not_parameters() -> None:
    model = small_model("tsn")
    assert "task_codes" in dict(model.named_buffers())
    assert all("task_codes" not in name for name, _ in model.named_parameters())


def test_switching_the_task_changes_tsn_output() -> None:
    model = small_model("tsn").eval()
    x = torch.randn(2, 3, 64, 64)
    # The same head channels (edge and saliency both pool 21 -> 1), different task embeddings.
    assert not torch.allclose(model(x, "edge"), model(x, "saliency"))


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_every_parameter_receives_a_gradient(arch: str) -> None:
    model = small_model(arch)
    x = torch.randn(2, 3, 64, 64)
    loss = sum(out.square().mean() for out in model.forward_tasks(x).values())
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_gradient_reaches_the_embedding_network_and_encoder() -> None:
    model = small_model("tsn")
    model(torch.randn(2, 3, 64, 64), "normals").mean().backward()
    assert model.embedding_net[1].weight.grad.abs().sum() > 0
    assert model.encoder.stages[0][0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("arch", list(ARCHITECTURES))
@pytest.mark.parametrize("train_mode", [False, True])
def test_encoder_once_prediction_equals_per_task_predictions(arch: str, train_mode: bool) -> None:
    model = small_model(arch).train(train_mode).double()  # float64: the paths agree to rounding on any CPU
    x = torch.randn(3, 3, 64, 64, dtype=torch.float64)
    tasks = ["normals", "semseg", "edge"]
    features = model.encode(x)
    variants = [model.decode_tasks(features, tasks)]
    if hasattr(model, "decode_blocks"):  # the one-decoder architectures: all tasks in one decoder batch too
        variants.append(model.decode_tasks(features, tasks, batched=True))
    for together in variants:
        for task in tasks:
            torch.testing.assert_close(together[task], model(x, task), rtol=1e-10, atol=1e-10)


def test_task_bn_keeps_running_statistics_per_task() -> None:
    model = small_model("task_bn").train()
    model(torch.randn(2, 3, 64, 64), "edge")
    norm = model.decoder.skips[0].norm
    edge = model.task_ids["edge"]
    touched = (norm.running_mean != 0).any(dim=1).tolist()
    assert touched == [k == edge for k in range(len(model.task_names))]


def test_shared_head_pools_channels_per_task() -> None:
    model = small_model("tsn")
    raw = torch.arange(21.0).view(1, 21, 1, 1).expand(1, 21, 2, 2)
    with torch.no_grad():
        model.head.conv.weight.zero_()
        model.head.conv.bias.copy_(torch.arange(21.0))
    feat = torch.zeros(1, model.head.conv.in_channels, 2, 2)
    parts = model.head(feat, "parts")
    assert parts[0, :, 0, 0].tolist() == [1.0, 4.0, 7.0, 10.0, 13.0, 16.0, 19.0]
    assert model.head(feat, "edge")[0, 0, 0, 0].item() == pytest.approx(raw.mean().item())


def test_per_task_head_option() -> None:
    model = small_model("tsn", head="per_task")
    assert set(model.head.convs) == set(model.task_names)


@pytest.mark.parametrize("backbone, f5", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_resnet_backbones_give_five_stages_at_strides_2_to_32(backbone: str, f5: int) -> None:
    model = meta_model(ModelConfig(architecture="task_in", backbone=backbone), dataset_tasks("nyud"))
    features = model.encode(torch.zeros(1, 3, 64, 64, device="meta"))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]
    assert features[-1].shape[1] == f5


def test_pretrained_weights_load_from_a_local_file(tmp_path) -> None:
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model(ModelConfig(pretrained=str(path)), dataset_tasks("pascal_context"))
    assert torch.equal(model.encoder.stages[4][0].conv1.weight, reference.layer4[0].conv1.weight)


def test_pretrained_weights_that_do_not_fit_are_a_clear_error(tmp_path) -> None:
    import torchvision

    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit the encoder"):
        build_model(ModelConfig(pretrained=str(path)), dataset_tasks("pascal_context"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        build_model(ModelConfig(pretrained=str(tmp_path / "missing.pth")), dataset_tasks("pascal_context"))


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(architecture="tsm"), "unknown architecture 'tsm'; valid: ['tsn', 'task_in'"),
        (dict(embedding_dim=52), "divisible by the number of tasks (5); got 52, valid: 5, 10"),
        (dict(encoding="uniform"), "unknown task encoding 'uniform'; valid: ['orthogonal', 'gaussian']"),
        (dict(backbone="vgg"), "unknown backbone 'vgg'; valid: ['compact', 'resnet18'"),
        (dict(head="mlp"), "unknown head 'mlp'; valid: ['per_task', 'shared']"),
    ],
)
def test_bad_configuration_is_a_one_line_error_naming_valid_values(cfg: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_model(ModelConfig(**cfg), dataset_tasks("pascal_context"))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_task_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'depth' for dataset 'pascal_context'; valid: \['semseg'"):
        dataset_tasks("pascal_context", ["semseg", "depth"])
    with pytest.raises(ValueError, match="unknown task 'depth'; this model serves"):
        small_model("tsn")(torch.zeros(1, 3, 64, 64), "depth")


def test_gaussian_codes_allow_any_dimension() -> None:
    model = small_model("tsn", encoding="gaussian", embedding_dim=7)
    assert model.task_codes.shape == (5, 7)


def test_params_cli_json_gives_the_papers_counts(tsn_cli) -> None:
    code, out, err = tsn_cli(
        "params", "--dataset", "pascal_context", "--backbone", "resnet18", "--embedding-dim", "100", "--json"
    )
    assert code == 0, err
    assert json.loads(out) == {
        "tsn": 18_258_805,
        "task_in": 17_747_925,
        "task_bn": 17_747_925,
        "multi_decoder": 43_939_297,
        "single_task": 88_645_345,
    }


@pytest.mark.parametrize(
    "arch, head, training",
    [(arch, None, True) for arch in ARCHITECTURES] + [("task_bn", None, False), ("tsn", "per_task", True)],
)
def test_mac_count_skipping_the_meta_kernels_of_norms_and_upsampling_equals_the_flop_counters(
    arch: str, head: str | None, training: bool
) -> None:
    model = meta_model(ModelConfig(architecture=arch, head=head, **SMALL), dataset_tasks("pascal_context"))
    model.train(training)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_tasks(torch.zeros(1, 3, 64, 64, device="meta"), None)
    assert count_macs(model, 64) == counter.get_total_flops() // 2 > 0


def test_macs_per_image_counts_each_model_definition_once(monkeypatch) -> None:
    counted = []
    monkeypatch.setattr(params, "_MACS", {})
    monkeypatch.setattr(params, "count_macs", lambda model, size: counted.append(size) or count_macs(model, size))
    tasks, tsn = dataset_tasks("synthetic"), ModelConfig(**SMALL)
    first = params.macs_per_image(tsn, tasks, 64)
    assert first == count_macs(meta_model(tsn, tasks), 64) and counted == [64]
    assert params.macs_per_image(replace(tsn, pretrained="imagenet"), tasks, 64) == first and counted == [64]
    assert params.macs_per_image(tsn, tasks, 128) > first and counted == [64, 128]  # another size, another count
    assert params.macs_per_image(tsn, tasks.subset(["semseg"]), 64) < first  # another task set
    assert params.macs_per_image(replace(tsn, architecture="single_task"), tasks, 64) > first
    assert len(counted) == 4


def test_params_cli_reports_macs_and_scaling(tsn_cli) -> None:
    code, table, _ = tsn_cli("params", "--backbone", "compact", "--decoder-width", "0.25", "--image-size", "64")
    assert code == 0 and "GMACs/image" in table and "tsn" in table
    code, scaling, _ = tsn_cli("params", "--tasks-range", "1-3", "--json", "--architectures", "tsn", "single_task")
    counts = json.loads(scaling)
    assert code == 0 and counts["tsn"] == {"1": 18_258_805, "2": 18_258_805, "3": 18_258_805}
    assert counts["single_task"]["3"] > 3 * 17_000_000


def test_params_cli_bad_input_exits_2_with_one_line(tsn_cli) -> None:
    code, out, err = tsn_cli("params", "--embedding-dim", "52")
    assert code == 2 and out == ""
    assert err.strip().count("\n") == 0 and "divisible" in err
    assert "Traceback" not in err
