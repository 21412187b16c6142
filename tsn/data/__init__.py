"""Datasets: the built-in ``synthetic`` scenes and loaders for PASCAL-Context and NYUD-v2 (multi-task releases)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from tsn.data import cache, synthetic
from tsn.data.nyud import NYUD
from tsn.data.pascal import PascalContext
from tsn.data.transforms import AUGMENTATIONS, MultiTaskDataset
from tsn.target_kinds import target_kind
from tsn.tasks import dataset_tasks

DATASET_NAMES = ("synthetic", "pascal_context", "nyud")
SPLITS = ("train", "val")


class SyntheticDataset(MultiTaskDataset):
    """A cached, fully in-memory split of the procedural scenes (see ``tsn.data.synthetic``)."""

    def __init__(self, split: str, kinds: dict[str, str], image_size: int, seed: int, num_samples: int | None,
                 augment: str | None, cache_dir: str | None):
        super().__init__("synthetic", split, kinds, image_size, augment)
        n = synthetic.DEFAULT_SIZES[split] if num_samples is None else num_samples
        name = f"synthetic-v{synthetic.GENERATOR_VERSION}-seed{seed}-{split}-{image_size}px-n{n}"
        arrays = cache.cached_arrays(name, lambda: synthetic.render_split(seed, split, image_size, n), cache_dir)
        self.images = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2)
        self.arrays = {task: torch.from_numpy(np.ascontiguousarray(arrays[task])) for task in kinds}
        self.to_target = {task: target_kind(kind).from_cache for task, kind in kinds.items()}

    def __len__(self) -> int:
        return len(self.images)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        targets = {task: to_target(self.arrays[task][index]) for task, to_target in self.to_target.items()}
        return self.images[index].float().div_(255), targets, f"{self.split}_{index:06d}"


def build_dataset(dataset: str, split: str, tasks: Sequence[str], image_size: int, *, root: str | None = None,
                  seed: int = 0, num_samples: int | None = None, augment: str | None = None,
                  cache_dir: str | None = None) -> torch.utils.data.Dataset:
    """The ``split`` of ``dataset`` serving ``tasks`` (the dataset's default set when empty) at ``image_size``.

    ``augment`` (None or one of ``AUGMENTATIONS``) applies to the train split only. ``root`` is required by the real
    datasets; ``seed``, ``num_samples`` and ``cache_dir`` concern the synthetic one.
    """
    if dataset not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {list(DATASET_NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}")
    if augment not in (None, *AUGMENTATIONS):
        raise ValueError(f"unknown augmentation {augment!r}; valid: {list(AUGMENTATIONS)} or None")
    kinds = {t.name: t.target for t in dataset_tasks(dataset, tasks).tasks}
    if dataset == "synthetic":
        return SyntheticDataset(split, kinds, image_size, seed, num_samples, augment, cache_dir)
    loader = {"pascal_context": PascalContext, "nyud": NYUD}[dataset]
    return loader(root, split, kinds, image_size, augment)
