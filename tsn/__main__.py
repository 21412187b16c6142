"""``python -m tsn {params,train,eval,import-official,data,pretrain}``: the single-run command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from . import params
from .errors import ArgumentParser, entry_point


def _commands() -> dict[str, tuple[str, Callable[[argparse.ArgumentParser], argparse.ArgumentParser], Callable]]:
    from . import cli

    return {
        "params": ("parameter and MAC counts per architecture", params.build_parser, params.run),
        "train": ("train and evaluate one configuration", cli.build_train_parser, cli.run_train),
        "eval": ("evaluate a checkpoint", cli.build_eval_parser, cli.run_eval),
        "import-official": ("the authors' released checkpoints as a run", cli.build_import_parser, cli.run_import),
        "data": ("dataset utilities (preview)", cli.build_data_parser, cli.run_data),
        "pretrain": (
            "pretrain the compact encoder on synthetic scenes (cached)",
            cli.build_pretrain_parser,
            cli.run_pretrain,
        ),
    }


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 2 bad input, 1 a failed run, 130 interrupted (tsn.errors); one line on stderr."""
    commands = _commands()
    parser = ArgumentParser(prog="python -m tsn", description="Task Switching Networks: single runs")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, build, _) in commands.items():
        build(sub.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    return commands[args.command][2](args)


if __name__ == "__main__":
    sys.exit(main())
