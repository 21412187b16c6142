"""NYUD-v2 multi-task loader ("NYUD_MT", the release used by ASTMT / Vandenhende's Multi-Task-Learning-PyTorch).

Layout under ``root`` (read from SimonVandenhende/Multi-Task-Learning-PyTorch ``data/nyud.py``):
``gt_sets/{train,val}.txt`` (795 / 654 ids), ``images/<id>.jpg``, ``segmentation/<id>.png`` (0 background ..
40; background is kept as class 0, this paper's lineage, where Vandenhende maps it to 255), ``edge/<id>.npy``
(0/1 [H, W]), ``normals/<id>.npy`` ([H, W, 3] in [-1, 1]; ``.png`` with v / 255 * 2 - 1 is also read) and
``depth/<id>.npy`` (metres, [H, W]; 0 or NaN invalid).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tsn.data.folder import FolderDataset, read_npy, read_png, require, unit_normals

HINT = "get the NYUD_MT release (as used by ASTMT / Multi-Task-Learning-PyTorch), see the README"


def _normals(path_npy: Path) -> np.ndarray:
    if path_npy.exists():
        return read_npy(path_npy).astype(np.float64)
    return read_png(require(path_npy.with_suffix(".png"), HINT)).astype(np.float64) * 2 / 255 - 1


class NYUD(FolderDataset):
    NAME = "nyud"
    SPLIT_FILE = "gt_sets/{split}.txt"
    IMAGE = ("images", ".jpg")
    HINT = HINT

    def __init__(self, root: str | None, split: str, kinds: dict[str, str], image_size: int, augment: str | None):
        super().__init__(root, split, kinds, image_size, augment)
        self.loaders = {
            "semseg": lambda n: torch.from_numpy(read_png(self._path("segmentation", f"{n}.png")).astype(np.int64)),
            "edge": lambda n: torch.from_numpy(read_npy(self._path("edge", f"{n}.npy")).astype(np.float32))[None],
            "normals": lambda n: unit_normals(_normals(self.root / "normals" / f"{n}.npy"), np.array(True)),
            "depth": lambda n: torch.from_numpy(
                np.nan_to_num(read_npy(self._path("depth", f"{n}.npy")).astype(np.float32)))[None],
        }
