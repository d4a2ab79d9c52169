"""Drawing samples from a trained network in batches: the piece the CLI and the trainer share."""

from __future__ import annotations

import torch
from torch import nn

from .samplers import ddim_sample, ddpm_sample
from .schedule import Schedule

SAMPLERS = ("ddpm", "ddim")


def sample_shape(model: nn.Module) -> tuple[int, ...]:
    """The shape of one sample the network denoises: (C, H, W) for a UNet, (D,) for an MLP."""
    cfg = model.config
    if hasattr(cfg, "image_size"):
        return (cfg.in_channels, cfg.image_size, cfg.image_size)
    return (cfg.dim,)


@torch.no_grad()
def generate(
    model: nn.Module,
    schedule: Schedule,
    num: int,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    eta: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    clip_x0=None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> torch.Tensor:
    """``num`` samples [num, ...] (float32, on the CPU) from ``model(x, t, y)``.

    ``labels`` (LongTensor [num]) conditions a class-conditional network (the null label
    ``num_classes`` means unconditional). One generator seeded with ``seed`` draws every x_T and
    all sampler noise, batch after batch, so a given (seed, batch_size) reproduces exactly.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    if num < 1 or batch_size < 1:
        raise ValueError(f"num and batch_size must be positive, got num={num}, batch_size={batch_size}")
    if labels is not None and labels.shape != (num,):
        raise ValueError(f"labels must have shape [{num}], got {list(labels.shape)}")
    device = torch.device(device)
    g = torch.Generator(device).manual_seed(seed)
    shape = sample_shape(model)
    out = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        y = None if labels is None else labels[start:start + n].to(device)
        model_fn = lambda x, t, y=y: model(x, t, y)  # noqa: E731
        x_T = torch.randn((n, *shape), generator=g, device=device)
        if sampler == "ddpm":
            x = ddpm_sample(model_fn, x_T, schedule, generator=g, progress=progress, clip_x0=clip_x0)
        else:
            x = ddim_sample(model_fn, x_T, schedule, steps=steps, eta=eta, generator=g, progress=progress,
                            clip_x0=clip_x0)
        out.append(x.float().cpu())
    return torch.cat(out)
