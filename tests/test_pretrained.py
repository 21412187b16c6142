"""Encoder weights: ImageNet through torchvision's weights API and the torch hub cache, local files, and the rule
that a nearly frozen ResNet encoder must not start from random weights by accident. Nothing touches the network."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision

from tsn.config import ConfigError, check_pretrained, resolve
from tsn.models import ModelConfig, build_model
from tsn.pretrained import OFFLINE_ENV, WeightsUnavailableError, ensure_imagenet_file, imagenet_file
from tsn.tasks import dataset_tasks

R18_FILE = "resnet18-f37072fd.pth"
R18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
# torchvision ResNet module -> StagedEncoder stage (F1 = conv1, bn1, relu; F2 = maxpool, layer1; F3..F5).
STAGE_OF = {
    "conv1.": "stages.0.0.",
    "bn1.": "stages.0.1.",
    "layer1.": "stages.1.1.",
    "layer2.": "stages.2.",
    "layer3.": "stages.3.",
    "layer4.": "stages.4.",
}


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty TORCH_HOME whose downloads fail the test unless a test replaces the download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(OFFLINE_ENV, raising=False)

    def no_network(url: str, *args, **kwargs) -> None:
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch"


def random_resnet18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(123)
    state = torchvision.models.resnet18(weights=None).state_dict()
    for value in state.values():  # BN statistics too, so that no tensor keeps its default value
        if value.is_floating_point():
            value.copy_(torch.randn_like(value))
    return state


def encoder_key(key: str) -> str:
    prefix = next(p for p in STAGE_OF if key.startswith(p))
    return STAGE_OF[prefix] + key[len(prefix) :]


def test_imagenet_file_is_the_enums_file_in_the_torch_hub_cache(torch_home: Path) -> None:
    assert imagenet_file("resnet18") == torch_home / "hub" / "checkpoints" / R18_FILE
    assert imagenet_file("resnet50").name == "resnet50-0676ba61.pth"


def test_encoder_starts_from_the_cached_imagenet_file_without_network(torch_home: Path) -> None:
    state = random_resnet18_state()
    (torch_home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, torch_home / "hub" / "checkpoints" / R18_FILE)
    model = build_model(ModelConfig(pretrained="imagenet"), dataset_tasks("pascal_context"))
    encoder = model.encoder.state_dict()
    expected = {encoder_key(k): v for k, v in state.items() if not k.startswith("fc.")}
    assert set(encoder) == set(expected)
    assert all(torch.equal(encoder[k], v) for k, v in expected.items())


def test_missing_weights_offline_name_the_file_the_folder_and_the_url(torch_home: Path, monkeypatch) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(WeightsUnavailableError) as err:
        build_model(ModelConfig(pretrained="imagenet"), dataset_tasks("pascal_context"))
    message = str(err.value)
    assert f"put {R18_FILE} (from {R18_URL}) into {torch_home / 'hub' / 'checkpoints'}" in message
    assert "\n" not in message


def test_a_failed_download_is_the_same_one_line_error(torch_home: Path, monkeypatch) -> None:
    def unreachable(url: str, *args, **kwargs) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", unreachable)
    with pytest.raises(ConfigError) as err:
        check_pretrained(resolve("paper", overrides=["data.dataset=synthetic"]))
    message = str(err.value)
    assert f"put {R18_FILE} (from {R18_URL}) into {torch_home / 'hub' / 'checkpoints'}" in message
    assert "download failed: [Errno -3] Temporary failure in name resolution" in message and "\n" not in message


def test_a_download_lands_in_the_cache_once(torch_home: Path, monkeypatch) -> None:
    state = random_resnet18_state()
    calls = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        calls.append((url, Path(dst), hash_prefix))
        torch.save(state, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    assert ensure_imagenet_file("resnet18") == torch_home / "hub" / "checkpoints" / R18_FILE
    assert ensure_imagenet_file("resnet18") == torch_home / "hub" / "checkpoints" / R18_FILE
    assert calls == [(R18_URL, torch_home / "hub" / "checkpoints" / R18_FILE, "f37072fd")]  # hash checked


def test_the_paper_budget_starts_from_imagenet_weights() -> None:
    assert resolve("paper").model.pretrained == "imagenet"


@pytest.mark.parametrize("lr", ["1e-6", "1e-5"])
def test_a_nearly_frozen_resnet_without_weights_is_an_error_unless_none_is_written(lr: str) -> None:
    overrides = ["model.backbone=resnet18", f"train.lr_encoder={lr}"]
    with pytest.raises(ConfigError) as err:
        resolve("smoke", overrides=overrides)
    assert "model.pretrained is not set" in str(err.value) and "stay random and nearly frozen" in str(err.value)
    assert "\n" not in str(err.value)
    assert resolve("smoke", overrides=[*overrides, "model.pretrained=none"]).model.pretrained == "none"


def test_a_resnet_without_weights_is_fine_when_its_encoder_learns() -> None:
    assert resolve("smoke", overrides=["model.backbone=resnet18", "train.lr_encoder=2e-5"]).model.pretrained is None


def test_named_weights_serve_only_their_backbones() -> None:
    with pytest.raises(
        ConfigError,
        match=r"model.pretrained: imagenet weights exist for resnet18, resnet34, resnet50, "
        r"not the compact backbone; valid for it: none, synthetic, a local .pth file",
    ):
        resolve("smoke", overrides=["model.pretrained=imagenet"])
    with pytest.raises(
        ConfigError,
        match=r"synthetic weights exist for compact, not the resnet18 backbone; valid for "
        r"it: none, imagenet, a local .pth file",
    ):
        resolve("smoke", overrides=["model.backbone=resnet18", "model.pretrained=synthetic"])
    assert resolve("smoke", overrides=["model.pretrained=none"]).model.pretrained == "none"


def test_the_compact_encoder_starts_from_the_synthetic_pretraining(tmp_path: Path, monkeypatch) -> None:
    import tsn.pretrain
    from tsn.backbones import compact_encoder

    torch.manual_seed(3)
    reference = compact_encoder()
    path = tmp_path / "compact-synthetic.pth"
    torch.save(reference.state_dict(), path)
    calls: list[int] = []
    monkeypatch.setattr(tsn.pretrain, "ensure_synthetic_weights", lambda *a, **k: calls.append(1) or path)
    cfg = resolve("smoke", overrides=["model.pretrained=synthetic"])
    check_pretrained(cfg)  # builds (here: finds) the cached weights before the run
    model = build_model(cfg.model, dataset_tasks("synthetic"))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    assert calls == [1, 1]


def test_a_local_weights_file_is_checked_before_the_run(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    cfg = resolve("paper", overrides=["data.dataset=synthetic", f"model.pretrained={path}"])
    with pytest.raises(
        ConfigError, match=f"model.pretrained: file not found: {path}; valid: none, imagenet, synthetic"
    ):
        check_pretrained(cfg)
    torch.save(random_resnet18_state(), path)
    check_pretrained(cfg)
    model = build_model(cfg.model, dataset_tasks("synthetic"))
    assert torch.equal(model.encoder.stages[4][1].bn2.running_var, random_resnet18_state()["layer4.1.bn2.running_var"])


def test_train_cli_without_cached_weights_offline_exits_2_with_one_line(
    tmp_path: Path, torch_home: Path, monkeypatch, tsn_cli
) -> None:
    monkeypatch.setenv(OFFLINE_ENV, "1")
    code, _, err = tsn_cli("train", "--budget", "paper", "--dataset", "synthetic", "--out", str(tmp_path / "run"))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ImageNet weights for resnet18")
    assert f"put {R18_FILE} (from {R18_URL}) into {torch_home / 'hub' / 'checkpoints'}" in err
    assert not (tmp_path / "run").exists()  # nothing ran
