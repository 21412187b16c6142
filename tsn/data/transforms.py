"""Joint augmentation of an image and all its targets with ``torchvision.transforms.v2``.

Targets are wrapped as ``tv_tensors.Mask`` so every geometric op uses nearest interpolation for them: labels keep
their label set, depth's invalid zeros and normals' invalid zero vectors are never blended into valid pixels.
Padding fills each target with its kind's invalid value; a horizontal flip also negates the normals' x component.
Random draws use torch's global generator, which DataLoader seeds per worker.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tsn.tasks import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAD_FILL = {"label": IGNORE_INDEX, "binary": IGNORE_INDEX, "normals": 0.0, "depth": 0.0}
FLIP_NEGATES_X = {"normals"}  # target kinds whose channel 0 is a horizontal vector component
AUGMENTATIONS = ("none", "flip", "paper")

Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
Transform = Callable[[torch.Tensor, dict[str, torch.Tensor]], Sample]


def _as_mask(target: torch.Tensor) -> tv_tensors.Mask:
    return tv_tensors.Mask(target if target.ndim == 3 else target[None])


def _unwrap(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.as_subclass(torch.Tensor).reshape(mask.shape[-3:] if like.ndim == 3 else mask.shape[-2:])


def resize(image: torch.Tensor, targets: dict[str, torch.Tensor], size: int) -> Sample:
    """Resize to ``size`` x ``size``, ignoring the aspect ratio (the paper's protocol); nearest for targets."""
    out = {k: _unwrap(F.resize(_as_mask(t), [size, size]), t) for k, t in targets.items()}
    return F.resize(tv_tensors.Image(image), [size, size], antialias=True).as_subclass(torch.Tensor), out


def hflip(image: torch.Tensor, targets: dict[str, torch.Tensor], kinds: Mapping[str, str]) -> Sample:
    out = {k: t.flip(-1) for k, t in targets.items()}  # flip copies, so negating in place below is safe
    for k in out:
        if kinds[k] in FLIP_NEGATES_X:
            out[k][0].neg_()
    return image.flip(-1), out


def scale_pad_crop(image: torch.Tensor, targets: dict[str, torch.Tensor], kinds: Mapping[str, str],
                   scale: float, size: int) -> Sample:
    """Rescale by ``scale``, pad (image 0, targets with their invalid value) up to ``size``, random-crop ``size``."""
    new = max(1, round(size * scale))
    image, targets = resize(image, targets, new)
    pad = max(0, size - new)
    left, top = (int(torch.randint(pad + 1, ())) for _ in range(2)) if pad else (0, 0)
    padding = [left, top, pad - left, pad - top]
    image = F.pad(image, padding, fill=0.0)
    targets = {k: _unwrap(F.pad(_as_mask(t), padding, fill=PAD_FILL[kinds[k]]), t) for k, t in targets.items()}
    extra = image.shape[-1] - size
    x, y = (int(torch.randint(extra + 1, ())) for _ in range(2))
    return image[:, y:y + size, x:x + size], {k: t[..., y:y + size, x:x + size] for k, t in targets.items()}


def build_transform(augment: str | None, kinds: Mapping[str, str], size: int) -> Transform:
    """The named pipeline; ``kinds`` maps each task name to its target kind (see ``tsn.tasks``).

    Input: image float [3, H, W] in [0, 1] at ``size`` and targets in ``tsn.tasks`` formats; output: the image
    normalised with ImageNet mean/std and the augmented targets.
    """
    name = augment or "none"
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; valid: {list(AUGMENTATIONS)} or None")
    jitter = v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.05)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]

    def apply(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
        if name != "none" and torch.rand(()) < 0.5:
            image, targets = hflip(image, targets, kinds)
        if name == "paper":
            image, targets = scale_pad_crop(image, targets, kinds, float(torch.empty(()).uniform_(0.5, 1.5)), size)
            image = jitter(image)
        return image.sub(mean).div_(std), targets

    return apply


class MultiTaskDataset(torch.utils.data.Dataset):
    """Base of every dataset: ``load(index)`` gives raw arrays; this resizes, augments and assembles the sample.

    Sample: ``{"image": float32 [3, S, S] normalised, "targets": {task: tensor}, "meta": {dataset, split, index,
    name}}``, which ``default_collate`` batches.
    """

    def __init__(self, dataset: str, split: str, kinds: Mapping[str, str], image_size: int, augment: str | None):
        self.dataset, self.split, self.kinds, self.image_size = dataset, split, dict(kinds), image_size
        self.transform = build_transform(None if split != "train" else augment, self.kinds, image_size)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        """Image float [3, H, W] in [0, 1], targets (tasks.py formats) at the same H, W, and the sample's name."""
        raise NotImplementedError

    def labelled(self, task: str) -> list[int]:
        """Indices of the samples that carry a label for ``task``: every sample unless the dataset says otherwise
        (each task's training pass iterates over these, tsn.schedules)."""
        return list(range(len(self)))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, targets, name = self.load(index)
        if image.shape[-2:] != (self.image_size, self.image_size):
            image, targets = resize(image, targets, self.image_size)
        image, targets = self.transform(image, targets)
        meta = {"dataset": self.dataset, "split": self.split, "index": index, "name": name}
        return {"image": image.float().contiguous(), "targets": {k: t.contiguous() for k, t in targets.items()},
                "meta": meta}
