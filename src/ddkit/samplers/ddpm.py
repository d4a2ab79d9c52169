"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2; seed eq. 13).

    μ_θ(x_t, t) = (x_t - β_t/√(1-ᾱ_t)·ε_θ(x_t, t)) / √α_t
    x_{t-1}     = μ_θ + σ_t·z,   z ~ N(0, I),   σ_t² = β̃_t ("small") or β_t ("large"),

and no noise on the last step. With ``clip_x0``, x̂₀ is clamped and ε re-derived from it first, so
μ_θ is the posterior mean μ̃_t(x_t, clamp(x̂₀)).

On a sub-sequence of timesteps (``timesteps``, ``sigmas`` or ``start_t``) each step from n to m
uses the respaced β' = 1 − ᾱ_n/ᾱ_m in the same formulas (improved-diffusion's respacing; DDIM
with η = 1 for ``variance="small"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import integer
from ..parameterization import ModelFn, clip_eps, eps_from_x0
from ..schedule import Schedule
from ..timesteps import sampling_grid
from .common import (
    Callback,
    DenoisedFn,
    apply_denoised_fn,
    call_model,
    check_sample_args,
    noise_like,
    report,
    steps_iter,
)

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
    return _ancestral_step(
        x_t,
        eps,
        schedule.alpha_bar(t),
        float(schedule.betas[t]),
        var,
        t == 0,
        clip_x0=clip_x0,
        noise=noise,
        generator=generator,
    )


def _ancestral_step(
    x_t, eps, alpha_bar: float, beta: float, var: float, last: bool, *, clip_x0=None, noise=None, generator=None
) -> torch.Tensor:
    """μ_θ = (x_t − β/√(1−ᾱ)·ε)/√(1−β), plus √var·z unless ``last``."""
    _, eps = clip_eps(x_t, eps, alpha_bar, clip_x0)
    mean = (x_t - (beta / math.sqrt(1.0 - alpha_bar)) * eps) / math.sqrt(1.0 - beta)
    if last:
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
    timesteps: Sequence[int] | None = None,
    sigmas: Sequence[float] | None = None,
    start_t: int | None = None,
    callback: Callback = None,
    denoised_fn: DenoisedFn = None,
) -> torch.Tensor:
    """Ancestral sampling from x_T [N, ...] (in x_T's dtype) → x_0 [N, ...]: all T steps, or every
    step from ``start_t`` down, or the sub-sequence ``timesteps``/``sigmas`` with respaced β.
    ``denoised_fn(x0, info) -> x0`` changes each x̂₀ (after ``clip_x0``) before the step: the step is
    then the posterior q(x_{t-1} | x_t, x̂₀) of that x̂₀ (the last one returns it)."""
    check_sample_args(x_T, clip_x0, callback, denoised_fn)
    ddpm_variance(schedule, 0, variance)  # validate before the first network call
    if timesteps is None and sigmas is None:
        top = (
            schedule.num_timesteps - 1
            if start_t is None
            else integer("start_t", start_t, low=0, high=schedule.num_timesteps - 1)
        )
        grid = sampling_grid(schedule, timesteps=range(top, -1, -1))
    else:
        grid = sampling_grid(schedule, timesteps=timesteps, sigmas=sigmas, start_t=start_t)
    x = x_T
    for i in steps_iter(range(len(grid)), progress, "DDPM"):
        t, ab = grid.t[i], grid.alpha_bars[i]
        eps = call_model(model_fn, x, t)
        clip = clip_x0
        if denoised_fn is not None:
            x0 = apply_denoised_fn(denoised_fn, i, t, ab, x, clip_eps(x, eps, ab, clip_x0)[0])
            report(callback, i, t, ab, x, x0)
            if i + 1 == len(grid):  # the posterior of the last step is a point mass at x̂₀
                return x0
            eps, clip = eps_from_x0(x, x0, ab), None
        elif callback is not None:
            report(callback, i, t, ab, x, clip_eps(x, eps, ab, clip_x0)[0])
        ab_prev = grid.alpha_bar_after(i)
        next_t = grid.t[i + 1] if i + 1 < len(grid) else -1
        if isinstance(t, int) and next_t == t - 1:  # a step of the schedule itself: its own β (no rounding through ᾱ)
            x = ddpm_step(x, eps, schedule, t, variance=variance, clip_x0=clip, generator=generator)
            continue
        beta = 1.0 - ab / ab_prev
        var = beta if variance == "large" else beta * (1.0 - ab_prev) / (1.0 - ab)
        x = _ancestral_step(x, eps, ab, beta, var, i + 1 == len(grid), clip_x0=clip, generator=generator)
    return x
