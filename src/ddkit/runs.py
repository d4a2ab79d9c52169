"""Loading a trained run: ``ddkit.load(RUN) -> (model, schedule, config)``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoint import latest_checkpoint
from .config import RunConfig
from .nn import build_model
from .safety import load_matching
from .schedule import Schedule


def resolve_weights(run: Path, checkpoint: str | Path | None, ema: bool) -> Path:
    """The safetensors file to load: from ``checkpoint`` (a checkpoint folder or a .safetensors
    file) or the run's newest checkpoint; EMA weights unless ``ema`` is false."""
    name = "ema.safetensors" if ema else "model.safetensors"
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if checkpoint.is_dir():
            return checkpoint / name
        if checkpoint.is_file():
            return checkpoint
        raise ValueError(f"no checkpoint at {checkpoint}")
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise ValueError(f"{run} has no checkpoint yet")
    return ckpt / name


def load(run: str | Path, *, checkpoint: str | Path | None = None, ema: bool = True,
         device: str | torch.device = "cpu") -> tuple[nn.Module, Schedule, RunConfig]:
    """The network of a run (in eval mode, EMA weights by default), its schedule and config.

    ``model(x_t, t, y=None) -> ε``; use ``lambda x, t: model(x, t)`` (or bind labels) as the
    samplers' ``model_fn``.
    """
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"run folder {run} does not exist")
    config = RunConfig.load(run / "config.json")
    model = build_model(config.model)
    # one line saying what differs when the weights are for another network (never a pickle)
    load_matching(model, resolve_weights(run, checkpoint, ema), config.to_dict()["model"])
    return model.to(device).eval(), config.diffusion.build(), config
