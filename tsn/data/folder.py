"""Shared by the real-dataset loaders: the folder layout, split lists, and readers that name a damaged file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import scipy.io
import torch
from PIL import Image

from tsn.data.transforms import MultiTaskDataset

T = TypeVar("T")


def require(path: Path, hint: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"expected {path}; {hint}")
    return path


def _read(path: Path, load: Callable[[Path], T]) -> T:
    """``load(path)``; any failure to decode is a one-line error naming the file."""
    try:
        return load(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - PIL, numpy and scipy raise many types for a damaged file
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ValueError(f"damaged file {path}: {reason}; re-extract it from the release") from None


def read_png(path: Path) -> np.ndarray:
    return _read(path, lambda p: np.array(Image.open(p)))


def read_image(path: Path) -> torch.Tensor:
    array = _read(path, lambda p: np.array(Image.open(p).convert("RGB")))
    return torch.from_numpy(array).permute(2, 0, 1).float() / 255


def read_npy(path: Path) -> np.ndarray:
    return _read(path, np.load)


def read_mat(path: Path) -> dict[str, Any]:
    return _read(path, scipy.io.loadmat)


def read_ids(root: str | None, split_file: str, hint: str) -> tuple[Path, list[str]]:
    """The dataset root and the ids listed in ``root/split_file`` (errors name the missing path)."""
    if root is None:
        raise ValueError(f"this dataset needs data.root=<folder>; {hint}")
    base = require(Path(root), hint)
    return base, require(base / split_file, hint).read_text().split()


def unit_normals(normals: np.ndarray, valid: np.ndarray) -> torch.Tensor:
    """[H, W, 3] normals -> float32 [3, H, W], unit length where ``valid``, zero elsewhere."""
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    valid = valid & (norm[..., 0] > 1e-3)
    out = np.where(valid[..., None], normals / np.maximum(norm, 1e-3), 0.0)
    return torch.from_numpy(out.transpose(2, 0, 1).astype(np.float32))


class FolderDataset(MultiTaskDataset):
    """A release unpacked in ``root``: a split list of ids, an image folder, one reader per task."""

    NAME: str
    SPLIT_FILE: str  # with {split}
    IMAGE: tuple[str, str]  # (folder, suffix)
    HINT: str

    def __init__(self, root: str | None, split: str, kinds: dict[str, str], image_size: int, augment: str | None):
        super().__init__(self.NAME, split, kinds, image_size, augment)
        self.root, self.ids = read_ids(root, self.SPLIT_FILE.format(split=split), self.HINT)
        self.loaders: dict[str, Callable[[str], torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, *parts: str) -> Path:
        return require(self.root.joinpath(*parts), self.HINT)

    def load(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], str]:
        name = self.ids[index]
        folder, suffix = self.IMAGE
        image = read_image(self._path(folder, f"{name}{suffix}"))
        return image, {task: self.loaders[task](name) for task in self.kinds}, name
