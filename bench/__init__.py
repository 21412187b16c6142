"""The benchmark suite: ``python -m bench [--quick] [--out BENCHMARKS.md]`` (``make bench``).

Measures, on the current machine, the same model and training step the trainer uses (``tsn.engine``):

1. training throughput (images x tasks / s) per architecture, size and schedule;
2. the encoder-once multi-task step against a per-task loop that recomputes the encoder (outputs checked equal);
3. achieved FLOP/s of a training step against the measured matmul peaks (BLAS and oneDNN/cuDNN) of this run;
4. synthetic data generation rate and the fraction of a step spent waiting for data;
5. sweep overhead: the sweep driver's wall time (Optuna storage + W&B offline) less the training inside it;
6. peak memory per architecture;
7. the CPU fast paths before and after (reference ops vs matrix-product paths), side by side;
8. the SEISM-compatible edge evaluation per 512² image.

:mod:`bench.measure` measures and returns data, :mod:`bench.report` writes it as Markdown. Every time is the
median of repeated runs; ratios are measured side by side in one process. ``--quick`` runs tiny sizes in a minute or two
(the tests use it); its numbers mean nothing. A top-level package, not part of ``tsn``: it imports the sweep
driver (Optuna, W&B), which the model core never does.

On a GPU, :mod:`bench.gpu` measures BENCHMARKS.md's GPU section (its own markers; ``python -m bench.gpu``) and
:mod:`bench.gpu_check` runs it with the CUDA tests and a trial per architecture (``make gpu-check``).
"""

from __future__ import annotations

from pathlib import Path

from .measure import measure_all
from .report import check, render, write


def run(quick: bool, out: Path | None, threads: int = 0) -> str:
    """Measure everything and return the report; with ``out``, write it there (keeping its hand-written parts)
    and return the whole file."""
    if out is not None:
        check(out)
    generated = render(measure_all(quick, threads))
    return write(out, generated) if out is not None else generated
