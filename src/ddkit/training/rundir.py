"""The run folder: :class:`RunDir` is the one owner of its layout, and :class:`RunLock` keeps one
trainer per folder.

    RUN/config.json                    every setting (training.config.RunConfig)
    RUN/log.jsonl                      one JSON object per line: losses, evaluations, skipped batches
    RUN/checkpoints/step-NNNNNN/       a checkpoint (training.checkpoint)
    RUN/checkpoints/best/              the checkpoint with the best validation score, when evaluated
    RUN/samples/step-NNNNNN.png        preview grids (or scatter plots of 2-D runs)
    RUN/loss.png, RUN/val.png          the loss curve and the validation curves
    RUN/tensorboard/                   TensorBoard event files (--log-to tensorboard)
    RUN/timesteps/NAME-K.json          sampling timesteps tuned for this run
    RUN/.lock                          held by the trainer while it runs

The lock is an exclusive ``fcntl.flock`` on ``RUN/.lock``. It belongs to the open file, so the
kernel drops it when the process ends however it ends (``kill -9`` included): a crashed trainer
never leaves a run stuck. Under torchrun only rank 0 takes it. POSIX only; where ``fcntl`` is
missing (Windows) the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".lock"


class RunDir:
    """The paths of one run folder and the operations on its log; every module asks it where things are."""

    CONFIG = "config.json"
    LOG = "log.jsonl"
    CHECKPOINTS = "checkpoints"
    BEST = "best"
    SAMPLES = "samples"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # ---- paths -------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def log(self) -> Path:
        return self.root / self.LOG

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def checkpoints(self) -> Path:
        return self.root / self.CHECKPOINTS

    def checkpoint(self, step: int) -> Path:
        """RUN/checkpoints/step-NNNNNN."""
        return self.checkpoints / f"step-{step:06d}"

    @property
    def best(self) -> Path:
        """RUN/checkpoints/best: the checkpoint selected on the validation part."""
        return self.checkpoints / self.BEST

    def samples(self, step: int) -> Path:
        """RUN/samples/step-NNNNNN.png."""
        return self.root / self.SAMPLES / f"step-{step:06d}.png"

    @property
    def loss_plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def val_plot(self) -> Path:
        return self.root / "val.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def timesteps(self, sampler: str, nfe: int) -> Path:
        """RUN/timesteps/SAMPLER-K.json: a timestep sequence tuned for this run."""
        return self.root / "timesteps" / f"{sampler}-{nfe}.json"

    def is_run(self) -> bool:
        """A folder with a config.json: a run (trained or being trained)."""
        return self.config.is_file()

    # ---- the log -----------------------------------------------------------------------------
    def append_log(self, record: dict) -> None:
        """Append one JSON line to log.jsonl."""
        with open(self.log, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict]:
        """Every whole record of log.jsonl (a line cut short by a crash ends it)."""
        records = []
        if self.log.exists():
            for line in self.log.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def truncate_log(self, step: int) -> list[dict]:
        """Drop the records written after ``step`` (a resumed run continues from its checkpoint);
        atomically, so a crash here never empties the log. Returns the records kept."""
        keep = []
        for record in self.read_log():
            if record.get("step", 0) > step:
                break
            keep.append(record)
        tmp = self.log.with_name(f".{self.log.name}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
        os.replace(tmp, self.log)
        return keep

    # ---- room for checkpoints ----------------------------------------------------------------
    def check_writable(self, checkpoint_bytes: int) -> None:
        """Fail before training (one line) when RUN cannot be written or has no room for a
        checkpoint of ``checkpoint_bytes`` (twice that while one replaces another)."""
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            probe = self.checkpoints / f".tmp-probe-{os.getpid()}"
            probe.write_bytes(b"ddkit")
            probe.unlink()
        except OSError as e:
            raise OSError(f"cannot write to the run folder {self.root}: {e.strerror or e}") from None
        need, free = 2 * checkpoint_bytes, shutil.disk_usage(self.root).free
        if free < need:
            raise OSError(
                f"not enough free disk space in {self.root}: {free / 2**20:.1f} MiB free, a checkpoint "
                f"needs about {need / 2**21:.1f} MiB (twice that while one is replaced)"
            )


class RunLockedError(OSError):
    """Another live process is training this run."""


class RunLock:
    """Hold ``RUN/.lock`` from :meth:`acquire` until :meth:`release` (or the process's end).

    ``wait``: seconds to keep retrying while another process holds it (torchrun's restarted
    workers may start while the old rank 0 is still exiting)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = RunDir(run_dir).lock_file
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> RunLock:
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
                    raise RunLockedError(
                        f"{self.path.parent} is being trained by another process"
                        + (f" (pid {holder})" if holder else "")
                        + "; wait for it to finish or stop it first"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""
