"""Where encoder weights come from: ``model.pretrained`` is ``none``, ``imagenet`` (ResNets), ``synthetic`` (the
compact encoder pretrained on synthetic scenes by ``tsn.pretrain``, the CPU budgets' analogue of ImageNet weights)
or a local .pth file.

``imagenet`` is torchvision's weights API (``ResNet18_Weights.IMAGENET1K_V1`` and its siblings): the file is
downloaded once into the torch hub cache, ``$TORCH_HOME/hub/checkpoints/<name in the enum's url>``, and read from
there afterwards. The cache is checked here before torch hub is asked for anything, so a cached file never touches
the network, and with ``TSN_OFFLINE=1`` (or no network) a missing file is a one-line error saying where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

NO_WEIGHTS = "none"  # written explicitly: train the encoder from random initialisation on purpose
IMAGENET = "imagenet"
SYNTHETIC = "synthetic"
OFFLINE_ENV = "TSN_OFFLINE"  # set to 1: never download, a missing cached file is an error

# The backbones that take pretrained weights (torchvision ResNets), each with the name of its weights enum in
# torchvision.models; torchvision is imported on first use (see tsn.backbones).
IMAGENET_WEIGHTS: dict[str, str] = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
}


# Named weights and the backbones each serves.
NAMED_WEIGHTS: dict[str, tuple[str, ...]] = {IMAGENET: tuple(IMAGENET_WEIGHTS), SYNTHETIC: ("compact",)}


class WeightsUnavailableError(FileNotFoundError):
    """The ImageNet weights are neither cached nor downloadable; the message says which file goes where."""


def imagenet_weights(backbone: str) -> WeightsEnum:
    """torchvision's ImageNet weights of ``backbone`` (``ResNet18_Weights.IMAGENET1K_V1`` and its siblings)."""
    import torchvision.models

    return getattr(torchvision.models, IMAGENET_WEIGHTS[backbone]).IMAGENET1K_V1


def imagenet_file(backbone: str) -> Path:
    """The cached file torch hub reads ``backbone``'s ImageNet weights from (it may not exist yet)."""
    url = imagenet_weights(backbone).url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def ensure_imagenet_file(backbone: str) -> Path:
    """The cached ImageNet weights of ``backbone``, downloaded first if absent (unless offline)."""
    file = imagenet_file(backbone)
    if file.is_file():
        return file
    weights = imagenet_weights(backbone)
    missing = f"ImageNet weights for {backbone} not found: put {file.name} (from {weights.url}) into {file.parent}"
    if offline():
        raise WeightsUnavailableError(f"{missing} ({OFFLINE_ENV} is set, nothing is downloaded)")
    try:
        weights.get_state_dict(progress=True, check_hash=True, weights_only=True)  # downloads into the cache
    except (OSError, RuntimeError) as err:  # URLError, HTTPError, timeouts, a read-only cache, a hash mismatch
        reason = " ".join(str(getattr(err, "reason", err)).split())
        raise WeightsUnavailableError(f"{missing} (download failed: {reason})") from None
    return file


def imagenet_state_dict(backbone: str) -> dict[str, torch.Tensor]:
    """``backbone``'s ImageNet state dict through torchvision's weights API, from the cache (see above)."""
    file = ensure_imagenet_file(backbone)
    try:
        return imagenet_weights(backbone).get_state_dict(progress=False, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a corrupt cached file is reported the same way whatever broke
        reason = " ".join(str(err).split())
        raise ValueError(f"cannot read ImageNet weights {file} ({reason}); delete it to download it again") from None
