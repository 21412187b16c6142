"""Joint augmentation of an image and all its targets; ``paper`` is the official TSN training pipeline.

Pipelines (``AUGMENTATIONS``): ``none``; ``flip`` (horizontal, p 0.5); ``paper``, the authors' pipeline
(GuoleiSun/TSNs, first commit), which trains each task with its own geometry:

- semseg, parts, edge, saliency (``label`` / ``binary`` kinds; albumentations): flip, then scale ~ U(0.5, 1.5) about
  the centre and shift ~ U(-0.1, 0.1) of the size, padding 0 (background / negative, trained, not ignored), then the
  photometric set of ``tsn.data.photometric`` on the image;
- normals (ASTMT's ScaleNRotate, which also serves depth on NYUD): flip, then scale ~ U(0.75, 1.25) and rotation ~
  U(-20, 20) degrees about the centre, the vectors turned with the image, padding invalid (zero); no photometric set.

A sample carries every task's target, but the pipeline follows the tasks it is trained on in its step
(``MultiTaskDataset`` gets them with the index from the trainer's batches): a single-task step (the ``epoch`` and
``batch`` schedules) gets exactly that task's official pipeline; a step that trains several tasks (``joint``), or a
sample drawn without tasks, takes the widest range of their kinds' profiles and the photometric set when any of them
takes it.

Per-kind behaviour is data (``tsn.target_kinds``): the pad value, the invalid value, whether channels 0-1 are an
image-plane vector, the geometric profile and whether the photometric set applies. Targets are always sampled
nearest, so labels keep their label set and invalid depth / normals are never blended into valid pixels (official
normals are bicubic, then renormalised). Normals are in the image's axes (x right, y down, the OpenCV camera frame,
as ASTMT's rotation assumes): a vector maps with the orthogonal part of the map that moves the pixels (a flip
negates x, a rotation turns (x, y) by the image's angle), so it stays unit length. A target with no valid pixel
(parts on an image without people) is padded with its invalid value, so padding never invents labels for it. All
draws use torch's global generator, which the trainer seeds per epoch and DataLoader per worker.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import torch
from torch.nn import functional as nnf

from tsn.data import photometric
from tsn.target_kinds import Geometry, target_kind

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


Sample = tuple[torch.Tensor, dict[str, torch.Tensor]]
Transform = Callable[[torch.Tensor, dict[str, torch.Tensor]], Sample]
Step = Callable[[torch.Tensor, dict[str, torch.Tensor]], Sample]


def resize(image: torch.Tensor, targets: dict[str, torch.Tensor], size: int) -> Sample:
    """Resize to ``size`` x ``size``, ignoring the aspect ratio (the paper's protocol); nearest for targets.

    torchvision is imported here, on first use: the synthetic scenes are drawn at their size and never resized, and
    importing torchvision costs a process seconds (tsn.backbones)."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    def resize_target(target: torch.Tensor) -> torch.Tensor:
        mask = F.resize(tv_tensors.Mask(target if target.ndim == 3 else target[None]), [size, size])
        return mask.as_subclass(torch.Tensor).reshape(mask.shape[-3:] if target.ndim == 3 else mask.shape[-2:])

    out = {k: resize_target(t) for k, t in targets.items()}
    return F.resize(tv_tensors.Image(image), [size, size], antialias=True).as_subclass(torch.Tensor), out


def hflip(image: torch.Tensor, targets: dict[str, torch.Tensor], kinds: Mapping[str, str]) -> Sample:
    out = {k: t.flip(-1) for k, t in targets.items()}  # flip copies, so negating in place below is safe
    for k in out:
        if target_kind(kinds[k]).vector:
            out[k][0].neg_()
    return image.flip(-1), out


def similarity(scale: float, angle: float, flip: bool) -> torch.Tensor:
    """The 2x2 float64 map of pixel offsets from the centre (x right, y down): mirror, then turn ``angle``
    degrees counter-clockwise on screen and scale."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return scale * torch.tensor([[c, s], [-s, c]], dtype=torch.float64) @ torch.diag(
        torch.tensor([-1.0 if flip else 1.0, 1.0], dtype=torch.float64))


def warp(image: torch.Tensor, targets: dict[str, torch.Tensor], kinds: Mapping[str, str], matrix: torch.Tensor,
         shift: tuple[float, float] = (0.0, 0.0)) -> Sample:
    """Move the content at offset ``p`` from the image centre to ``matrix @ p + shift`` (pixels, y down).

    The image is sampled bilinearly and padded with 0 (black, as the official uint8 pipelines); each target nearest,
    padded by its kind's rule, vector kinds turned by the orthogonal part of ``matrix``.
    """
    h, w = image.shape[-2:]
    to_unit = torch.diag(torch.tensor([2 / w, 2 / h], dtype=torch.float64))  # pixels -> grid_sample's [-1, 1]
    inverse = to_unit @ torch.linalg.inv(matrix) @ torch.linalg.inv(to_unit)
    theta = torch.cat([inverse, -inverse @ to_unit @ torch.tensor(shift, dtype=torch.float64)[:, None]], 1)
    grid = nnf.affine_grid(theta.float()[None], [1, 1, h, w], align_corners=False)

    def sample(x: torch.Tensor, mode: str) -> torch.Tensor:
        return nnf.grid_sample(x[None], grid, mode=mode, padding_mode="zeros", align_corners=False)[0]

    (a, b), (c, d) = (matrix / matrix.det().abs().sqrt()).tolist()  # the orthogonal part: turn and mirror
    out = {}
    for k, t in targets.items():
        kind = target_kind(kinds[k])
        fill = kind.pad if bool((t != kind.invalid).any()) else kind.invalid
        moved = sample(t.reshape(-1, h, w).float() - fill, "nearest") + fill  # exact: fill is 0 or an integer
        if kind.vector:
            x, y = moved[0].clone(), moved[1]
            moved[0] = a * x + b * y
            moved[1] = c * x + d * y
        out[k] = moved.to(t.dtype).reshape(t.shape)
    return sample(image, "bilinear"), out


def random_warp(geometry: Geometry, kinds: Mapping[str, str]) -> Step:
    """Draw flip, scale, angle and shift (in that order) from ``geometry`` and ``warp`` by them."""

    def apply(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
        flip = bool(torch.rand(()) < 0.5)
        draw = photometric.uniform
        matrix = similarity(draw(*geometry.scale), draw(-geometry.rotation, geometry.rotation), flip)
        h, w = image.shape[-2:]
        shift = (draw(-geometry.shift, geometry.shift) * w, draw(-geometry.shift, geometry.shift) * h)
        return warp(image, targets, kinds, matrix, shift)

    return apply


def random_flip(kinds: Mapping[str, str]) -> Step:
    def apply(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
        return hflip(image, targets, kinds) if torch.rand(()) < 0.5 else (image, targets)

    return apply


def photometric_step(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
    return photometric.apply_groups(image), targets


def paper_steps(kinds: Mapping[str, str], trained: Iterable[str]) -> list[Step]:
    """The official pipeline for a sample carrying targets of ``kinds``, trained on the tasks ``trained``."""
    trained_kinds = [target_kind(kinds[task]) for task in trained]
    geometry = trained_kinds[0].geometry
    for kind in trained_kinds[1:]:
        geometry = geometry.union(kind.geometry)
    return [random_warp(geometry, kinds)] + ([photometric_step] if any(k.photometric for k in trained_kinds) else [])


PIPELINES: dict[str, Callable[[Mapping[str, str], Iterable[str]], list[Step]]] = {
    "none": lambda kinds, trained: [],
    "flip": lambda kinds, trained: [random_flip(kinds)],
    "paper": paper_steps,
}
AUGMENTATIONS = tuple(PIPELINES)


def build_transform(augment: str | None, kinds: Mapping[str, str], trained: Iterable[str] | None = None) -> Transform:
    """The named pipeline; ``kinds`` maps each task name to its target kind (see ``tsn.tasks``); ``trained``: the
    tasks whose official pipeline applies (default: every task in ``kinds``).

    Input: image float [3, H, W] in [0, 1] and targets in ``tsn.tasks`` formats; output: the image
    normalised with ImageNet mean/std and the augmented targets.
    """
    name = augment or "none"
    if name not in PIPELINES:
        raise ValueError(f"unknown augmentation {augment!r}; valid: {list(AUGMENTATIONS)} or None")
    steps = PIPELINES[name](dict(kinds), list(kinds) if trained is None else list(trained))
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]

    def apply(image: torch.Tensor, targets: dict[str, torch.Tensor]) -> Sample:
        for step in steps:
            image, targets = step(image, targets)
        return image.sub(mean).div_(std), targets

    return apply


class MultiTaskDataset(torch.utils.data.Dataset):
    """Base of every dataset: ``load(index)`` gives raw arrays; this resizes, augments and assembles the sample.

    Sample: ``{"image": float32 [3, S, S] normalised, "targets": {task: tensor}, "meta": {dataset, split, index,
    name}}``, which ``default_collate`` batches. An item is an index, or ``(index, tasks)`` for a sample trained on
    ``tasks`` in its step: the augmentation then follows those tasks' pipelines.
    """

    def __init__(self, dataset: str, split: str, kinds: Mapping[str, str], image_size: int, augment: str | None):
        self.dataset, self.split, self.kinds, self.image_size = dataset, split, dict(kinds), image_size
        self.augment = None if split != "train" else augment
        self._transforms: dict[tuple[str, ...] | None, Transform] = {}

    def transform(self, image: torch.Tensor, targets: dict[str, torch.Tensor],
                  trained: tuple[str, ...] | None = None) -> Sample:
        if trained not in self._transforms:
            self._transforms[trained] = build_transform(self.augment, self.kinds, trained)
        return self._transforms[trained](image, targets)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        """Image float [3, H, W] in [0, 1], targets (tasks.py formats) at the same H, W, and the sample's name."""
        raise NotImplementedError

    def labelled(self, task: str) -> list[int]:
        """Indices of the samples that carry a label for ``task``: every sample unless the dataset says otherwise
        (each task's training pass iterates over these, tsn.schedules)."""
        return list(range(len(self)))

    def __getitem__(self, item: int | tuple[int, tuple[str, ...]]) -> dict:
        index, trained = item if isinstance(item, tuple) else (item, None)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, targets, name = self.load(index)
        if image.shape[-2:] != (self.image_size, self.image_size):
            image, targets = resize(image, targets, self.image_size)
        image, targets = self.transform(image, targets, trained)
        meta = {"dataset": self.dataset, "split": self.split, "index": index, "name": name}
        return {"image": image.float().contiguous(), "targets": {k: t.contiguous() for k, t in targets.items()},
                "meta": meta}
