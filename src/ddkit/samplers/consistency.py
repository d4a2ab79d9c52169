"""Multistep consistency sampling (Song et al. 2023, Algorithm 1) for a consistency model read as
an ε-network (:class:`ddkit.consistency.ConsistencyNetwork`): one evaluation per point of a short
σ-grid, fresh noise between them, or with CTM's γ (Kim et al. 2023, "Consistency trajectory models")
a share of the noise the model predicted (γ = 0: DDIM's deterministic re-noising).

Notation: σ = √((1-ᾱ)/ᾱ), x̃ = x_t/√ᾱ = x₀ + σ·ε, t(σ) the fractional model timestep of σ."""

from __future__ import annotations

import math

import torch

from ..checks import integer, is_int, number
from ..parameterization import ModelFn
from ..schedule import Schedule
from ..timesteps import KARRAS_RHO
from .common import Sampling, noise_like

SIGMA_MAX = 80.0
"""Where one-step sampling starts (EDM's and ECT's σ_max; the cosine schedule's own is about 2×10⁴)."""
SIGMA_MID = 0.821
"""ECT's intermediate σ for two-step sampling on CIFAR-10 (a student records its own)."""


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


def _default_sigmas(schedule: Schedule, steps: int, start_t: int | None) -> list[float]:
    """The grid when none is given: from σ_top = σ(start_t), or min(80, the schedule's largest σ),
    [σ_top] or [σ_top, 0.821] (:func:`consistency_grid`); otherwise, or when σ_top ≤ 0.821, the first
    ``steps`` points of the (steps+1)-point karras grid from σ_top to σ_min (EDM eq. 5)."""
    integer("steps", steps, low=1, what="a positive integer (model evaluations)")
    finite = schedule.sigmas[torch.isfinite(schedule.sigmas)]
    top = float(schedule.sigmas[start_t]) if start_t is not None else min(SIGMA_MAX, float(finite[-1]))
    if start_t is None and steps <= 2 and top > SIGMA_MID:
        return consistency_grid(steps, top)
    a, b = top ** (1 / KARRAS_RHO), float(schedule.sigmas[0]) ** (1 / KARRAS_RHO)  # σ_max^{1/ρ}, σ_min^{1/ρ}
    return [top] + [(a + i / steps * (b - a)) ** KARRAS_RHO for i in range(1, steps)]


@torch.no_grad()
def consistency_sample(
    model_fn: ModelFn, x_T: torch.Tensor, schedule: Schedule, *, steps: int = 1, gamma: float = 1.0, **common
) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) from x_T [N, ...] (x at the
    grid's first point) → x_0 [N, ...] with a consistency model read as ε, in ``steps`` model
    evaluations. On the grid σ_0 > σ_1 > … (explicit ``timesteps`` or ``sigmas``, else
    :func:`_default_sigmas`: [80] for one step, [80, 0.821] for two): x̃ = x_T/√ᾱ_0; at each point,
    D = x̃ − σ_i·ε(√ᾱ_i·x̃, t_i) (:meth:`~ddkit.samplers.common.Sampling.denoise`); then
    x̃ = D + σ_{i+1}·z with fresh z ~ N(0, I) from ``generator``; the last D is the sample.
    ``gamma`` γ in [0, 1] (CTM's γ-sampling, Kim et al. 2023): x̃ = D + σ_{i+1}·(√(1 − γ²)·ε̂ + γ·z)
    with ε̂ = (x̃ − D)/σ_i the noise the model saw; 1 (the default) is Algorithm 1's fresh noise, 0
    draws none and is DDIM η = 0 on the same grid.
    ``common``: the keywords every sampler takes (:mod:`ddkit.samplers.common`); ``start_t``: the
    grid starts there (x_T is x at start_t); ``clip_x0`` clamps D, ``denoised_fn`` then changes it."""
    if common.get("timesteps") is None and common.get("sigmas") is None:
        common = common | {"sigmas": _default_sigmas(schedule, steps, common.get("start_t")), "start_t": None}
    gamma = number("gamma", gamma, low=0.0, high=1.0, what="in [0, 1]")
    run = Sampling("consistency", model_fn, x_T, schedule, None, "leading", **common)
    grid, sig = run.grid, run.grid.sigmas
    x = x_T * (1.0 / math.sqrt(grid.alpha_bars[0]))  # x̃ = x_t/√ᾱ
    for i in run:
        denoised, eps = run.denoise(x, i, grid.t[i], grid.alpha_bars[i], sigma=sig[i])
        if i + 1 < len(grid):  # noise up to the next point's σ: fresh (γ = 1), the model's (γ = 0) or a mix
            z = noise_like(denoised, run.generator) if gamma > 0 else 0.0
            x = denoised + sig[i + 1] * (z if gamma == 1 else math.sqrt(1.0 - gamma * gamma) * eps + gamma * z)
    return denoised
