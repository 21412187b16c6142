"""Task-condition vectors v_tau: the fixed inputs of the task-embedding network C.

Both encodings are deterministic functions of (T, d[, seed]) and are stored by the model as buffers: they are
never trained. Only C (and the per-block FC_A layers) learn how to turn them into AdaIN parameters. Codes drawn
elsewhere (e.g. a paper's published draws) are read from a .npy file with :func:`codes_from_file` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

ENCODINGS = ("orthogonal", "gaussian")


def orthogonal_codes(num_tasks: int, dim: int) -> torch.Tensor:
    """Block one-hot codes: task k has ones at [k*n, (k+1)*n) with n = dim / num_tasks (the paper's default)."""
    if num_tasks < 1:
        raise ValueError(f"orthogonal codes need at least one task, got {num_tasks}")
    if dim < num_tasks or dim % num_tasks:
        valid = ", ".join(str(num_tasks * n) for n in range(1, 6))
        raise ValueError(
            f"orthogonal task codes need embedding_dim divisible by the number of tasks ({num_tasks}); "
            f"got {dim}, valid: {valid}, ..."
        )
    ones_per_task = dim // num_tasks
    codes = torch.zeros(num_tasks, dim)
    for k in range(num_tasks):
        codes[k, k * ones_per_task : (k + 1) * ones_per_task] = 1.0
    return codes


def gaussian_codes(num_tasks: int, dim: int, seed: int = 0) -> torch.Tensor:
    """I.i.d. N(0, 1) codes, one per task, fixed by ``seed`` and independent of the global RNG."""
    if num_tasks < 1 or dim < 1:
        raise ValueError(f"gaussian codes need num_tasks >= 1 and embedding_dim >= 1, got {num_tasks}, {dim}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_tasks, dim, generator=generator)


def task_codes(encoding: str, num_tasks: int, dim: int, seed: int = 0) -> torch.Tensor:
    """The ``[num_tasks, dim]`` matrix of task-condition vectors for ``encoding``."""
    if encoding == "orthogonal":
        return orthogonal_codes(num_tasks, dim)
    if encoding == "gaussian":
        return gaussian_codes(num_tasks, dim, seed)
    raise ValueError(f"unknown task encoding {encoding!r}; valid: {list(ENCODINGS)}")


def codes_from_file(path: str, num_tasks: int, dim: int) -> torch.Tensor:
    """The ``[num_tasks, dim]`` codes stored in the .npy file ``path``: row k is the run's k-th task."""
    file = Path(path)
    expected = f"expected a .npy array of shape ({num_tasks}, {dim}) (tasks x model.embedding_dim) of finite numbers"
    if not file.is_file():
        raise ValueError(f"model.codes_file not found: {file}; {expected}")
    try:
        array = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"model.codes_file {file} cannot be read ({' '.join(str(err).split())}); {expected}") from None
    if not isinstance(array, np.ndarray):  # an .npz archive
        array.close()
        raise ValueError(f"model.codes_file {file} is an .npz archive, not one array; {expected}")
    if array.dtype.kind not in "fiu":
        raise ValueError(f"model.codes_file {file} holds {array.dtype} values; {expected}")
    if array.shape != (num_tasks, dim):
        raise ValueError(f"model.codes_file {file} has shape {array.shape}; {expected}")
    if not np.isfinite(array).all():
        raise ValueError(f"model.codes_file {file} holds NaN or infinite values; {expected}")
    return torch.tensor(array, dtype=torch.float32)
