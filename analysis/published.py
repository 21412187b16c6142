"""The TSN paper's published numbers (Sun et al., ICCV 2021, §5 of reference/tsn-paper.md): the only numbers typed
into ``analysis/``. They are comparable with ours only for the ``paper`` budget on ``pascal_context`` (ResNet-18,
ASTMT metric conventions); metrics in percent, normals mean error in degrees, Δm in percent (astmt, positive = worse).
"""

from __future__ import annotations

COMPARABLE = {"dataset": "pascal_context", "budget": "paper"}

# The paper's row orders (Table 1 and the embedding ablation) and the task counts of its scaling figure.
ARCHITECTURE_ORDER = ("single_task", "multi_decoder", "task_bn", "task_in", "tsn")
ENCODING_ORDER = ("orthogonal", "gaussian")
SCALING_TASK_COUNTS = tuple(range(1, 10))

# Table 1, PASCAL-Context, ResNet-18: {architecture: {task: primary metric, "delta_m": %, "n_params": count}}.
TABLE1: dict[str, dict[str, float | None]] = {
    "single_task": {
        "edge": 71.3,
        "semseg": 64.3,
        "parts": 55.3,
        "normals": 16.3,
        "saliency": 62.9,
        "delta_m": None,
        "n_params": 88.7e6,
    },
    "multi_decoder": {
        "edge": 72.2,
        "semseg": 55.4,
        "parts": 55.5,
        "normals": 16.8,
        "saliency": 59.1,
        "delta_m": 4.32,
        "n_params": 43.9e6,
    },
    "task_bn": {
        "edge": 71.6,
        "semseg": 55.9,
        "parts": 54.1,
        "normals": 16.7,
        "saliency": 60.0,
        "delta_m": 4.38,
        "n_params": 17.7e6,
    },
    "task_in": {
        "edge": 70.7,
        "semseg": 62.8,
        "parts": 54.6,
        "normals": 16.8,
        "saliency": 63.1,
        "delta_m": 1.43,
        "n_params": 17.7e6,
    },
    "tsn": {
        "edge": 70.6,
        "semseg": 64.2,
        "parts": 55.0,
        "normals": 16.3,
        "saliency": 63.3,
        "delta_m": 0.30,
        "n_params": 18.3e6,
    },
}

# Task-embedding ablation: {(encoding, d): {task: primary metric, "delta_m": %}}.
EMBEDDING: dict[tuple[str, int], dict[str, float]] = {
    ("orthogonal", 50): {
        "edge": 70.8,
        "semseg": 63.6,
        "parts": 55.2,
        "normals": 16.3,
        "saliency": 63.4,
        "delta_m": 0.32,
    },
    ("orthogonal", 100): {
        "edge": 70.6,
        "semseg": 64.2,
        "parts": 55.0,
        "normals": 16.3,
        "saliency": 63.3,
        "delta_m": 0.30,
    },
    ("orthogonal", 150): {
        "edge": 70.5,
        "semseg": 64.3,
        "parts": 54.9,
        "normals": 16.3,
        "saliency": 63.2,
        "delta_m": 0.38,
    },
    ("orthogonal", 250): {
        "edge": 70.5,
        "semseg": 63.8,
        "parts": 54.8,
        "normals": 16.4,
        "saliency": 63.1,
        "delta_m": 0.75,
    },
    ("gaussian", 50): {"edge": 70.8, "semseg": 64.1, "parts": 55.1, "normals": 16.3, "saliency": 63.0, "delta_m": 0.30},
    ("gaussian", 100): {
        "edge": 70.3,
        "semseg": 63.2,
        "parts": 54.4,
        "normals": 16.5,
        "saliency": 63.1,
        "delta_m": 1.22,
    },
    ("gaussian", 150): {
        "edge": 70.7,
        "semseg": 63.6,
        "parts": 54.8,
        "normals": 16.3,
        "saliency": 63.4,
        "delta_m": 0.44,
    },
}
