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

import torch

from ..checks import choice
from ..parameterization import ModelFn, clip_eps
from ..schedule import Schedule
from .common import Sampling, noise_like

VARIANCES = ("small", "large")


def ddpm_variance(schedule: Schedule, t: int, variance: str = "small") -> float:
    """σ_t² at 0-based step t: β̃_t for ``"small"``, β_t for ``"large"`` (DDPM §3.2)."""
    choice("variance", variance, VARIANCES)
    return float((schedule.posterior_variance if variance == "small" else schedule.betas)[t])


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
    _, eps = clip_eps(x_t, eps, schedule.alpha_bar(t), clip_x0)
    var = ddpm_variance(schedule, t, variance)
    return _ancestral(x_t, eps, schedule.alpha_bar(t), float(schedule.betas[t]), var, t == 0, noise, generator)


def _ancestral(x_t, eps, alpha_bar: float, beta: float, var: float, last: bool, noise, generator) -> torch.Tensor:
    """μ_θ = (x_t − β/√(1−ᾱ)·ε)/√(1−β), plus √var·z unless ``last``."""
    mean = (x_t - (beta / math.sqrt(1.0 - alpha_bar)) * eps) / math.sqrt(1.0 - beta)
    if last:
        return mean
    return mean + math.sqrt(var) * (noise_like(x_t, generator) if noise is None else noise)


@torch.no_grad()
def ddpm_sample(
    model_fn: ModelFn, x_T: torch.Tensor, schedule: Schedule, *, variance: str = "small", **common
) -> torch.Tensor:
    """Ancestral sampling from x_T [N, ...] (in x_T's dtype) → x_0 [N, ...]: all T steps, or every
    step from ``start_t`` down, or the sub-sequence ``timesteps``/``sigmas`` with respaced β
    (``common``: the keywords every sampler takes, :mod:`ddkit.samplers.common`).
    ``denoised_fn(x0, info) -> x0`` changes each x̂₀ (after ``clip_x0``) before the step: the step is
    then the posterior q(x_{t-1} | x_t, x̂₀) of that x̂₀ (the last one returns it)."""
    ddpm_variance(schedule, 0, variance)  # validate before the first network call
    run = Sampling("DDPM", model_fn, x_T, schedule, None, "leading", **common)
    x, grid = x_T, run.grid
    for i in run:
        t, ab, ab_prev = grid.t[i], grid.alpha_bars[i], grid.alpha_bar_after(i)
        x0, eps = run.denoise(x, i, t, ab)
        last = i + 1 == len(grid)
        if last and run.denoised_fn is not None:  # the posterior of the last step is a point mass at x̂₀
            return x0
        if isinstance(t, int) and (grid.t[i + 1] if not last else -1) == t - 1:  # the schedule's own β
            beta, var = float(schedule.betas[t]), ddpm_variance(schedule, t, variance)
        else:  # respaced: β' = 1 − ᾱ_n/ᾱ_m
            beta = 1.0 - ab / ab_prev
            var = beta if variance == "large" else beta * (1.0 - ab_prev) / (1.0 - ab)
        x = _ancestral(x, eps, ab, beta, var, last, None, run.generator)
    return x
