"""Generative test (issue 16): configurations, overrides and experiment files drawn from the schema, then mutated
(types, signs, non-finite values, sizes, unicode, nesting), through the real entry points in-process.

Every run must exit 0, 1 or 2; a failure is ONE line on stderr and leaves every file as it was. Nothing trains:
the run is stopped where it would start computing (the Trainer, or the study storage of a sweep), so the test
exercises validation only. ``make test`` runs the quick profile (a few seconds); ``make fuzz`` the long one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import tempfile
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sweeps.driver
import tsn.config
import tsn.train
from sweeps.__main__ import main as sweeps_main
from sweeps.experiment import parse_experiment
from tsn.__main__ import main as tsn_main
from tsn.config import SECTIONS, ConfigError

settings.register_profile(
    "quick", max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile(
    "fuzz", max_examples=1500, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
PROFILE = settings.get_profile(os.environ.get("TSN_FUZZ_PROFILE", "quick"))

TASKS = ("semseg", "parts", "edge", "normals", "saliency", "depth")
# Valid names of the string fields (the schema's choices); anything else is drawn as text.
CHOICES = {
    "architecture": ("tsn", "task_in", "task_bn", "multi_decoder", "single_task"),
    "backbone": ("resnet18", "compact"),
    "encoding": ("orthogonal", "gaussian"),
    "dataset": ("synthetic",),
    "schedule": ("epoch", "batch", "joint"),
    "device": ("cpu", "auto"),
    "pretrained": ("none",),
    "head": ("shared", "per_task"),
    "augment": ("flip",),
    "edge_evaluator": ("fast", "seism"),
    "final_edge_evaluator": ("fast", "seism"),
}
FIELDS = [(section, f) for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _base(annotation: Any) -> Any:
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return options[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) else annotation


def valid_value(section: str, item: dataclasses.Field) -> st.SearchStrategy:
    """A value drawn from the field's type and declared domain (mostly valid, never mutated)."""
    kind = _base(typing.get_type_hints(SECTIONS[section])[item.name])
    bounds = item.metadata.get("domain")
    if kind is bool:
        return st.booleans()
    if kind is int:
        low = int(bounds.low) if bounds and bounds.low is not None else 0
        return st.integers(low, low + 64)
    if kind is float:
        low = bounds.low if bounds and bounds.low is not None else 0.0
        high = bounds.high if bounds and bounds.high is not None else low + 1.0
        return st.floats(low, min(high, low + 2.0), allow_nan=False, exclude_min=True)
    if kind is str:
        return st.sampled_from(CHOICES[item.name]) if item.name in CHOICES else st.text(max_size=8)
    if typing.get_origin(kind) is tuple:
        return st.lists(
            st.sampled_from(TASKS) if typing.get_args(kind)[0] is str else st.integers(1, 3), min_size=1, max_size=3
        )
    return st.dictionaries(st.sampled_from(TASKS), st.floats(0.0, 2.0), max_size=3)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "nan", "-inf", "1e999", "∞", "é", "\u202e", "0x10", "~"]),
)


def mutate(value: Any) -> st.SearchStrategy:
    """The value with its type, sign, finiteness, size, text or nesting changed."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    options = [SCALARS, st.just([value]), st.just({"k": value}), st.just([[[[value]]]])]
    if numeric:
        options += [st.just(-value), st.just(value * 10**9), st.sampled_from([float("nan"), float("inf"), -0.0])]
    return st.one_of(options)


@st.composite
def config(draw, max_keys: int = 4) -> dict[str, dict[str, Any]]:
    """A nested ``{section: {key: value}}`` with some keys valid and some mutated (or unknown)."""
    out: dict[str, dict[str, Any]] = {}
    for section, item in draw(st.lists(st.sampled_from(FIELDS), max_size=max_keys, unique=True)):
        value = draw(valid_value(section, item))
        if draw(st.integers(0, 2)) == 0:
            value = draw(mutate(value))
        out.setdefault(section, {})[item.name] = value
    if draw(st.integers(0, 9)) == 0:
        out.setdefault(draw(st.sampled_from([*SECTIONS, "extra", "ünïcode"])), {})[draw(st.text(max_size=6))] = 1
    return out


def _yaml(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, default_flow_style=True, width=10**6).strip()


@st.composite
def overrides(draw) -> list[str]:
    cfg = draw(config(max_keys=3))
    texts = [f"{s}.{k}={_yaml(v)}" for s, values in cfg.items() for k, v in values.items()]
    return texts + ([draw(st.text(max_size=10))] if draw(st.integers(0, 9)) == 0 else [])


@st.composite
def file_bytes(draw, document: Any) -> bytes:
    """``document`` as YAML, sometimes damaged: non-UTF-8 bytes, an alias bomb or a cut."""
    text = yaml.safe_dump(document, allow_unicode=True)
    damage = draw(st.sampled_from(["none"] * 6 + ["latin1", "laughs", "cut", "tabs"]))
    if damage == "latin1":
        return text.encode("utf-8") + "é: 1\n".encode("latin-1")
    if damage == "laughs":
        return (
            "b0: &b0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(f"b{k}: &b{k} [{', '.join([f'*b{k - 1}'] * 10)}]\n" for k in range(1, 7))
        ).encode() + text.encode()
    if damage == "cut":
        return text.encode()[: draw(st.integers(0, len(text)))]
    if damage == "tabs":
        return ("\t" + text).encode()
    return text.encode()


@st.composite
def experiment(draw) -> dict[str, Any]:
    axes: dict[str, list[Any]] = {}
    for section, item in draw(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=3, unique=True)):
        values = draw(st.lists(valid_value(section, item), min_size=1, max_size=3))
        if draw(st.booleans()):
            values[0] = draw(mutate(values[0]))
        axes[f"{section}.{item.name}"] = values
    doc: dict[str, Any] = {
        "name": draw(st.sampled_from(["fuzz", "a-b_c", "fuzz"]) | st.text(max_size=6)),
        "axes": {draw(st.sampled_from(["scientific"] * 4 + ["nuisance", "other"])): axes},
        "fixed": draw(config(max_keys=2)),
    }
    if draw(st.booleans()):
        doc["baseline"] = draw(st.sampled_from(["single_task", "none", "none", "both"]))
    if draw(st.integers(0, 2)) == 0:
        doc["search"] = draw(search())
        doc["baseline"] = draw(st.sampled_from(["none"] * 4 + ["single_task"]))
    return doc


@st.composite
def search(draw) -> dict[str, Any]:
    """A ``search:`` section: ranges over drawn fields (numeric or not), some ends or keys mutated."""
    space: dict[str, Any] = {}
    for section, item in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2, unique=True)):
        ends = {"low": draw(valid_value(section, item)), "high": draw(valid_value(section, item))}
        if draw(st.booleans()):
            ends["log"] = draw(st.booleans())
        if draw(st.integers(0, 3)) == 0:
            key = draw(st.sampled_from(["low", "high", "log", "step"]))
            ends[key] = draw(mutate(ends.get(key, 1)))
        space[f"{section}.{item.name}"] = ends
    out: dict[str, Any] = {"trials": draw(st.integers(1, 3)), "space": space}
    if draw(st.integers(0, 3)) == 0:
        key = draw(st.sampled_from(["trials", "seed", "sampler", "objective", "startup_trials", "extra"]))
        out[key] = draw(SCALARS)
    return out


def _stop(*_args, **_kwargs):
    """Where the entry point would start computing (or open the study storage): validation passed."""
    raise SystemExit(0)


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def run_entry_point(main, argv: list[str], root: Path) -> tuple[int, str]:
    """Run ``main(argv)`` in-process (no training, no network); (exit code, stderr)."""
    err = io.StringIO()
    before = _files(root)
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stderr(err),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        patch.setattr(tsn.train, "Trainer", _stop)
        patch.setattr(sweeps.driver, "open_storage", _stop)
        patch.setattr(tsn.config, "ensure_imagenet_file", lambda backbone: None)
        patch.chdir(root)
        try:
            code = main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
    text = err.getvalue()
    event(f"exit {code}" + (f": {text[:70]}" if code == 1 else ""))  # --hypothesis-show-statistics
    assert code in (0, 1, 2), (code, argv, text)
    if code != 0:
        assert text.count("\n") == 1 and text.startswith("error: "), (argv, text)
        assert _files(root) == before, argv
    return code, text


@PROFILE
@given(cfg=config(), extra=overrides(), data=st.data())
def test_tsn_train_on_drawn_configs_and_overrides(cfg, extra, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "cfg.yaml").write_bytes(data.draw(file_bytes(cfg)))
        run_entry_point(
            tsn_main,
            ["train", "--out", str(root / "run"), "--budget", "smoke", "--config", str(root / "cfg.yaml"), *extra],
            root,
        )


@PROFILE
@given(doc=experiment(), sets=overrides(), data=st.data())
def test_sweeps_run_on_drawn_experiment_files(doc, sets, data) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "e.yaml").write_bytes(data.draw(file_bytes(doc)))
        argv = [
            "run",
            str(root / "e.yaml"),
            "--budget",
            "smoke",
            "--no-wandb",
            "--no-tables",
            "--storage",
            f"sqlite:///{root}/s.db",
            "--runs-dir",
            str(root / "runs"),
        ]
        run_entry_point(sweeps_main, argv + [a for s in sets for a in ("--set", s)], root)


@PROFILE
@given(section=search())
def test_a_drawn_search_section_parses_or_fails_in_one_line_naming_it(section) -> None:
    doc = {"name": "fuzz", "axes": {"nuisance": {"train.seed": [1337]}}, "baseline": "none", "search": section}
    try:
        parse_experiment(doc, "e.yaml")
    except ConfigError as err:
        event(f"error: {str(err)[8:40]}")
        assert "\n" not in str(err) and str(err).startswith("e.yaml: ") and "search" in str(err), str(err)
    else:
        event("parsed")
