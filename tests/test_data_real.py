"""The real-dataset loaders read tiny fixtures written in the releases' on-disk formats."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch.utils.data import default_collate

from tsn.data import build_dataset
from tsn.data.transforms import IMAGENET_MEAN, IMAGENET_STD

IDS = ["2008_000001", "2008_000002"]
H = W = 10


def _write_jpg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((H, W, 3), value, dtype=np.uint8)).save(path, quality=100)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _person_anno(parts: list[tuple[str, np.ndarray]], class_ind: int) -> np.ndarray:
    part_array = np.zeros((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
    for i, (name, mask) in enumerate(parts):
        part_array[0, i] = (name, mask.astype(np.uint8))
    objects = np.zeros((1, 1), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")])
    no_parts = np.zeros((0, 0))
    objects[0, 0] = ("obj", np.array([[class_ind]]), np.ones((H, W), np.uint8), part_array if parts else no_parts)
    anno = np.zeros((1, 1), dtype=[("imname", "O"), ("objects", "O")])
    anno[0, 0] = ("img", objects)
    return anno


@pytest.fixture
def pascal_root(tmp_path: Path) -> Path:
    root = tmp_path / "PASCAL_MT"
    (root / "ImageSets" / "Context").mkdir(parents=True)
    (root / "ImageSets" / "Context" / "val.txt").write_text("\n".join(IDS) + "\n")
    (root / "json").mkdir()
    (root / "json" / "nyu_classes.json").write_text(json.dumps({"wall": 21, "floor": 11, "unknown": 20}))
    (root / "json" / "context_classes.json").write_text(
        json.dumps({"wall": 440, "floor": 158, "sky": 360, "tvmonitor": 427, "unknown": 431})
    )
    semseg = np.zeros((H, W), np.uint8)
    semseg[:, 5:] = 15
    semseg[0, 0] = 255
    label_map = np.full((H, W), 440, np.uint16)  # wall: normals valid
    label_map[:, 5:] = 360  # sky: no normals
    label_map[8:, :5] = 431  # unknown: no normals
    head, torso = np.zeros((H, W), bool), np.zeros((H, W), bool)
    head[:3, 5:], torso[3:, 5:] = True, True
    normals = np.zeros((H, W, 3), np.uint8)
    normals[...] = (128, 128, 255)  # roughly (0, 0, 1)
    saliency = np.zeros((H, W), np.uint8)
    saliency[:, :3], saliency[:, 3] = 200, 100  # 200/255 > 0.5, 100/255 < 0.5
    for i, name in enumerate(IDS):
        _write_jpg(root / "JPEGImages" / f"{name}.jpg", 60 + 100 * i)
        _write_png(root / "semseg" / "pascal-context" / f"{name}.png", semseg)
        (root / "pascal-context" / "trainval").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(root / "pascal-context" / "trainval" / f"{name}.mat", {"LabelMap": label_map})
        anno = (
            _person_anno([("head", head), ("torso", torso), ("lfoot", np.eye(H, W, dtype=bool))], 15)
            if i == 0
            else _person_anno([], 12)
        )
        (root / "human_parts").mkdir(exist_ok=True)
        scipy.io.savemat(root / "human_parts" / f"{name}.mat", {"anno": anno})
        _write_png(root / "normals_distill" / f"{name}.png", normals)
        _write_png(root / "sal_distill" / f"{name}.png", saliency)
    return root


def test_pascal_context_fixture_round_trip(pascal_root):
    ds = build_dataset("pascal_context", "val", [], H, root=str(pascal_root))
    assert len(ds) == 2
    batch = default_collate([ds[0], ds[1]])
    assert batch["meta"]["name"] == IDS and batch["meta"]["dataset"] == ["pascal_context"] * 2
    t = batch["targets"]
    assert list(t) == ["semseg", "parts", "edge", "normals", "saliency"]
    assert t["semseg"][0, 0, 0] == 255 and t["semseg"][0, 4, 4] == 0 and t["semseg"][0, 4, 5] == 15
    # Parts: head 1 (rows 0-2), torso 2 (rows 3-9) on the right half, lfoot 6 on the diagonal, 0 elsewhere.
    assert t["parts"][0, 1, 7] == 1 and t["parts"][0, 5, 7] == 2 and t["parts"][0, 4, 4] == 6
    assert t["parts"][0, 1, 0] == 0
    assert torch.all(t["parts"][1] == 255)  # no person: no parts label
    # Edges: the LabelMap's column boundary at x = 4|5 and row boundary at y = 7|8 of the left half.
    edge = t["edge"][0, 0]
    assert torch.all(edge[:, 4] == 1) and torch.all(edge[7, :5] == 1) and edge.sum() == H + 4
    # Normals valid only on wall (a class shared with NYUD), unit length there, zero on sky and unknown.
    n = t["normals"][0]
    assert torch.allclose(n[:, :8, :5].norm(dim=0), torch.ones(8, 5), atol=1e-5)
    assert n[2, 0, 0] > 0.99 and torch.all(n[:, :, 5:] == 0) and torch.all(n[:, 8:, :5] == 0)
    assert t["saliency"].shape == (2, 1, H, W)
    assert torch.all(t["saliency"][0, 0, :, :3] == 1) and torch.all(t["saliency"][0, 0, :, 3:] == 0)
    mean = batch["image"][1].mean(dim=(1, 2)) * torch.tensor(IMAGENET_STD) + torch.tensor(IMAGENET_MEAN)
    assert torch.allclose(mean, torch.full((3,), 160 / 255), atol=2 / 255)


def test_pascal_context_resizes_targets_with_nearest(pascal_root):
    ds = build_dataset("pascal_context", "val", ["semseg", "parts"], 2 * H, root=str(pascal_root))
    sample = ds[0]
    assert sample["image"].shape == (3, 2 * H, 2 * H)
    native = build_dataset("pascal_context", "val", ["semseg"], H, root=str(pascal_root))[0]
    expected = native["targets"]["semseg"].repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(sample["targets"]["semseg"], expected)


def test_pascal_missing_root_names_the_expected_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'}.*PASCAL_MT"):
        build_dataset("pascal_context", "train", [], 32, root=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="root"):
        build_dataset("pascal_context", "train", [], 32)


def test_pascal_missing_file_names_the_expected_path(pascal_root):
    (pascal_root / "sal_distill" / f"{IDS[1]}.png").unlink()
    ds = build_dataset("pascal_context", "val", ["saliency"], H, root=str(pascal_root))
    with pytest.raises(FileNotFoundError, match=str(pascal_root / "sal_distill" / f"{IDS[1]}.png")):
        ds[1]
    with pytest.raises(FileNotFoundError, match=str(pascal_root / "ImageSets" / "Context" / "train.txt")):
        build_dataset("pascal_context", "train", [], H, root=str(pascal_root))


@pytest.fixture
def nyud_root(tmp_path: Path) -> Path:
    root = tmp_path / "NYUD_MT"
    (root / "gt_sets").mkdir(parents=True)
    (root / "gt_sets" / "train.txt").write_text("0001\n0002\n")
    for folder in ("edge", "normals", "depth"):
        (root / folder).mkdir()
    for i, name in enumerate(["0001", "0002"]):
        _write_jpg(root / "images" / f"{name}.jpg", 30 * (i + 1))
        seg = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 41
        seg[0, 0] = 255
        _write_png(root / "segmentation" / f"{name}.png", seg)
        edge = np.zeros((H, W), np.float32)
        edge[2, :] = 1
        np.save(root / "edge" / f"{name}.npy", edge)
        normals = np.zeros((H, W, 3), np.float32)
        normals[..., 1] = -2.0  # not unit on disk: normalised on load
        normals[0] = 0  # invalid row
        np.save(root / "normals" / f"{name}.npy", normals)
        depth = np.full((H, W), 2.5, np.float32)
        depth[1, 1], depth[1, 2] = 0, np.nan
        np.save(root / "depth" / f"{name}.npy", depth)
    return root


def test_nyud_fixture_round_trip(nyud_root):
    ds = build_dataset("nyud", "train", [], H, root=str(nyud_root))
    assert len(ds) == 2
    s = ds[1]
    assert list(s["targets"]) == ["semseg", "edge", "normals", "depth"] and s["meta"]["name"] == "0002"
    seg = s["targets"]["semseg"]
    assert seg.dtype == torch.int64 and seg[0, 0] == 255 and seg[0, 1] == 1 and seg[4, 1] == 0  # 41 % 41: kept 0
    assert seg[0, 5] == 5 and seg.max() == 255 and seg[seg != 255].max() == 40
    assert torch.equal(s["targets"]["edge"][0].nonzero()[:, 0].unique(), torch.tensor([2]))
    n = s["targets"]["normals"]
    assert torch.all(n[:, 0] == 0) and torch.allclose(n[1, 1:], torch.full((H - 1, W), -1.0))
    d = s["targets"]["depth"][0]
    assert d[1, 1] == 0 and d[1, 2] == 0 and d[5, 5] == 2.5


def test_nyud_missing_root_and_split_name_the_path(nyud_root, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(nyud_root / "gt_sets" / "val.txt")):
        build_dataset("nyud", "val", [], H, root=str(nyud_root))
    (nyud_root / "depth" / "0001.npy").unlink()
    ds = build_dataset("nyud", "train", ["depth"], H, root=str(nyud_root))
    with pytest.raises(FileNotFoundError, match=str(nyud_root / "depth" / "0001.npy")):
        ds[0]
