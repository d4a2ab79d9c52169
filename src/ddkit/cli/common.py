"""Pieces every ``ddkit`` subcommand shares: the one-line usage error and atomic file writes."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


class UsageError(ValueError):
    """Bad command-line input."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too by default)
        raise UsageError(message)


# library parameters whose flag is not their name with dashes
FLAG_NAMES = {"weak": "--guide-with", "keep_steps": "--keep-step", "sample_every": "--sample-every"}


def flags_of(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """{dest: its first long flag} for the subcommand ``command``, and :data:`FLAG_NAMES`."""
    flags = dict(FLAG_NAMES)
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        sub = action.choices.get(command) if hasattr(action, "choices") else None
        for a in sub._actions if sub is not None else ():
            long = [o for o in a.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(a.dest, long[0])
    return flags


def atomic_savez(path: Path, **arrays) -> None:
    """Write an NPZ under a temporary name and rename it into place (never a half-written file)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"the folder of {path} does not exist")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
