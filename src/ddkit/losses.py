"""Training losses.

L_simple (DDPM eq. 14 / seed §1.2): E_{t, x₀, ε} ‖ε - ε_θ(√ᾱ_t·x₀ + √(1-ᾱ_t)·ε, t)‖², with t uniform
over the T steps and ε ~ N(0, I). ``weighting="min-snr"`` multiplies each example's loss by
min(SNR_t, γ)/SNR_t with SNR_t = ᾱ_t/(1-ᾱ_t) (Hang et al. 2023, the ε-prediction form): steps with
little noise (SNR > γ) count less; the rest keep weight 1. It is a function of (model_fn, schedule, batch) so that targets
and weightings can change without touching the trainer.
"""

from __future__ import annotations

import torch

from .forward import q_sample
from .parameterization import ModelFn
from .schedule import Schedule

REDUCTIONS = ("mean", "none")
WEIGHTINGS = ("uniform", "min-snr")


def diffusion_loss(
    model_fn: ModelFn,
    schedule: Schedule,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    reduction: str = "mean",
    weighting: str = "uniform",
    snr_gamma: float = 5.0,
) -> torch.Tensor:
    """L_simple: mean squared error between the drawn noise ε and ``model_fn(x_t, t)``.

    x0: [N, ...]. ``t`` (LongTensor [N]) and ``noise`` ([N, ...]) are drawn with ``generator``
    (uniform t over 0..T-1, standard normal noise) unless given. ``reduction="none"`` returns the
    per-sample loss [N] (mean over all other dimensions, after ``weighting``: uniform | min-snr with
    ``snr_gamma``).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}; got {weighting!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    n = x0.shape[0]
    if t is None:
        t = torch.randint(0, schedule.num_timesteps, (n,), generator=generator, device=x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = q_sample(schedule, x0, t, noise)
    eps = model_fn(x_t, t)
    if eps.shape != x0.shape:
        raise ValueError(f"model_fn returned shape {list(eps.shape)}, expected {list(x0.shape)}")
    per_sample = (eps.float() - noise.float()).pow(2).reshape(n, -1).mean(dim=1)
    if weighting == "min-snr":
        snr = schedule.gather(schedule.snr, t, per_sample)
        per_sample = per_sample * snr.clamp(max=snr_gamma) / snr
    return per_sample.mean() if reduction == "mean" else per_sample
