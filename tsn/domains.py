"""What a configuration field declares of itself, once, in its ``metadata``: its domain, whether only the
multi-task method reads it, and whether it was added after records existed.

A field declares its domain as ``field(default=..., metadata=domain(low, high, ...))``; :func:`check_fields`
checks every declared field of a dataclass instance (each entry of a tuple, each value of a mapping). Every
number must be finite; integers and floats are told apart by the field's annotation, not here.

A field that only the multi-task method reads (the task conditioning, the task schedule) declares
``metadata=multi_task_only()`` (combined with a domain: ``domain(...) | multi_task_only()``): a single-task
baseline resets it to its default (:func:`tsn.config.baseline_config`) and keeps every other field.

A field added once runs were recorded declares ``metadata=hashed_when_set()``: a run's identity (its config hash,
the family its seeds pool in) counts it only when it is set away from its default, so that adding it leaves every
earlier record's identity, and the reuse of its runs, intact (:func:`tsn.config.identity`).

A field whose ``None`` ("not set") stands for a value that can also be written out declares
``metadata=unset_means(rule)``, ``rule`` giving that value from the section's values (``model.pretrained``: ``none``;
``model.head``: the architecture's own head): a run's identity then counts the value written out as not set, so that
one network has one identity however its config spells it (:func:`tsn.config.identity`).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, fields
from typing import Any

SEED_MAX = 2**31 - 1  # fits every generator the suite seeds (torch, numpy, Python)


@dataclass(frozen=True)
class Domain:
    """The interval ``low .. high``; ``open_low`` / ``open_high`` exclude the end point."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self) -> str:
        left = "(" if self.open_low or self.low is None else "["
        right = ")" if self.open_high or self.high is None else "]"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"in {left}{low}, {high}{right}"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.open_high and value == self.high))

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line ValueError naming ``key`` when ``value`` (a number, or None) is outside."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return  # None = "not set" where a field allows it; types are the loader's concern
        if not self.contains(value):
            raise ValueError(
                f"{key} must be {'finite and ' if not math.isfinite(value) else ''}{self.describe()}, got {value!r}"
            )


def domain(
    low: float | None = None, high: float | None = None, *, open_low: bool = False, open_high: bool = False
) -> dict[str, Domain]:
    """The ``metadata`` of a dataclass field whose values lie in ``low .. high``."""
    return {"domain": Domain(low, high, open_low, open_high)}


def multi_task_only() -> dict[str, bool]:
    """The ``metadata`` of a field that only the multi-task method reads (see the module's docstring)."""
    return {"multi_task_only": True}


def is_multi_task_only(item: Field) -> bool:
    return bool(item.metadata.get("multi_task_only"))


def hashed_when_set() -> dict[str, bool]:
    """The ``metadata`` of a field added after runs were recorded (see the module's docstring)."""
    return {"hashed_when_set": True}


def is_hashed_when_set(item: Field) -> bool:
    return bool(item.metadata.get("hashed_when_set"))


def unset_means(rule: Callable[[Mapping[str, Any]], Any]) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """The ``metadata`` of a field whose ``None`` stands for ``rule(section values)`` (see the module's docstring).

    ``rule`` reads a section as stored as well as a live one, so it must take a mapping that may lack keys (a record
    from before a field existed) and return ``None`` when it cannot tell.
    """
    return {"unset_means": rule}


def unset_meaning(item: Field, section: Mapping[str, Any]) -> Any:
    """What ``None`` stands for in field ``item`` of ``section`` (a mapping of its values); None when it declares
    nothing or its rule cannot tell."""
    rule = item.metadata.get("unset_means")
    return None if rule is None else rule(section)


def check_fields(obj: Any, section: str) -> None:
    """Check every field of the dataclass ``obj`` that declares a domain; keys are reported as ``section.name``."""
    for item in fields(obj):
        bounds = item.metadata.get("domain")
        if bounds is None:
            continue
        value = getattr(obj, item.name)
        key = f"{section}.{item.name}"
        if isinstance(value, Mapping):
            for name, entry in value.items():
                bounds.check(f"{key}.{name}", entry)
        elif isinstance(value, (tuple, list)):
            for entry in value:
                bounds.check(f"{key} entry", entry)
        else:
            bounds.check(key, value)


def cli_number(
    kind: type, low: float | None = None, high: float | None = None, *, open_low: bool = False
) -> Callable[[str], Any]:
    """An argparse ``type`` for a count or duration flag: ``kind`` (int or float) in ``low .. high``, finite."""
    bounds = Domain(low, high, open_low)

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not bounds.contains(value):
            raise argparse.ArgumentTypeError(f"must be {bounds.describe()}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse
