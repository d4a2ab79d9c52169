"""Training losses.

L_simple (DDPM eq. 14 / seed §1.2): E_{t, x₀, ε} ‖ε - ε_θ(√ᾱ_t·x₀ + √(1-ᾱ_t)·ε, t)‖², with t uniform
over the T steps and ε ~ N(0, I). It is a function of (model_fn, schedule, batch) so that targets
and weightings can change without touching the trainer.
"""

from __future__ import annotations

import torch

from .forward import q_sample
from .parameterization import ModelFn
from .schedule import Schedule

REDUCTIONS = ("mean", "none")


def diffusion_loss(
    model_fn: ModelFn,
    s: Schedule,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """L_simple: mean squared error between the drawn noise ε and ``model_fn(x_t, t)``.

    x0: [N, ...]. ``t`` (LongTensor [N]) and ``noise`` ([N, ...]) are drawn with ``generator``
    (uniform t over 0..T-1, standard normal noise) unless given. ``reduction="none"`` returns the
    per-sample loss [N] (mean over all other dimensions) for custom weightings.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    n = x0.shape[0]
    if t is None:
        t = torch.randint(0, s.timesteps, (n,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = q_sample(s, x0, t, noise)
    eps = model_fn(x_t, t)
    if eps.shape != x0.shape:
        raise ValueError(f"model_fn returned shape {list(eps.shape)}, expected {list(x0.shape)}")
    per_sample = (eps.float() - noise.float()).pow(2).reshape(n, -1).mean(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample
