"""How training stops: cleanly on Ctrl-C (after the step, with a checkpoint), and before a
non-finite loss reaches the weights."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class NonFiniteLossError(ValueError):
    """The training loss was NaN or infinite (more often than ``skip_nonfinite`` allows)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step; a checkpoint of that step was written."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(
            f"interrupted at step {step}"
            + (f"; checkpoint {checkpoint} written" if checkpoint else "")
            + "; continue with --resume"
        )
        self.step, self.checkpoint = step, checkpoint


def nonfinite_message(step: int, last_checkpoint: Path | None, allowed: int) -> str:
    kept = f"the last checkpoint {last_checkpoint} is intact" if last_checkpoint else "no checkpoint was written yet"
    skip = f" (more than the {allowed} that --skip-nonfinite allows)" if allowed else ""
    return (
        f"the training loss is not finite (NaN or inf) at step {step}{skip}; training stopped and {kept}; "
        "lower --lr, check the data for NaN, or pass --skip-nonfinite K to skip up to K bad batches"
    )


class StopRequest:
    """While active, SIGINT (Ctrl-C) only sets :attr:`requested`; the trainer stops after the step.
    Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


__all__ = ["NonFiniteLossError", "TrainingInterrupted", "StopRequest", "nonfinite_message"]
