"""Kill points that the test controls: run ddkit's command line in a process that stops itself
(SIGSTOP) at a call the test chose, so that the test kills it exactly there (SIGKILL ends a stopped
process), however fast or busy the machine is. Test code only: the library has no hook for it.

    python tests/pause_at.py ARM MODULE:ATTR:N:WHEN [MODULE:ATTR:N:WHEN …] -- ddkit arguments…

``MODULE:ATTR`` names a function that the process calls (``ATTR`` may be ``Class.method``; patch the
name where the caller looks it up). Its N-th call in this process (1-based) stops the process,
``before`` the call or ``after`` it returns. A point stops only while the file ARM exists, and removes
it: the test arms each process it starts, and a process that torchrun restarts runs through.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve()


def command(arm: Path, points: list[str], ddkit_args: list[str]) -> list[str]:
    """The command line that runs ``ddkit ddkit_args`` with these pause points, armed by ``arm``
    (the caller creates it)."""
    return [sys.executable, str(HERE), str(arm), *points, "--", *ddkit_args]


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat (``T``: stopped), or ``""`` when the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def wait_paused(pid: int, running: Callable[[], bool], timeout: float = 600.0) -> bool:
    """Wait until process ``pid`` stopped itself at its pause point (True), or ``running()`` turned
    False first (False: it ended without reaching the point). The timeout only turns a hang into a
    failure."""
    deadline = time.monotonic() + timeout
    while running():
        if process_state(pid) in ("T", "t"):
            return True
        assert time.monotonic() < deadline, f"process {pid} reached no pause point in {timeout:.0f} s"
        time.sleep(0.01)
    return False


def kill_paused(proc: subprocess.Popen) -> None:
    """Wait for ``proc`` to pause, then kill it there (SIGKILL); fails if it ended first."""
    assert wait_paused(proc.pid, lambda: proc.poll() is None), f"ended (exit code {proc.returncode}) before its pause"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _stop(arm: Path) -> None:
    try:
        arm.unlink()
    except FileNotFoundError:
        return
    os.kill(os.getpid(), signal.SIGSTOP)


def _patch(point: str, arm: Path) -> None:
    module_name, attr, n, when = point.split(":")
    if when not in ("before", "after"):
        raise ValueError(f"WHEN must be before or after, got {when!r}")
    owner = importlib.import_module(module_name)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    original, n, calls = getattr(owner, name), int(n), 0

    @functools.wraps(original)
    def paused(*args, **kwargs):
        nonlocal calls
        calls += 1
        this = calls
        if this == n and when == "before":
            _stop(arm)
        result = original(*args, **kwargs)
        if this == n and when == "after":
            _stop(arm)
        return result

    setattr(owner, name, paused)


def main() -> int:
    sep = sys.argv.index("--")
    arm, *points = sys.argv[1:sep]
    for point in points:
        _patch(point, Path(arm))
    from ddkit.cli import main as ddkit_main

    return ddkit_main(sys.argv[sep + 1 :])


if __name__ == "__main__":
    sys.exit(main())
