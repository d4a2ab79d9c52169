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


def atomic_savez(path: Path, **arrays) -> None:
    """Write an NPZ under a temporary name and rename it into place (never a half-written file)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"the folder of {path} does not exist")
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
