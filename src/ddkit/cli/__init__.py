"""The command line: ``ddkit train``, ``ddkit sample``, ``ddkit edit`` and the other subcommands.

Each subcommand lives in its own module with ``add_parser(sub)`` and ``run(args) -> int``, listed
once in :data:`COMMANDS`. Options map onto the config dataclasses (config.py). Bad input ends with
one line on stderr, ``ddkit: error: …``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from ..checks import ParameterError
from .common import Parser, UsageError, flags_of

# subcommand name → module (imported only when that subcommand runs, so ``ddkit --help`` stays fast)
COMMANDS = {
    "train": "ddkit.cli.train",
    "sample": "ddkit.cli.sample",
    "train-classifier": "ddkit.cli.train_classifier",
    "export": "ddkit.cli.export",
    "eval": "ddkit.cli.eval",
    "edit": "ddkit.cli.edit",
    "tune-steps": "ddkit.cli.tune_steps",
    "distill": "ddkit.cli.distill",
}


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ddkit", description="Denoising diffusion models: train, sample and evaluate (DDPM, DDIM).")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the full traceback too (accepted anywhere on the command line)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the exit code (0, 2 for bad input, 130 for Ctrl-C).

    ``--debug`` (anywhere on the line) prints the traceback above the one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    flags: dict[str, str] = {}
    try:
        args = parser.parse_args(argv)
        flags = flags_of(parser, args.command)
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except ParameterError as e:  # the library names parameters; say them as this command's flags
        return _fail(ValueError(e.render(lambda name: flags.get(name, name))), debug)
    except (ValueError, OSError) as e:  # UsageError, DataError and other bad input
        return _fail(e, debug)
    except KeyboardInterrupt as e:  # TrainingInterrupted says where it stopped
        if debug:
            traceback.print_exc()
        print(f"ddkit: {' '.join(str(e).split()) or 'interrupted'}", file=sys.stderr)
        return 130
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except Exception as e:  # a bug in ddkit: still one line, the traceback with --debug
        return _fail(e, debug, "internal error (a bug: please report it with the output of --debug): ")


def _fail(e: BaseException, debug: bool, prefix: str = "") -> int:
    if debug:
        traceback.print_exc()
    message = " ".join(str(e).split()) or type(e).__name__
    if prefix:
        message = f"{type(e).__name__}: {message}"
    print(f"ddkit: error: {prefix}{message}", file=sys.stderr)
    return 2


__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]
