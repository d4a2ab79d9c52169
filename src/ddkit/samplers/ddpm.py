"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2; seed eq. 13).

    μ_θ(x_t, t) = (x_t - β_t/√(1-ᾱ_t)·ε_θ(x_t, t)) / √α_t
    x_{t-1}     = μ_θ + σ_t·z,   z ~ N(0, I),   σ_t² = β̃_t ("small") or β_t ("large"),

and no noise on the last step. With ``clip_x0``, x̂₀ is clamped and ε re-derived from it first, so
μ_θ is the posterior mean μ̃_t(x_t, clamp(x̂₀)).
"""

from __future__ import annotations

import math

import torch

from ..parameterization import ModelFn, clip_eps
from ..schedule import Schedule, check_alpha_bars
from .common import call_model, check_sample_args, noise_like, steps_iter

VARIANCES = ("small", "large")


def ddpm_variance(schedule: Schedule, t: int, variance: str = "small") -> float:
    """σ_t² at 0-based step t: β̃_t for ``"small"``, β_t for ``"large"`` (DDPM §3.2)."""
    if variance == "small":
        return float(schedule.posterior_variance[t])
    if variance == "large":
        return float(schedule.betas[t])
    raise ValueError(f"variance must be one of {', '.join(VARIANCES)}; got {variance!r}")


def ddpm_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    schedule: Schedule,
    t: int,
    *,
    variance: str = "small",
    clip_x0=None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One ancestral step x_t → x_{t-1} (seed eq. 13). x_t, eps: [N, ...]; t: a 0-based int.

    ``noise`` is drawn from ``generator`` when not given; none is added at t = 0.
    """
    var = ddpm_variance(schedule, t, variance)
    alpha_bar, beta = schedule.alpha_bar(t), float(schedule.betas[t])
    _, eps = clip_eps(x_t, eps, alpha_bar, clip_x0)
    mean = (x_t - (beta / math.sqrt(1.0 - alpha_bar)) * eps) / math.sqrt(1.0 - beta)
    if t == 0:
        return mean
    if noise is None:
        noise = noise_like(x_t, generator)
    return mean + math.sqrt(var) * noise


@torch.no_grad()
def ddpm_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    variance: str = "small",
    generator: torch.Generator | None = None,
    progress: bool = False,
    clip_x0=None,
) -> torch.Tensor:
    """Run all T ancestral steps from x_T [N, ...] (in x_T's dtype) and return x_0 [N, ...]."""
    check_sample_args(x_T, clip_x0)
    ddpm_variance(schedule, 0, variance)  # validate before the first network call
    check_alpha_bars(schedule, [schedule.num_timesteps - 1])
    x = x_T
    for t in steps_iter(range(schedule.num_timesteps - 1, -1, -1), progress, "DDPM"):
        eps = call_model(model_fn, x, t)
        x = ddpm_step(x, eps, schedule, t, variance=variance, clip_x0=clip_x0, generator=generator)
    return x
