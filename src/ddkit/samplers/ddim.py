"""DDIM sampling and deterministic encoding (Song et al. 2020).

On a decreasing sub-sequence τ_S > … > τ_1 of timesteps, with ᾱ before the first step equal to 1,
one step from n = τ_i to m = τ_{i-1} is (DDIM eq. 12; seed eq. 19)

    x̂₀  = (x_n - √(1-ᾱ_n)·ε_θ(x_n, n)) / √ᾱ_n
    x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε_θ(x_n, n) + σ·z
    σ   = η·√((1-ᾱ_m)/(1-ᾱ_n))·√(1-ᾱ_n/ᾱ_m)                           (DDIM eq. 16)

η = 0 is deterministic; η = 1 over every step is DDPM with σ_t² = β̃_t (seed eqs. 20–21).
Inversion runs the η = 0 update backwards along the same sequence (DDIM §4.3, eq. 13). The points
come from :func:`ddkit.timesteps.sampling_grid` (a spacing, explicit ``timesteps`` or ``sigmas``,
optionally starting at ``start_t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import integer
from ..parameterization import ModelFn, clip_eps, eps_from_x0, x0_from_eps
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


def ddim_sigma(alpha_bar: float, alpha_bar_prev: float, eta: float) -> float:
    """σ of DDIM eq. (16) for a step from ᾱ_n = ``alpha_bar`` to ᾱ_m = ``alpha_bar_prev``."""
    return eta * math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: float,
    alpha_bar_prev: float,
    *,
    sigma: float = 0.0,
    clip_x0=None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One generalised step x_n → x_m (seed eq. 19) with noise scale ``sigma``.

    x_t, eps: [N, ...]; ``alpha_bar`` = ᾱ_n, ``alpha_bar_prev`` = ᾱ_m (1 after the last step).
    ``noise`` is drawn from ``generator`` when needed and not given.
    """
    _check_sigma(sigma, alpha_bar_prev)
    x0, eps = clip_eps(x_t, eps, alpha_bar, clip_x0)
    return _update(x_t, x0, eps, alpha_bar_prev, sigma, noise, generator)


def _update(x_t, x0, eps, alpha_bar_prev: float, sigma: float, noise, generator) -> torch.Tensor:
    """x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε + σ·z (seed eq. 19) from a consistent pair (x̂₀, ε)."""
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            noise = noise_like(x_t, generator)
        x_prev = x_prev + sigma * noise
    return x_prev


def _check_sigma(sigma: float, alpha_bar_prev: float) -> None:
    if not 0.0 <= sigma**2 <= 1.0 - alpha_bar_prev + 1e-12:
        raise ValueError(
            f"sigma^2 must be in [0, 1 - alpha_bar_prev] = [0, {1.0 - alpha_bar_prev:.6g}], got {sigma**2:.6g}"
        )


def _check_eta(eta: float) -> None:
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "uniform",
    generator: torch.Generator | None = None,
    progress: bool = False,
    clip_x0=None,
    timesteps: Sequence[int] | None = None,
    sigmas: Sequence[float] | None = None,
    start_t: int | None = None,
    callback: Callback = None,
    denoised_fn: DenoisedFn = None,
) -> torch.Tensor:
    """DDIM sampling from x_T [N, ...] (in x_T's dtype) over ``steps`` points → x_0 [N, ...].

    ``spacing``: any of :data:`ddkit.timesteps.ALL_SPACINGS`, or pass an explicit decreasing
    ``timesteps`` (0-based ints) or ``sigmas`` sequence; ``start_t``: the spacing starts there
    (x_T is then x at that timestep). η ∈ [0, 1] scales the noise (eq. 16). ``callback(info)``
    gets each step's :class:`~ddkit.samplers.common.StepInfo`. ``denoised_fn(x0, info) -> x0``
    changes each x̂₀ (after ``clip_x0``) before the step uses it; the step then takes the ε of
    that x̂₀, ε = (x_n - √ᾱ_n·x̂₀)/√(1-ᾱ_n), so x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε + σ·z, and the last
    step returns the changed x̂₀ itself (DDNM's projection, DPS's gradient step: :mod:`ddkit.edit`).
    """
    check_sample_args(x_T, clip_x0, callback, denoised_fn)
    _check_eta(eta)
    grid = sampling_grid(schedule, steps, spacing, timesteps=timesteps, sigmas=sigmas, start_t=start_t)
    x = x_T
    for i in steps_iter(range(len(grid)), progress, "DDIM"):
        t, ab = grid.t[i], grid.alpha_bars[i]
        ab_prev = grid.alpha_bar_after(i)
        sigma = ddim_sigma(ab, ab_prev, float(eta))
        eps = call_model(model_fn, x, t)
        if denoised_fn is None:
            if callback is not None:
                report(callback, i, t, ab, x, clip_eps(x, eps, ab, clip_x0)[0])
            x = ddim_step(x, eps, ab, ab_prev, sigma=sigma, clip_x0=clip_x0, generator=generator)
            continue
        x0 = apply_denoised_fn(denoised_fn, i, t, ab, x, clip_eps(x, eps, ab, clip_x0)[0])
        report(callback, i, t, ab, x, x0)
        _check_sigma(sigma, ab_prev)
        x = _update(x, x0, eps_from_x0(x, x0, ab), ab_prev, sigma, None, generator)
    return x


@torch.no_grad()
def ddim_invert(
    model_fn: ModelFn,
    x0: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 50,
    spacing: str = "uniform",
    progress: bool = False,
    timesteps: Sequence[int] | None = None,
    sigmas: Sequence[float] | None = None,
    start_t: int | None = None,
    refine: int = 1,
    callback: Callback = None,
) -> torch.Tensor:
    """Deterministic DDIM encoding x_0 → x_T [N, ...]: the η = 0 update run backwards along the
    grid that :func:`ddim_sample` walks (same ``steps``/``spacing``/``timesteps``/``sigmas``/
    ``start_t``; with ``start_t`` it encodes to x at that timestep).

    The sampler's step from n = τ_i down to m = τ_{i-1} is x_m = a·x_n + b·ε_θ(x_n, n) with
    a = √(ᾱ_m/ᾱ_n), b = √(1-ᾱ_m) - √(ᾱ_m(1-ᾱ_n)/ᾱ_n). Inverting it needs ε_θ(x_n, n) before x_n is
    known. The plain inversion (``refine=0``; diffusers' ``DDIMInverseScheduler``) uses
    ε_θ(x_m, n); each refinement re-evaluates ε_θ at the latest x_n and solves
    x_n = (x_m - b·ε)/a again (a fixed-point iteration), which makes sampling an almost exact
    inverse of the encoding. Cost: ``steps · (1 + refine)`` model calls.
    """
    check_sample_args(x0, None, callback)
    integer("refine", refine, low=0, what="a non-negative integer")
    grid = sampling_grid(schedule, steps, spacing, timesteps=timesteps, sigmas=sigmas, start_t=start_t)
    x = x0
    ab_prev = 1.0
    for i in steps_iter(range(len(grid) - 1, -1, -1), progress, "DDIM inversion"):
        t, ab = grid.t[i], grid.alpha_bars[i]
        x_next = x
        for _ in range(1 + refine):
            eps = call_model(model_fn, x_next, t)
            x_next = math.sqrt(ab) * x0_from_eps(x, eps, ab_prev) + math.sqrt(1.0 - ab) * eps
        if callback is not None:
            report(callback, len(grid) - 1 - i, t, ab, x_next, x0_from_eps(x_next, eps, ab))
        x, ab_prev = x_next, ab
    return x
