"""The command line: ``ddkit train``, ``ddkit sample`` and the other subcommands.

Each subcommand lives in its own module with ``add_parser(sub)`` and ``run(args) -> int``, listed
once in :data:`COMMANDS`. Options map onto the config dataclasses (config.py). Bad input ends with
one line on stderr, ``ddkit: error: …``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .common import Parser, UsageError

# subcommand name → module (imported only when that subcommand runs, so ``ddkit --help`` stays fast)
COMMANDS = {
    "train": "ddkit.cli.train",
    "sample": "ddkit.cli.sample",
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ddkit", description="Denoising diffusion models: train, sample and evaluate (DDPM, DDIM).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except (ValueError, OSError) as e:  # UsageError, DataError and other bad input
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"ddkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddkit: interrupted", file=sys.stderr)
        return 130


__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]
