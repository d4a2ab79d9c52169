"""Checkpoints are data, never code.

    RUN/config.json                        every setting (config.RunConfig), JSON
    RUN/checkpoints/step-000500/
        model.safetensors                  the trained weights
        ema.safetensors                    the EMA weights (used for sampling by default)
        state.pt                           optimizer, step, data position, RNG states:
                                           tensors and plain Python values only, read with
                                           torch.load(weights_only=True)

A checkpoint is written into a hidden temporary folder and renamed into place, so a crash never
leaves a half-written checkpoint where ``latest_checkpoint`` looks.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def _contiguous(state: dict) -> dict:
    return {k: v.detach().contiguous().cpu() for k, v in state.items()}


def save_checkpoint(run_dir: str | os.PathLike, step: int, model_state: dict, ema_state: dict,
                    train_state: dict, keep: int = 2) -> Path:
    """Write one checkpoint atomically and prune all but the newest ``keep``."""
    final = checkpoint_dir(run_dir, step)
    tmp = final.with_name(f".tmp-{final.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_contiguous(model_state), tmp / "model.safetensors")
    save_file(_contiguous(ema_state), tmp / "ema.safetensors")
    torch.save(train_state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a safetensors file into a state dict."""
    try:
        return load_file(str(path), device=str(device))
    except FileNotFoundError:
        raise ValueError(f"no weights file {path}") from None
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"cannot read weights {path}: {e}") from None


def load_train_state(path: str | os.PathLike) -> dict:
    """Read state.pt with ``weights_only=True``: tensors and plain values only, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"no training state {path}") from None
    except Exception as e:
        raise ValueError(f"cannot read training state {path}: {e}") from None
