"""What the trainer shows while it runs: a sample grid (or scatter plot) and the loss curve."""

from __future__ import annotations

from pathlib import Path

import torch

from .generate import generate
from .images import save_grid, save_loss_curve, save_points_plot, to_uint8
from .parameterization import eps_network

PREVIEW_IMAGES = 64
PREVIEW_POINTS = 2000


def preview_labels(num: int, num_classes: int | None) -> torch.Tensor | None:
    """Labels 0, 1, …, K-1, 0, 1, … for a class-conditional preview (None when unconditional)."""
    return None if num_classes is None else torch.arange(num) % num_classes


def write_progress_images(out: Path, step: int, ema_model, schedule, data, train_cfg, history,
                          prediction: str = "eps") -> None:
    """RUN/samples/step-NNNNNN.png from the EMA model (DDIM, 50 steps, η = 0, fixed seed; a network
    that predicts ``prediction`` = x0 or v is converted to ε first) and RUN/loss.png from the logged losses."""
    ema_model = eps_network(ema_model, prediction, schedule)
    num = PREVIEW_IMAGES if data.kind == "image" else PREVIEW_POINTS
    labels = preview_labels(num, data.num_classes) if train_cfg.class_cond else None
    x = generate(ema_model, schedule, num, steps=min(50, schedule.num_timesteps), seed=train_cfg.seed,
                 labels=labels, clip_x0=(-1.0, 1.0) if data.kind == "image" else None,
                 device=next(ema_model.parameters()).device)
    path = Path(out) / "samples" / f"step-{step:06d}.png"
    if data.kind == "image":
        nrow = data.num_classes if labels is not None else None
        save_grid(to_uint8(x), path, nrow=nrow)
    else:
        save_points_plot(x.numpy(), path, labels=None if labels is None else labels.numpy())
    if history:
        steps, losses = zip(*history)
        save_loss_curve(list(steps), list(losses), Path(out) / "loss.png")
