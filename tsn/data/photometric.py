"""The official TSN photometric set: image-only colour and texture perturbations on float RGB in [0, 1].

Mirrors the albumentations pipeline of the authors' PASCAL-Context loader (GuoleiSun/TSNs, first commit,
``fblib/dataloaders/pascal_context.py``), applied after the geometry, in this order and with these odds:

1. additive Gaussian noise, p 0.2: one noise plane for all channels, std ~ U(0.01, 0.05) (imgaug's 0.01-0.05 x 255);
2. one of {histogram equalisation, brightness + U(-0.2, 0.2), gamma ~ U(0.8, 1.2)}, p 0.9;
3. one of {sharpen (imgaug's kernel, alpha ~ U(0.2, 0.5), lightness ~ U(0.5, 1)), 3x3 box blur, 3x3 motion blur}, p 0.9;
4. one of {contrast x U(0.8, 1.2), HSV shift (hue +-20/180 of the circle, saturation +-30/255, value +-20/255)}, p 0.9.

"One of" picks uniformly. Contrast scales about 0 and brightness adds, as albumentations' uint8 look-up tables do.
Deviation: the official CLAHE (OpenCV, on LAB lightness) has no torchvision counterpart; torchvision's global
histogram equalisation (per channel) stands in for it. Every draw uses torch's global generator.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch.nn import functional as nnf

ImageOp = Callable[[torch.Tensor], torch.Tensor]


def uniform(low: float, high: float) -> float:
    """One draw from U(low, high) off torch's global generator."""
    return float(torch.empty((), dtype=torch.float64).uniform_(low, high))


def gaussian_noise(image: torch.Tensor) -> torch.Tensor:
    noise = torch.randn(image.shape[-2:], dtype=image.dtype) * uniform(0.01, 0.05)
    return (image + noise).clamp_(0, 1)


def equalize(image: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F  # on first use: importing torchvision takes seconds

    return F.equalize(image.mul(255).round_().to(torch.uint8)).to(image.dtype).div_(255)


def brightness(image: torch.Tensor) -> torch.Tensor:
    return (image + uniform(-0.2, 0.2)).clamp_(0, 1)


def gamma(image: torch.Tensor) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as F

    return F.adjust_gamma(image, uniform(0.8, 1.2))


def contrast(image: torch.Tensor) -> torch.Tensor:
    return (image * uniform(0.8, 1.2)).clamp_(0, 1)


def filter3x3(image: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with ``kernel`` [3, 3], borders reflected (OpenCV's default BORDER_REFLECT_101)."""
    padded = nnf.pad(image[None], (1, 1, 1, 1), mode="reflect")
    weight = kernel.to(image.dtype).expand(image.shape[0], 1, 3, 3)
    return nnf.conv2d(padded, weight, groups=image.shape[0])[0].clamp_(0, 1)


def sharpen(image: torch.Tensor) -> torch.Tensor:
    alpha, lightness = uniform(0.2, 0.5), uniform(0.5, 1.0)
    effect = torch.full((3, 3), -1.0, dtype=torch.float64)
    effect[1, 1] = 8 + lightness
    identity = torch.zeros(3, 3, dtype=torch.float64)
    identity[1, 1] = 1
    return filter3x3(image, (1 - alpha) * identity + alpha * effect)


def box_blur(image: torch.Tensor) -> torch.Tensor:
    return filter3x3(image, torch.full((3, 3), 1 / 9, dtype=torch.float64))


def motion_blur(image: torch.Tensor) -> torch.Tensor:
    """Average along a random line through a 3x3 kernel (albumentations' MotionBlur with blur_limit 3)."""
    xs, xe = (int(v) for v in torch.randint(3, (2,)))
    ys, ye = (int(v) for v in (torch.randperm(3)[:2] if xs == xe else torch.randint(3, (2,))))
    kernel = torch.zeros(3, 3, dtype=torch.float64)
    steps = max(abs(xe - xs), abs(ye - ys))
    for i in range(steps + 1):
        f = i / steps if steps else 0.0
        kernel[math.floor(ys + f * (ye - ys) + 0.5), math.floor(xs + f * (xe - xs) + 0.5)] = 1
    return filter3x3(image, kernel / kernel.sum())


def rgb_to_hsv(image: torch.Tensor) -> torch.Tensor:
    """[3, H, W] RGB in [0, 1] -> HSV with hue as a fraction of the circle."""
    r, g, b = image
    value, argmax = image.max(0)
    delta = value - image.min(0).values
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.stack([(g - b) / safe, (b - r) / safe + 2, (r - g) / safe + 4]).gather(0, argmax[None])[0]
    hue = torch.where(delta > 0, hue / 6 % 1, torch.zeros_like(hue))
    saturation = delta / torch.where(value > 0, value, torch.ones_like(value))  # delta is 0 where value is
    return torch.stack([hue, saturation, value])


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype)[:, None, None] + hue * 6) % 6
    return value - value * saturation * (torch.minimum(k, 4 - k).clamp(0, 1))


def hsv_shift(image: torch.Tensor) -> torch.Tensor:
    h, s, v = rgb_to_hsv(image)
    h = (h + uniform(-20, 20) / 180) % 1  # OpenCV's uint8 hue spans 0-180
    s = (s + uniform(-30, 30) / 255).clamp(0, 1)
    v = (v + uniform(-20, 20) / 255).clamp(0, 1)
    return hsv_to_rgb(torch.stack([h, s, v])).clamp_(0, 1)


# (probability, ops): with that probability one op of the group, chosen uniformly, is applied.
OFFICIAL: tuple[tuple[float, tuple[ImageOp, ...]], ...] = (
    (0.2, (gaussian_noise,)),
    (0.9, (equalize, brightness, gamma)),
    (0.9, (sharpen, box_blur, motion_blur)),
    (0.9, (contrast, hsv_shift)),
)


def apply_groups(image: torch.Tensor, groups: Sequence[tuple[float, Sequence[ImageOp]]] = OFFICIAL) -> torch.Tensor:
    for probability, ops in groups:
        if float(torch.rand(())) < probability:
            image = ops[int(torch.randint(len(ops), ()))](image)
    return image
