"""What keeps a run safe: stopping cleanly on Ctrl-C or a non-finite loss, checking that the run
folder can take a checkpoint before training starts, and loading weights only into a network they
were made for (one line saying what differs, never a wall of shape errors)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_weights, weights_metadata

MODEL_METADATA = "ddkit_model"  # safetensors header key: the model config (JSON) the weights are for


class NonFiniteLossError(ValueError):
    """The training loss was NaN or infinite (more often than ``skip_nonfinite`` allows)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after a whole step; a checkpoint of that step was written."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted at step {step}" + (f"; checkpoint {checkpoint} written" if checkpoint else "")
                         + "; continue with --resume")
        self.step, self.checkpoint = step, checkpoint


def nonfinite_message(step: int, last_checkpoint: Path | None, allowed: int) -> str:
    kept = f"the last checkpoint {last_checkpoint} is intact" if last_checkpoint else "no checkpoint was written yet"
    skip = f" (more than the {allowed} that --skip-nonfinite allows)" if allowed else ""
    return (f"the training loss is not finite (NaN or inf) at step {step}{skip}; training stopped and {kept}; "
            "lower --lr, check the data for NaN, or pass --skip-nonfinite K to skip up to K bad batches")


class StopRequest:
    """While active, SIGINT (Ctrl-C) only sets :attr:`requested`; the trainer stops after the step.
    Outside the main thread (where handlers cannot be set) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def fused_adamw_supported(device: torch.device) -> bool:
    """The fused AdamW kernel: CUDA always, the CPU from torch 2.4 (older versions fall back)."""
    if device.type == "cuda":
        return True
    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def checkpoint_bytes(model: nn.Module) -> int:
    """About what one checkpoint takes: weights, EMA and AdamW's two moments (4 copies), plus slack."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    return 4 * n + (1 << 20)


def check_writable(out: Path, model: nn.Module) -> None:
    """Fail before training (one line) when RUN cannot be written or has no room for a checkpoint."""
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = out / "checkpoints" / f".tmp-probe-{os.getpid()}"
        probe.write_bytes(b"ddkit")
        probe.unlink()
    except OSError as e:
        raise OSError(f"cannot write to the run folder {out}: {e.strerror or e}") from None
    need, free = 2 * checkpoint_bytes(model), shutil.disk_usage(out).free
    if free < need:
        raise OSError(f"not enough free disk space in {out}: {free / 2**20:.1f} MiB free, a checkpoint "
                      f"needs about {need / 2**21:.1f} MiB (twice that while one is replaced)")


def describe_mismatch(expected: dict, found: dict) -> str:
    """'image_size 8 vs 32, in_channels 1 vs 3': the model-config fields that differ."""
    keys = sorted(set(expected) | set(found), key=lambda k: (k != "kind", k))
    diffs = [f"{k} {found.get(k, '-')} vs {expected.get(k, '-')}" for k in keys if expected.get(k) != found.get(k)]
    return ", ".join(diffs)


def load_matching(model: nn.Module, path: str | os.PathLike, model_config: dict,
                  device: str | torch.device = "cpu") -> None:
    """Load safetensors weights into ``model`` (built from ``model_config``, a config dict), or
    raise one ValueError line saying what differs: the config fields the checkpoint records
    (checkpoints ddkit writes carry their model config), else the first mismatching tensor."""
    meta = weights_metadata(path).get(MODEL_METADATA)
    if meta is not None:
        try:
            found = json.loads(meta)
        except ValueError:
            found = None
        if isinstance(found, dict) and found != model_config:
            raise ValueError(f"the checkpoint {path} is for another network ({describe_mismatch(model_config, found)}, "
                             "checkpoint vs run)")
    state = load_weights(path, device)
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"the checkpoint {path} is for another network: "
                         + (f"it lacks {missing[0]}" if missing else f"it has an unknown tensor {extra[0]}")
                         + f" ({len(missing)} missing, {len(extra)} unexpected tensors)")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise ValueError(f"the checkpoint {path} is for another network: {k} has shape "
                             f"{list(state[k].shape)}, the run's model expects {list(v.shape)}")
        if not torch.isfinite(state[k]).all() and state[k].is_floating_point():
            raise ValueError(f"the checkpoint {path} holds non-finite values in {k}")
    model.load_state_dict(state)


__all__ = ["MODEL_METADATA", "NonFiniteLossError", "TrainingInterrupted", "StopRequest", "check_writable",
           "describe_mismatch", "fused_adamw_supported", "load_matching", "nonfinite_message", "checkpoint_bytes"]
