"""Specification of the joint augmentation: image and targets stay aligned, targets keep their meaning."""

import pytest
import torch

from tsn.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform, hflip, resize, scale_pad_crop

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


def test_scale_down_pads_with_each_kinds_invalid_value():
    image, targets = _sample(16)
    torch.manual_seed(0)
    out_image, out = scale_pad_crop(image, targets, KINDS, 0.5, 16)
    pad = out["semseg"] == 255
    assert pad.sum() >= 16 * 16 - 8 * 8  # at least the padded area
    assert (out["edge"] == 255).sum() == 16 * 16 - 8 * 8
    assert (out["normals"].norm(dim=0) == 0).sum() == 16 * 16 - 8 * 8
    assert (out_image.abs().sum(0) == 0).sum() >= 16 * 16 - 8 * 8
    assert out_image.shape == (3, 16, 16) and out["depth"].shape == (1, 16, 16)


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
    transform = build_transform("flip", {"semseg": "label"}, 32)
    torch.manual_seed(0)
    flipped = 0
    for _ in range(8):
        out_image, out = transform(image, {"semseg": semseg})
        assert torch.equal((out_image * std + mean).argmax(0), out["semseg"])
        flipped += int(out["semseg"][0, -1] == 0)
    assert 0 < flipped < 8  # both outcomes of the coin occurred


@pytest.mark.parametrize("scale", [0.5, 0.8, 1.0, 1.5])
def test_scale_pad_crop_moves_image_and_labels_together(scale):
    image, semseg = _blocky_one_hot(2)
    torch.manual_seed(3)
    out_image, out = scale_pad_crop(image, {"semseg": semseg}, {"semseg": "label"}, scale, 32)
    valid = out["semseg"] != 255
    assert valid.sum() == min(32, round(32 * scale)) ** 2
    agree = (out_image.argmax(0) == out["semseg"])[valid].float().mean()
    assert agree > 0.9  # bilinear image vs nearest labels may differ only along block borders


def test_paper_pipeline_output_shapes_and_label_set():
    image, semseg = _blocky_one_hot(4)
    transform = build_transform("paper", {"semseg": "label"}, 32)
    torch.manual_seed(5)
    for _ in range(5):
        out_image, out = transform(image, {"semseg": semseg})
        assert out_image.shape == (3, 32, 32) and out["semseg"].shape == (32, 32)
        assert set(out["semseg"].unique().tolist()) <= {0, 1, 2, 255}


def test_none_only_normalises():
    image, targets = _sample()
    out_image, out = build_transform(None, KINDS, 16)(image, targets)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    assert torch.allclose(out_image, (image - mean) / std)
    assert all(torch.equal(out[k], targets[k]) for k in targets)


def test_unknown_augmentation_is_a_value_error():
    with pytest.raises(ValueError, match="'cutmix'.*valid"):
        build_transform("cutmix", KINDS, 16)
