"""Encoders split into the five stages F1..F5 (strides 2, 4, 8, 16, 32) that the decoder consumes.

torchvision is imported where a ResNet is built, not here: importing it imports torch._dynamo (~2.5 s on a laptop
CPU, as long as torch itself), which a process training the compact encoder never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .pretrained import IMAGENET, NO_WEIGHTS, SYNTHETIC, imagenet_file, imagenet_state_dict


class StagedEncoder(nn.Module):
    """Runs ``stages`` in sequence and returns every stage's output (F1..F5)."""

    def __init__(self, stages: list[nn.Module], channels: tuple[int, ...]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _read_state(path: str) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict from a local file."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"pretrained encoder weights not found: {file} (give a local torchvision .pth file, imagenet or none)"
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ValueError(f"cannot read pretrained weights {file}: {err}") from None


def _load_state(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a torchvision ResNet state dict into ``net`` strictly (the fc layer, if present, is dropped)."""
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    unexpected = [k for k in state if k not in own]
    misshapen = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or misshapen:
        raise ValueError(
            f"pretrained weights {source} do not fit the encoder: {len(missing)} missing keys, "
            f"{len(unexpected)} unexpected, {len(misshapen)} of another shape (e.g. {(missing + misshapen)[:2]})"
        )
    net.load_state_dict(state, strict=False)


def _load_pretrained(net: nn.Module, name: str, pretrained: str | None) -> None:
    """Initialise ResNet ``name`` from ``pretrained``: None or ``none`` (random), ``imagenet``, or a file."""
    if pretrained in (None, NO_WEIGHTS):
        return
    if pretrained == IMAGENET:
        _load_state(net, imagenet_state_dict(name), f"{IMAGENET} ({imagenet_file(name)})")
    else:
        _load_state(net, _read_state(pretrained), pretrained)


def _resnet(name: str) -> Callable[[str | None], StagedEncoder]:
    def build(pretrained: str | None) -> StagedEncoder:
        import torchvision.models

        net = getattr(torchvision.models, name)(weights=None)
        _load_pretrained(net, name, pretrained)
        stages = [
            nn.Sequential(net.conv1, net.bn1, net.relu),
            nn.Sequential(net.maxpool, net.layer1),
            net.layer2,
            net.layer3,
            net.layer4,
        ]
        expansion = net.layer1[0].expansion
        channels = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        return StagedEncoder(stages, channels)

    return build


class BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convolutions and a shortcut), with torchvision's module names, so that a state
    dict of this encoder reads as one of torchvision's blocks would."""

    def __init__(self, cin: int, cout: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + shortcut)


def compact_encoder(pretrained: str | None = None, base_width: int = 16) -> StagedEncoder:
    """A ResNet-shaped encoder with 1/4 of ResNet-18's widths and one basic block per stage, for CPU budgets.

    ``pretrained``: None / ``none`` (random), ``synthetic`` (pretrained once on synthetic scenes and cached,
    tsn.pretrain), or a .pth file of this encoder's state dict."""
    w = base_width
    channels = (w, w, 2 * w, 4 * w, 8 * w)

    def down(cin: int, cout: int) -> BasicBlock:
        shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))
        return BasicBlock(cin, cout, stride=2, downsample=shortcut)

    stages = [
        nn.Sequential(nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)),
        down(channels[0], channels[1]),
        down(channels[1], channels[2]),
        down(channels[2], channels[3]),
        down(channels[3], channels[4]),
    ]
    encoder = StagedEncoder(stages, channels)
    if pretrained == SYNTHETIC:
        from .pretrain import ensure_synthetic_weights  # tsn.pretrain builds this encoder: imported when needed

        pretrained = str(ensure_synthetic_weights())
    if pretrained not in (None, NO_WEIGHTS):
        _load_state(encoder, _read_state(pretrained), pretrained)
    return encoder


BACKBONES: dict[str, Callable[[str | None], StagedEncoder]] = {
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "compact": compact_encoder,
}


def build_backbone(name: str, pretrained: str | None = None) -> StagedEncoder:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {sorted(BACKBONES)}")
    return BACKBONES[name](pretrained)
