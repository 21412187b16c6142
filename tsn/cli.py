"""Sub-commands of ``python -m tsn`` other than ``params`` (train, eval, data)."""

from __future__ import annotations

import argparse


def build_train_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return parser


def run_train(args: argparse.Namespace) -> int:
    raise ValueError("training is not implemented yet")


def build_eval_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return parser


def run_eval(args: argparse.Namespace) -> int:
    raise ValueError("evaluation is not implemented yet")


def build_data_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    return parser


def run_data(args: argparse.Namespace) -> int:
    raise ValueError("data utilities are not implemented yet")
