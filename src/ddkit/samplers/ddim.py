"""DDIM sampling and deterministic encoding (Song et al. 2020).

On a decreasing sub-sequence τ_S > … > τ_1 of timesteps, with ᾱ before the first step equal to 1,
one step from n = τ_i to m = τ_{i-1} is (DDIM eq. 12; seed eq. 19)

    x̂₀  = (x_n - √(1-ᾱ_n)·ε_θ(x_n, n)) / √ᾱ_n
    x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε_θ(x_n, n) + σ·z
    σ   = η·√((1-ᾱ_m)/(1-ᾱ_n))·√(1-ᾱ_n/ᾱ_m)                           (DDIM eq. 16)

η = 0 is deterministic; η = 1 over every step is DDPM with σ_t² = β̃_t (seed eqs. 20–21).
Inversion runs the η = 0 update backwards along the same sequence (DDIM §4.3, eq. 13). The points
come from :func:`ddkit.timesteps.sampling_grid` (a spacing, explicit ``timesteps`` or ``sigmas``,
optionally starting at ``start_t``); :class:`~ddkit.samplers.common.Sampling` does the rest.
"""

from __future__ import annotations

import math

import torch

from ..checks import integer, number
from ..parameterization import ModelFn, clip_eps, x0_from_eps
from ..schedule import Schedule
from .common import Sampling, noise_like, steps_iter


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
    x0, eps = clip_eps(x_t, eps, alpha_bar, clip_x0)
    return _update(x_t, x0, eps, alpha_bar_prev, sigma, noise, generator)


def _update(x_t, x0, eps, alpha_bar_prev: float, sigma: float, noise, generator) -> torch.Tensor:
    """x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε + σ·z (seed eq. 19) from a consistent pair (x̂₀, ε)."""
    if not 0.0 <= sigma**2 <= 1.0 - alpha_bar_prev + 1e-12:
        raise ValueError(f"sigma^2 must be in [0, 1 - alpha_bar_prev = {1.0 - alpha_bar_prev:.6g}], got {sigma**2:.6g}")
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        x_prev = x_prev + sigma * (noise_like(x_t, generator) if noise is None else noise)
    return x_prev


@torch.no_grad()
def ddim_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 50,
    eta: float = 0.0,
    spacing: str = "leading",
    **common,
) -> torch.Tensor:
    """DDIM sampling from x_T [N, ...] (in x_T's dtype) over ``steps`` points → x_0 [N, ...].

    ``spacing``: any of :data:`ddkit.timesteps.ALL_SPACINGS`; η ∈ [0, 1] scales the noise (eq. 16);
    ``common``: the keywords every sampler takes (:mod:`ddkit.samplers.common`: ``generator``,
    ``progress``, ``clip_x0``, ``timesteps``, ``sigmas``, ``start_t``, ``callback``,
    ``denoised_fn``). After ``denoised_fn`` the step takes the ε of the changed x̂₀,
    ε = (x_n - √ᾱ_n·x̂₀)/√(1-ᾱ_n), so x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε + σ·z, and the last step
    returns the changed x̂₀ itself (DDNM's projection, DPS's gradient step: :mod:`ddkit.edit`).
    """
    eta = number("eta", eta, low=0.0, high=1.0, what="in [0, 1]")
    run = Sampling("DDIM", model_fn, x_T, schedule, steps, spacing, **common)
    x, grid = x_T, run.grid
    for i in run:
        ab, ab_prev = grid.alpha_bars[i], grid.alpha_bar_after(i)
        x0, eps = run.denoise(x, i, grid.t[i], ab)
        x = _update(x, x0, eps, ab_prev, ddim_sigma(ab, ab_prev, eta), None, run.generator)
    return x


@torch.no_grad()
def ddim_invert(
    model_fn: ModelFn,
    x0: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 50,
    spacing: str = "leading",
    refine: int = 1,
    **common,
) -> torch.Tensor:
    """Deterministic DDIM encoding x_0 → x_T [N, ...]: the η = 0 update run backwards along the
    grid that :func:`ddim_sample` walks (same ``steps``/``spacing`` and common ``timesteps``/
    ``sigmas``/``start_t``; with ``start_t`` it encodes to x at that timestep; ``progress`` and
    ``callback`` as there).

    The sampler's step from n = τ_i down to m = τ_{i-1} is x_m = a·x_n + b·ε_θ(x_n, n) with
    a = √(ᾱ_m/ᾱ_n), b = √(1-ᾱ_m) - √(ᾱ_m(1-ᾱ_n)/ᾱ_n). Inverting it needs ε_θ(x_n, n) before x_n is
    known. The plain inversion (``refine=0``; diffusers' ``DDIMInverseScheduler``) uses
    ε_θ(x_m, n); each refinement re-evaluates ε_θ at the latest x_n and solves
    x_n = (x_m - b·ε)/a again (a fixed-point iteration), which makes sampling an almost exact
    inverse of the encoding. Cost: ``steps · (1 + refine)`` model calls.
    """
    integer("refine", refine, low=0, what="a non-negative integer")
    run = Sampling("DDIM inversion", model_fn, x0, schedule, steps, spacing, **common)
    x, grid, ab_prev = x0, run.grid, 1.0
    for i in steps_iter(range(len(grid) - 1, -1, -1), run.progress, run.desc):
        t, ab = grid.t[i], grid.alpha_bars[i]
        x_next = x
        for _ in range(1 + refine):
            eps = run.denoise(x_next, i, t, ab, report=False)[1]
            x_next = math.sqrt(ab) * x0_from_eps(x, eps, ab_prev) + math.sqrt(1.0 - ab) * eps
        run.report(len(grid) - 1 - i, t, ab, x_next, x0_from_eps(x_next, eps, ab))
        x, ab_prev = x_next, ab
    return x
