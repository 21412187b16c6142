"""Specification of the joint augmentation: image and targets stay aligned, targets keep their meaning."""

import math

import pytest
import torch

from tsn.data import photometric
from tsn.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MultiTaskDataset,
    build_transform,
    hflip,
    paper_steps,
    photometric_step,
    resize,
    similarity,
    warp,
)
from tsn.target_kinds import target_kind

KINDS = {"semseg": "label", "edge": "binary", "normals": "normals", "depth": "depth"}


def _sample(size: int = 16) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, size, size, generator=g)
    semseg = torch.randint(0, 5, (size, size), generator=g)
    semseg[0, 0] = 255
    normals = torch.nn.functional.normalize(torch.randn(3, size, size, generator=g), dim=0)
    depth = torch.rand(1, size, size, generator=g) * 5 + 1
    depth[0, :, : size // 2] = 0  # left half invalid
    edge = (torch.rand(1, size, size, generator=g) > 0.8).float()
    return image, {"semseg": semseg, "edge": edge, "normals": normals, "depth": depth}


def test_flip_twice_is_identity_and_once_mirrors_and_negates_normals_x():
    image, targets = _sample()
    once_image, once = hflip(image, targets, KINDS)
    assert torch.equal(once_image, image.flip(-1))
    assert torch.equal(once["semseg"], targets["semseg"].flip(-1))
    assert torch.equal(once["normals"][0], -targets["normals"][0].flip(-1))
    assert torch.equal(once["normals"][1:], targets["normals"][1:].flip(-1))
    twice_image, twice = hflip(once_image, once, KINDS)
    assert torch.equal(twice_image, image)
    for k in targets:
        assert torch.equal(twice[k], targets[k])


def test_resize_uses_nearest_for_labels_and_depth():
    image, targets = _sample(16)
    _, out = resize(image, targets, 37)
    assert set(out["semseg"].unique().tolist()) <= set(targets["semseg"].unique().tolist())
    assert out["semseg"].dtype == torch.int64 and out["semseg"].shape == (37, 37)
    valid_values = set(targets["depth"].unique().tolist())
    assert set(out["depth"].unique().tolist()) <= valid_values  # no interpolated depth: 0 never blended in
    assert out["depth"].shape == (1, 37, 37) and out["normals"].shape == (3, 37, 37)
    assert torch.allclose(out["normals"].norm(dim=0), torch.ones(37, 37), atol=1e-5)


def _blocky_one_hot(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A label map of 8x8-pixel blocks and an image that is its one-hot encoding (argmax(image) = label)."""
    blocks = torch.randint(0, 3, (4, 4), generator=torch.Generator().manual_seed(seed))
    semseg = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)
    return torch.nn.functional.one_hot(semseg, 3).permute(2, 0, 1).float(), semseg


def test_flip_pipeline_keeps_image_and_labels_aligned():
    image, semseg = _blocky_one_hot(1)
    semseg = semseg.clone()
    semseg[:, :3] = 0
    image = torch.nn.functional.one_hot(semseg, 3).permute(2, 0, 1).float()
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    transform = build_transform("flip", {"semseg": "label"})
    torch.manual_seed(0)
    flipped = 0
    for _ in range(8):
        out_image, out = transform(image, {"semseg": semseg})
        assert torch.equal((out_image * std + mean).argmax(0), out["semseg"])
        flipped += int(out["semseg"][0, -1] == 0)
    assert 0 < flipped < 8  # both outcomes of the coin occurred


def test_paper_pipeline_output_shapes_and_label_set():
    image, semseg = _blocky_one_hot(4)
    transform = build_transform("paper", {"semseg": "label"})
    torch.manual_seed(5)
    for _ in range(5):
        out_image, out = transform(image, {"semseg": semseg})
        assert out_image.shape == (3, 32, 32) and out["semseg"].shape == (32, 32)
        assert set(out["semseg"].unique().tolist()) <= {0, 1, 2}  # padding is background, never ignored


def test_none_only_normalises():
    image, targets = _sample()
    out_image, out = build_transform(None, KINDS)(image, targets)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(out_image, (image - mean) / std)
    assert all(torch.equal(out[k], targets[k]) for k in targets)


def test_unknown_augmentation_is_a_value_error():
    with pytest.raises(ValueError, match="'cutmix'.*valid"):
        build_transform("cutmix", KINDS)


KINDS_PASCAL = {"semseg": "label", "parts": "label", "edge": "binary", "normals": "normals", "saliency": "binary"}


def _pascal_sample(size: int = 16) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    image, targets = _sample(size)
    g = torch.Generator().manual_seed(1)
    targets["parts"] = torch.randint(1, 4, (size, size), generator=g)
    targets["saliency"] = (torch.rand(1, size, size, generator=g) > 0.5).float()
    del targets["depth"]
    return image, targets


def _sphere_normals(size: int, radius: float) -> torch.Tensor:
    """Normals of a sphere centred in the image (orthographic; x right, y down, z forward: visible n_z < 0)."""
    c = torch.arange(size, dtype=torch.float64) + 0.5 - size / 2
    y, x = torch.meshgrid(c / radius, c / radius, indexing="ij")
    inside = x**2 + y**2 < 1
    n = torch.stack([x, y, -(1 - x**2 - y**2).clamp(min=0).sqrt()])
    return (n * inside).float()


def test_warp_identity_and_mirror_are_exact_for_targets():
    image, targets = _sample()
    same_image, same = warp(image, targets, KINDS, similarity(1.0, 0.0, False))
    assert all(torch.equal(same[k], targets[k]) for k in targets)
    assert torch.allclose(same_image, image, atol=1e-4)
    _, mirrored = warp(image, targets, KINDS, similarity(1.0, 0.0, True))
    _, flipped = hflip(image, targets, KINDS)
    assert all(torch.equal(mirrored[k], flipped[k]) for k in targets)  # the flip is the same map, vectors included


@pytest.mark.parametrize("angle", [90.0, -90.0])
def test_quarter_turn_moves_pixels_and_turns_vectors_the_same_way(angle):
    """Counter-clockwise on screen (y down): the pixel right of the centre goes above it, vector (1, 0) -> (0, -1)."""
    size = 9  # odd: pixel (4, 4) is the centre
    semseg = torch.zeros(size, size, dtype=torch.int64)
    semseg[4, 6] = 3  # two pixels right of the centre
    normals = torch.zeros(3, size, size)
    normals[0, 4, 6] = 1.0
    _, out = warp(
        torch.rand(3, size, size),
        {"semseg": semseg, "normals": normals},
        {"semseg": "label", "normals": "normals"},
        similarity(1.0, angle, False),
    )
    row = 2 if angle > 0 else 6  # above (y down) for counter-clockwise, below for clockwise
    assert out["semseg"].nonzero().tolist() == [[row, 4]]
    assert torch.allclose(out["normals"][:, row, 4], torch.tensor([0.0, -1.0 if angle > 0 else 1.0, 0.0]), atol=1e-6)
    assert (out["normals"].norm(dim=0) > 0).sum() == 1


@pytest.mark.parametrize("angle, scale", [(17.0, 1.0), (-20.0, 1.2), (9.0, 0.8)])
def test_rotated_sphere_normals_stay_a_sphere(angle, scale):
    """Turning a sphere's image about its centre leaves its normal map unchanged only if the vectors turn along."""
    size, radius = 32, 11.0
    normals = _sphere_normals(size, radius)
    _, out = warp(
        torch.rand(3, size, size), {"normals": normals}, {"normals": "normals"}, similarity(scale, angle, False)
    )
    expected = _sphere_normals(size, radius * scale)
    valid = (out["normals"].norm(dim=0) > 0) & (expected.norm(dim=0) > 0)
    assert valid.sum() > 0.9 * math.pi * (radius * scale) ** 2 * 0.8
    # nearest sampling picks a source pixel up to ~0.71 px away, so vectors differ a little, mostly near the rim;
    # unturned vectors would miss by the angle's chord (0.16-0.35 x |n_xy|) nearly everywhere
    error = (out["normals"] - expected).norm(dim=0)[valid]
    assert torch.quantile(error, 0.5) < 0.05 and error.max() < 0.6
    assert torch.allclose(out["normals"].norm(dim=0)[out["normals"].norm(dim=0) > 0], torch.tensor(1.0), atol=1e-6)


def test_constant_normals_turn_by_the_pinned_angle_and_stay_unit():
    size, angle = 16, 20.0
    direction = torch.nn.functional.normalize(torch.tensor([0.6, -0.3, -0.7]), dim=0)
    normals = direction[:, None, None].expand(3, size, size).clone()
    _, out = warp(
        torch.rand(3, size, size), {"normals": normals}, {"normals": "normals"}, similarity(1.1, angle, False)
    )
    valid = out["normals"].norm(dim=0) > 0
    assert valid.sum() > size * size // 2
    got = out["normals"][:, valid]
    assert torch.allclose(got.norm(dim=0), torch.ones(got.shape[1]), atol=1e-6)
    # y points down, so a counter-clockwise turn on screen lowers the (x, y) angle atan2(y, x) by the angle
    change = torch.atan2(got[1], got[0]) - torch.atan2(direction[1], direction[0])
    assert torch.allclose(change, torch.tensor(-math.radians(angle)), atol=1e-5)
    assert torch.allclose(got[2], direction[2].expand_as(got[2]))


def test_padding_is_background_for_labels_and_invalid_for_normals():
    image, targets = _pascal_sample(16)
    targets["semseg"] = targets["semseg"].clamp(min=1)  # no background inside: any 0 comes from padding
    targets["edge"] = torch.ones(1, 16, 16)
    targets["saliency"] = torch.ones(1, 16, 16)
    out_image, out = warp(image, targets, KINDS_PASCAL, similarity(0.5, 0.0, False))
    border = torch.ones(16, 16, dtype=torch.bool)
    border[4:12, 4:12] = False  # the half-size content sits in the centre
    for task in ("semseg", "parts", "edge", "saliency"):
        assert (out[task].reshape(-1, 16, 16)[:, border] == 0).all(), task
        assert (out[task].reshape(-1, 16, 16)[:, ~border] != 0).all(), task
    assert (out["normals"][:, border] == 0).all() and (out["normals"].norm(dim=0)[~border] > 0.99).all()
    assert (out_image[:, border] == 0).all()
    assert target_kind("label").pad == 0 != target_kind("label").invalid  # trained background, not the ignore value


def test_padding_keeps_an_unlabelled_target_all_ignored():
    image, targets = _pascal_sample(16)
    targets["parts"] = torch.full((16, 16), 255)  # an image without people
    _, out = warp(image, targets, KINDS_PASCAL, similarity(0.5, 10.0, True), (2.0, -1.0))
    assert (out["parts"] == 255).all()


def test_paper_warp_keeps_labels_integer_and_binary_values():
    image, targets = _pascal_sample(16)
    torch.manual_seed(0)
    warp_step = paper_steps(KINDS_PASCAL, list(KINDS_PASCAL))[0]
    for _ in range(5):
        _, out = warp_step(image, targets)
        for task in ("semseg", "parts"):
            assert out[task].dtype == torch.int64
            assert set(out[task].unique().tolist()) <= set(targets[task].unique().tolist()) | {0}
        for task in ("edge", "saliency"):
            assert set(out[task].unique().tolist()) <= {0.0, 1.0}
        valid = out["normals"].norm(dim=0) > 0
        assert torch.allclose(out["normals"].norm(dim=0)[valid], torch.tensor(1.0), atol=1e-6)


def test_paper_steps_take_the_widest_geometry_and_photometric_only_with_label_kinds():
    assert len(paper_steps({"normals": "normals"}, ["normals"])) == 1  # ASTMT's pipeline: geometry only
    assert paper_steps(KINDS_PASCAL, list(KINDS_PASCAL))[1] is photometric_step


def test_a_single_task_step_gets_exactly_its_tasks_pipeline():
    assert len(paper_steps(KINDS_PASCAL, ["normals"])) == 1  # a normals step: no photometric set
    assert paper_steps(KINDS_PASCAL, ["semseg"])[1] is photometric_step
    image, targets = _pascal_sample(16)
    dataset = _FixedSample(image, targets)
    for trained in (("normals",), ("semseg",)):
        torch.manual_seed(0)
        sample = dataset[(0, trained)]
        torch.manual_seed(0)
        own_image, own_targets = build_transform("paper", KINDS_PASCAL, trained)(image.clone(), dict(targets))
        assert torch.equal(sample["image"], own_image) and torch.equal(
            sample["targets"]["normals"], own_targets["normals"]
        )
        torch.manual_seed(0)
        widest_image, _ = build_transform("paper", KINDS_PASCAL)(image.clone(), dict(targets))
        assert not torch.equal(sample["image"], widest_image)
        assert sample["meta"]["index"] == 0


class _FixedSample(MultiTaskDataset):
    def __init__(self, image, targets):
        super().__init__("pascal_context", "train", KINDS_PASCAL, image.shape[-1], "paper")
        self.sample = image, targets

    def __len__(self) -> int:
        return 1

    def load(self, index):
        image, targets = self.sample
        return image.clone(), {k: t.clone() for k, t in targets.items()}, "fixed"


@pytest.mark.parametrize("op", [op for _, ops in photometric.OFFICIAL for op in ops], ids=lambda op: op.__name__)
def test_each_photometric_op_changes_the_image_within_range(op):
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2)) * 0.8 + 0.1
    torch.manual_seed(3)
    out = op(image.clone())
    assert out.shape == image.shape and out.dtype == image.dtype
    assert 0 <= out.min() and out.max() <= 1
    assert not torch.allclose(out, image, atol=1e-3)


def test_photometric_step_changes_the_image_only():
    image, targets = _pascal_sample(16)
    copies = {k: t.clone() for k, t in targets.items()}
    torch.manual_seed(0)
    changed = 0
    for _ in range(4):
        out_image, out = photometric_step(image, targets)
        changed += int(not torch.equal(out_image, image))
        assert all(torch.equal(out[k], copies[k]) and out[k].dtype == copies[k].dtype for k in copies)
    assert changed > 0


def test_rgb_hsv_round_trip():
    image = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.allclose(photometric.hsv_to_rgb(photometric.rgb_to_hsv(image)), image, atol=1e-12)
    red = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    assert torch.allclose(photometric.rgb_to_hsv(red)[:, 0, 0], torch.tensor([0.0, 1.0, 1.0]))


@pytest.mark.parametrize("augment", ["flip", "paper"])
def test_same_seed_same_augmentation(augment):
    image, targets = _pascal_sample(16)
    transform = build_transform(augment, KINDS_PASCAL)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append([transform(image, targets) for _ in range(3)])
    for (a_image, a), (b_image, b) in zip(*runs):
        assert torch.equal(a_image, b_image) and all(torch.equal(a[k], b[k]) for k in a)


def test_another_seed_another_paper_augmentation():
    image, targets = _pascal_sample(16)
    transform = build_transform("paper", KINDS_PASCAL)
    outputs = []
    for seed in (7, 8):
        torch.manual_seed(seed)
        outputs.append(transform(image, targets)[0])
    assert not torch.equal(*outputs)
