"""PASCAL-Context multi-task loader ("PASCAL_MT", the release of ASTMT / Vandenhende's Multi-Task-Learning-PyTorch).

Layout under ``root`` (read from facebookresearch/astmt and SimonVandenhende/Multi-Task-Learning-PyTorch,
``data/pascal_context.py``): ``ImageSets/Context/{train,val}.txt`` (4,998 / 5,105 ids), ``JPEGImages/<id>.jpg``,
``semseg/VOC12/<id>.png`` or else ``semseg/pascal-context/<id>.png`` (class ids 0-20, 255 ignore),
``human_parts/<id>.mat`` (PASCAL-Part ``anno``), ``pascal-context/trainval/<id>.mat`` (459-class ``LabelMap``),
``normals_distill/<id>.png`` (n = v / 255 * 2 - 1), ``sal_distill/<id>.png`` and ``json/{nyu,context}_classes.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
import torch
from PIL import Image

from tsn.data.synthetic import label_edges
from tsn.data.transforms import MultiTaskDataset
from tsn.tasks import IGNORE_INDEX

HINT = "get PASCAL_MT.tgz (https://data.vision.ee.ethz.ch/kmaninis/share/MTL/PASCAL_MT.tgz), see the README"
PERSON = 15
# Vandenhende's HUMAN_PART[6]: PASCAL-Part person part names -> head 1, torso 2, upper arms 3, lower arms/hands 4,
# upper legs 5, lower legs/feet 6.
HUMAN_PARTS = {
    **dict.fromkeys(["hair", "head", "lear", "lebrow", "leye", "mouth", "nose", "rear", "rebrow", "reye"], 1),
    "neck": 2, "torso": 2, "luarm": 3, "ruarm": 3,
    **dict.fromkeys(["lhand", "llarm", "rhand", "rlarm"], 4), "luleg": 5, "ruleg": 5,
    **dict.fromkeys(["lfoot", "llleg", "rfoot", "rlleg"], 6),
}


def require(path: Path, hint: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"expected {path}; {hint}")
    return path


def read_ids(root: str | None, split_file: str, hint: str) -> tuple[Path, list[str]]:
    """The dataset root and the ids listed in ``root/split_file`` (errors name the missing path)."""
    if root is None:
        raise ValueError(f"this dataset needs root=<folder>; {hint}")
    base = require(Path(root), hint)
    return base, require(base / split_file, hint).read_text().split()


def read_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def read_image(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def unit_normals(normals: np.ndarray, valid: np.ndarray) -> torch.Tensor:
    """[H, W, 3] normals -> float32 [3, H, W], unit length where ``valid``, zero elsewhere."""
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = valid & (norm[..., 0] > 1e-3)
    out = np.where(valid[..., None], normals / np.maximum(norm, 1e-3), 0.0)
    return torch.from_numpy(out.transpose(2, 0, 1).astype(np.float32))


class PascalContext(MultiTaskDataset):
    def __init__(self, root: str | None, split: str, kinds: dict[str, str], image_size: int, augment: str | None):
        super().__init__("pascal_context", split, kinds, image_size, augment)
        self.root, self.ids = read_ids(root, f"ImageSets/Context/{split}.txt", HINT)
        self.normals_classes: set[int] | None = None
        self.loaders: dict[str, Callable[[str], torch.Tensor]] = {
            "semseg": self._semseg, "parts": self._parts, "edge": self._edge,
            "normals": self._normals, "saliency": self._saliency,
        }

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, *parts: str) -> Path:
        return require(self.root.joinpath(*parts), HINT)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        name = self.ids[index]
        image = read_image(self._path("JPEGImages", f"{name}.jpg"))
        return image, {task: self.loaders[task](name) for task in self.kinds}, name

    def _label_map(self, name: str) -> np.ndarray:
        return scipy.io.loadmat(self._path("pascal-context", "trainval", f"{name}.mat"))["LabelMap"]

    def _semseg(self, name: str) -> torch.Tensor:
        voc = self.root / "semseg" / "VOC12" / f"{name}.png"
        path = voc if voc.exists() else self._path("semseg", "pascal-context", f"{name}.png")
        return torch.from_numpy(read_png(path).astype(np.int64))

    def _parts(self, name: str) -> torch.Tensor:
        """Person parts (6 + background) of every person with parts; all 255 when the image has none."""
        objects = scipy.io.loadmat(self._path("human_parts", f"{name}.mat"))["anno"][0, 0]["objects"][0]
        target = None
        for obj in objects:
            if int(obj["class_ind"].squeeze()) != PERSON or obj["parts"].size == 0:
                continue
            if target is None:
                target = np.zeros(obj["mask"].shape, dtype=np.int64)
            for part in obj["parts"][0]:
                target[part["mask"].astype(bool)] = HUMAN_PARTS[str(part["part_name"].squeeze())]
        if target is None:
            size = Image.open(self._path("JPEGImages", f"{name}.jpg")).size
            target = np.full(size[::-1], IGNORE_INDEX, dtype=np.int64)
        return torch.from_numpy(target)

    def _edge(self, name: str) -> torch.Tensor:
        return torch.from_numpy(label_edges(self._label_map(name)).astype(np.float32))[None]

    def _normals(self, name: str) -> torch.Tensor:
        """Distilled normals, valid only on Context classes that also exist in NYUD (ASTMT's rule) + tvmonitor."""
        if self.normals_classes is None:
            nyu = json.loads(self._path("json", "nyu_classes.json").read_text())
            context = json.loads(self._path("json", "context_classes.json").read_text())
            self.normals_classes = {context[c] for c in nyu if c in context and c != "unknown"} | {
                context["tvmonitor"]}
        normals = read_png(self._path("normals_distill", f"{name}.png")).astype(np.float64) * 2 / 255 - 1
        return unit_normals(normals, np.isin(self._label_map(name), list(self.normals_classes)))

    def _saliency(self, name: str) -> torch.Tensor:
        sal = read_png(self._path("sal_distill", f"{name}.png")).astype(np.float32) / 255
        return torch.from_numpy((sal > 0.5).astype(np.float32))[None]
