"""PASCAL-Context multi-task loader ("PASCAL_MT", the release of ASTMT / Vandenhende's Multi-Task-Learning-PyTorch).

Layout under ``root`` (read from facebookresearch/astmt and SimonVandenhende/Multi-Task-Learning-PyTorch,
``data/pascal_context.py``): ``ImageSets/Context/{train,val}.txt`` (4,998 / 5,105 ids), ``JPEGImages/<id>.jpg``,
``semseg/VOC12/<id>.png`` or else ``semseg/pascal-context/<id>.png`` (class ids 0-20, 255 ignore),
``human_parts/<id>.mat`` (PASCAL-Part ``anno``), ``pascal-context/trainval/<id>.mat`` (459-class ``LabelMap``),
``normals_distill/<id>.png`` (n = v / 255 * 2 - 1), ``sal_distill/<id>.png`` and ``json/{nyu,context}_classes.json``.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from tsn.data.folder import FolderDataset, read_mat, read_png, unit_normals
from tsn.data.synthetic import label_edges
from tsn.target_kinds import IGNORE_INDEX

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


class PascalContext(FolderDataset):
    NAME = "pascal_context"
    SPLIT_FILE = "ImageSets/Context/{split}.txt"
    IMAGE = ("JPEGImages", ".jpg")
    HINT = HINT

    def __init__(self, root: str | None, split: str, kinds: dict[str, str], image_size: int, augment: str | None):
        super().__init__(root, split, kinds, image_size, augment)
        self.normals_classes: set[int] | None = None
        self.partial_labels = {"parts": self._people_with_parts}  # task -> "does this image carry its label?"
        self._labelled: dict[str, list[int]] = {}
        self.loaders = {
            "semseg": self._semseg, "parts": self._parts, "edge": self._edge,
            "normals": self._normals, "saliency": self._saliency,
        }

    def _label_map(self, name: str) -> np.ndarray:
        return _entry(self._path("pascal-context", "trainval", f"{name}.mat"), "LabelMap")

    def _semseg(self, name: str) -> torch.Tensor:
        voc = self.root / "semseg" / "VOC12" / f"{name}.png"
        path = voc if voc.exists() else self._path("semseg", "pascal-context", f"{name}.png")
        return torch.from_numpy(read_png(path).astype(np.int64))

    def labelled(self, task: str) -> list[int]:
        """Human parts are labelled only on images with a person that has parts (the official loader trains parts
        on those only); every other task on every image. Read once per dataset object from the label files."""
        has_label = self.partial_labels.get(task)
        if has_label is None:
            return super().labelled(task)
        if task not in self._labelled:
            self._labelled[task] = [i for i, name in enumerate(self.ids) if has_label(name)]
        return list(self._labelled[task])

    def _people_with_parts(self, name: str) -> list:
        objects = _entry(self._path("human_parts", f"{name}.mat"), "anno")[0, 0]["objects"][0]
        return [obj for obj in objects if int(obj["class_ind"].squeeze()) == PERSON and obj["parts"].size > 0]

    def _parts(self, name: str) -> torch.Tensor:
        """Person parts (6 + background) of every person with parts; all 255 when the image has none."""
        target = None
        for obj in self._people_with_parts(name):
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


def _entry(path, key: str):
    """``key`` of a .mat file; a readable file without it is damaged too, and the error names the file."""
    data = read_mat(path)
    if key not in data:
        found = sorted(k for k in data if not k.startswith("__"))
        raise ValueError(f"damaged file {path}: no {key!r} entry (found {found}); re-extract it from the release")
    return data[key]
