"""Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model read as
an ε-network (:class:`ddkit.consistency.ConsistencyNetwork`): one evaluation per point of a short
σ-grid, fresh noise between them.

Notation: σ = √((1-ᾱ)/ᾱ), x̃ = x_t/√ᾱ = x₀ + σ·ε, t(σ) the fractional model timestep of σ."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import is_int
from ..parameterization import ModelFn
from ..schedule import Schedule
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

SIGMA_MAX = 80.0
"""Where one-step sampling starts (EDM's and ECT's σ_max; the cosine schedule's own is about 2×10⁴)."""
SIGMA_MID = 0.821
"""ECT's intermediate σ for two-step sampling on CIFAR-10 (a student records its own)."""


def t_of_sigma(schedule: Schedule, sigma: torch.Tensor) -> torch.Tensor:
    """The fractional model timestep of each σ [N] (log σ interpolated linearly between the discrete
    steps, the inverse of :func:`ddkit.timesteps.alpha_bar_at`), clamped to [0, T-1]; float64 [N]."""
    log_s = schedule.on(schedule.sigmas, sigma.device).log()
    finite = torch.isfinite(log_s)
    log_s = log_s[finite]
    steps = torch.arange(schedule.num_timesteps, dtype=torch.float64, device=sigma.device)[finite]
    x = sigma.to(torch.float64).log().clamp(log_s[0], log_s[-1])
    hi = torch.searchsorted(log_s, x).clamp(1, len(log_s) - 1)
    lo = hi - 1
    w = (x - log_s[lo]) / (log_s[hi] - log_s[lo])
    return steps[lo] + w * (steps[hi] - steps[lo])


def consistency_grid(steps: int, sigma_max: float = SIGMA_MAX, sigma_mid: float = SIGMA_MID) -> list[float]:
    """The σ at which ``steps`` (1 or 2) consistency evaluations are made: [σ_max] or [σ_max, σ_mid]."""
    if not is_int(steps) or steps not in (1, 2):
        raise ValueError(
            f"steps (model evaluations) must be 1 or 2 for consistency sampling on its default grid, got {steps!r} "
            "(give an explicit sigmas grid for more)"
        )
    if not 0 < sigma_mid < sigma_max:
        raise ValueError(f"sigma_mid must lie in (0, sigma_max = {sigma_max:g}), got {sigma_mid!r}")
    return [float(sigma_max), float(sigma_mid)][:steps]


@torch.no_grad()
def consistency_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 1,
    generator=None,
    progress: bool = False,
    clip_x0=None,
    timesteps: Sequence | None = None,
    sigmas: Sequence[float] | None = None,
    start_t: int | None = None,
    callback: Callback = None,
    denoised_fn: DenoisedFn = None,
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) from x_T [N, ...] → x_0 [N, ...]
    with a consistency model read as ε: on the grid σ_0 > σ_1 > … (default
    :func:`consistency_grid`: [80] for one step, [80, 0.821] for two; ``steps`` = model evaluations),
    x̃ = x_T/√ᾱ(σ_0); at each σ_i, D = x̃ − σ_i·ε(√ᾱ_i·x̃, t(σ_i)); then x̃ = D + σ_{i+1}·z with fresh
    z ~ N(0, I) from ``generator``; the last D is the sample. ``clip_x0`` clamps D, ``denoised_fn``
    then changes it; ``callback`` gets each step's StepInfo. ``timesteps``/``start_t`` are not
    supported (a consistency model jumps, it does not walk a grid of timesteps)."""
    check_sample_args(x_T, clip_x0, callback, denoised_fn)
    if timesteps is not None or start_t is not None:
        raise ValueError("consistency sampling takes a sigmas grid, not timesteps or start_t")
    sig = consistency_grid(steps) if sigmas is None else [float(s) for s in sigmas]
    if sig and sig[-1] == 0:
        sig = sig[:-1]
    lo, hi = float(schedule.sigmas[0]), float(schedule.sigmas[-1])
    if not sig or any(not lo <= s <= hi for s in sig) or any(a <= b for a, b in zip(sig, sig[1:])):
        raise ValueError(f"sigmas must be a strictly decreasing grid within the schedule's [{lo:.4g}, {hi:.4g}]")
    t_grid = t_of_sigma(schedule, torch.tensor(sig, dtype=torch.float64)).tolist()
    x = x_T * math.sqrt(1.0 + sig[0] ** 2)
    for i in steps_iter(range(len(sig)), progress, "consistency"):
        alpha_bar = 1.0 / (1.0 + sig[i] ** 2)
        x_t = x * math.sqrt(alpha_bar)
        denoised = x - sig[i] * call_model(model_fn, x_t, t_grid[i])
        if clip_x0 is not None:
            denoised = denoised.clamp(clip_x0[0], clip_x0[1])
        denoised = apply_denoised_fn(denoised_fn, i, t_grid[i], alpha_bar, x_t, denoised)
        report(callback, i, t_grid[i], alpha_bar, x_t, denoised)
        if i + 1 == len(sig):
            return denoised
        x = denoised + sig[i + 1] * noise_like(denoised, generator)
    raise AssertionError("unreachable")
