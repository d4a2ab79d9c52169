"""One trainer per run folder: an exclusive ``fcntl.flock`` on ``RUN/.lock``.

The lock belongs to the open file, so the kernel drops it when the process ends however it ends
(``kill -9`` included): a crashed trainer never leaves a run stuck. Under torchrun only rank 0
takes it. POSIX only; where ``fcntl`` is missing (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunLockedError(OSError):
    """Another live process is training this run."""


class RunLock:
    """Hold ``RUN/.lock`` from :meth:`acquire` until :meth:`release` (or the process's end).

    ``wait``: seconds to keep retrying while another process holds it (torchrun's restarted
    workers may start while the old rank 0 is still exiting)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> "RunLock":
        if fcntl is None or self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_pid(fd)
                    os.close(fd)
                    raise RunLockedError(f"{self.path.parent} is being trained by another process"
                                         + (f" (pid {holder})" if holder else "")
                                         + "; wait for it to finish or stop it first") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
