"""``python -m bench [--quick] [--out BENCHMARKS.md] [--threads N]``: measure this machine, print the report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tsn.domains import cli_number
from tsn.errors import ArgumentParser, entry_point
from tsn.runtime import configure_threads

from . import run
from .measure import memory_probe


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m bench", description="measure training speed on this machine")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, a minute or two, numbers meaningless (for tests)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the report here (e.g. BENCHMARKS.md), keeping the file's hand-written sections",
    )
    parser.add_argument("--threads", type=cli_number(int, 0, 4096), default=0, help="torch threads (0 = one per core)")
    parser.add_argument("--memory-probe", metavar="ARCH", help=argparse.SUPPRESS)  # bench.measure.memory's child
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.memory_probe:
        configure_threads(args.threads)
        print(json.dumps(memory_probe(args.memory_probe, 0, args.quick)))
        return 0
    print(run(args.quick, args.out, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
