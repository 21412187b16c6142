"""The model core stays free of tracking: nothing in tsn/ imports Optuna, W&B, the sweep layer or the benchmarks."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("optuna", "wandb", "sweeps", "bench")


def imported_roots(source: str) -> set[str]:
    """The top-level package of every import statement in ``source``, at module level or inside a function."""
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_imported_roots_sees_imports_inside_functions() -> None:
    source = "import os.path\ndef f():\n    from sweeps import driver\n    import wandb as w\nfrom . import bench\n"
    assert imported_roots(source) == {"os", "sweeps", "wandb"}  # the relative import is tsn's own module


def test_no_tsn_source_imports_optuna_wandb_sweeps_or_bench() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path.read_text()) & set(FORBIDDEN))
        for path in sorted((ROOT / "tsn").rglob("*.py"))
    }
    assert len(offenders) > 20  # every module was read
    assert {path: names for path, names in offenders.items() if names} == {}


def test_importing_every_tsn_module_loads_no_optuna_wandb_sweeps_bench_or_torchvision() -> None:
    code = (
        "import importlib, json, pkgutil, sys, tsn\n"
        "names = [m.name for m in pkgutil.walk_packages(tsn.__path__, 'tsn.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "late = sorted(n for n in sys.modules if n.split('.')[0] == 'torchvision')\n"
        "print(json.dumps({'modules': names, 'loaded': loaded, 'late': late}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert {"tsn.train", "tsn.engine", "tsn.cli", "tsn.__main__", "tsn.data.synthetic"} <= set(result["modules"])
    assert result["loaded"] == []
    # torchvision is imported where a ResNet, a resize or a photometric step needs it: its import pulls in
    # torch._dynamo (seconds), which a CLI that trains nothing (tables, export, --help) should not pay
    assert result["late"] == []
