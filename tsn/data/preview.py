"""A PNG grid of samples and their ground truth (rows: samples; columns: image, then one per task)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
import torch  # noqa: E402

from tsn.data import build_dataset  # noqa: E402
from tsn.data.transforms import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from tsn.target_kinds import target_kind  # noqa: E402
from tsn.tasks import dataset_tasks  # noqa: E402


def show(ax: Axes, kind: str, target: torch.Tensor) -> None:
    """Draw one target of ``kind`` on ``ax`` as its kind does (ignore / invalid pixels show as the axes' white)."""
    array, style = target_kind(kind).draw(target)
    ax.imshow(array, interpolation="nearest", **style)


def write_preview(dataset_name: str, out_path: str | Path, n: int = 6, image_size: int = 128,
                  tasks: Sequence[str] | None = None, seed: int = 0, root: str | None = None,
                  split: str = "val") -> Path:
    """Write the first ``n`` samples of ``split`` with every task's ground truth to ``out_path`` (PNG)."""
    specs = dataset_tasks(dataset_name, tasks).tasks
    ds = build_dataset(dataset_name, split, [t.name for t in specs], image_size, root=root, seed=seed,
                       num_samples=n if dataset_name == "synthetic" else None)
    n = min(n, len(ds))
    fig, axes = plt.subplots(n, len(specs) + 1, figsize=(1.6 * (len(specs) + 1), 1.6 * n), squeeze=False)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    for row in range(n):
        sample = ds[row]
        axes[row, 0].imshow((sample["image"] * std + mean).permute(1, 2, 0).clamp(0, 1).numpy())
        for col, spec in enumerate(specs, start=1):
            show(axes[row, col], spec.target, sample["targets"][spec.name])
    for col, title in enumerate(["image", *(t.name for t in specs)]):
        axes[0, col].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main_preview(argv: Sequence[str] | None = None) -> Path:
    """``python -m tsn data preview`` arguments: --dataset, --out, --n, --image-size, --tasks, --seed, --root."""
    parser = argparse.ArgumentParser(prog="tsn data preview", description=write_preview.__doc__)
    parser.add_argument("--dataset", default="synthetic")
    parser.add_argument("--out", required=True)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--tasks", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None)
    args = parser.parse_args(argv)
    return write_preview(args.dataset, args.out, args.n, args.image_size, args.tasks, args.seed, args.root)
