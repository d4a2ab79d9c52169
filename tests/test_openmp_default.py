"""``import ddkit`` gives GNU OpenMP a short spin before torch loads it (a busy machine otherwise
stalls training, docs/training.md), and leaves a user's own setting alone."""

import os
import subprocess
import sys

import pytest

SHOW = "import os, sys; {first}import ddkit; print(os.environ.get('GOMP_SPINCOUNT'))"


def _spincount(first: str = "", **env) -> str:
    base = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    code = SHOW.format(first=first)
    out = subprocess.run([sys.executable, "-c", code], env=base | env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("first", "env", "expected"),
    [
        ("", {}, "20000"),  # the default, set before torch is imported
        ("", {"GOMP_SPINCOUNT": "777"}, "777"),  # the user's value wins
        ("import torch; ", {}, "None"),  # torch loaded first: too late to matter, so nothing is set
    ],
)
def test_gomp_spincount_default(first, env, expected):
    assert _spincount(first, **env) == expected
