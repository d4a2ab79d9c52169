"""EDM's samplers (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models", Algorithm 2): Euler and Heun steps on the probability-flow ODE in σ, with optional
stochastic "churn", run on ddkit's ε-network.

Notation (VP schedule, float64; see :mod:`ddkit.timesteps`):

    σ_t = √((1-ᾱ_t)/ᾱ_t)          the noise level of x̃ = x_t/√ᾱ_t = x₀ + σ·ε   (EDM's x, VP → VE)
    D(x̃; σ) = x̃ − σ·ε_θ(√ᾱ·x̃, t(σ))   the denoiser, ᾱ = 1/(1+σ²), t(σ) by log-σ interpolation
    d = (x̃ − D)/σ                   dx̃/dσ of the ODE (EDM eq. 3 with σ(t) = t); = ε_θ unclipped
    σ_0 > σ_1 > … > σ_{N-1} > σ_N = 0   the grid (default :func:`ddkit.timesteps.karras`, EDM eq. 5)

One step i (Algorithm 2):

    γ_i = min(S_churn/N, √2 − 1) if S_tmin ≤ σ_i ≤ S_tmax else 0
    σ̂ = σ_i·(1 + γ_i);   x̂ = x̃_i + √(σ̂² − σ_i²)·S_noise·z            (churn: add noise, z ~ N(0, I))
    x̃_{i+1} = x̂ + (σ_{i+1} − σ̂)·d(x̂; σ̂)                                 (Euler)
    heun, σ_{i+1} > 0:  x̃_{i+1} = x̂ + (σ_{i+1} − σ̂)·½·(d(x̂; σ̂) + d(x̃_{i+1}; σ_{i+1}))

The last step, to σ = 0, is Euler in both (it returns D there). Without churn the Euler sampler is
exactly DDIM with η = 0 on the same grid (d = ε). A σ̂ above the schedule's σ_max is evaluated at
t = T-1 with the input scaled by its own σ̂ (k-diffusion's discrete-ε wrapper does the same).
Model evaluations: N for Euler, 2N − 1 for Heun (so ``steps``, the number of evaluations, must
be odd for Heun).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch

from ..checks import integer, number
from ..parameterization import ModelFn
from ..schedule import Schedule
from ..timesteps import sampling_grid, t_from_sigma
from .common import Sampling, noise_like


def check_churn(s_churn: float, s_tmin: float, s_tmax: float, s_noise: float) -> None:
    """S_churn ≥ 0, 0 ≤ S_tmin ≤ S_tmax (S_tmax may be ∞), S_noise ≥ 0 (EDM's Algorithm 2 options)."""
    for name, value in (("s_churn", s_churn), ("s_tmin", s_tmin), ("s_noise", s_noise)):
        number(name, value, low=0.0, what="a finite number >= 0")
    ok = isinstance(s_tmax, (int, float)) and not isinstance(s_tmax, bool) and not math.isnan(s_tmax)
    if not ok or s_tmax < s_tmin:
        raise ValueError(f"s_tmax must be a number >= s_tmin = {s_tmin:g} (inf: no upper bound), got {s_tmax!r}")


def churn_gamma(sigma: float, num: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """γ_i = min(S_churn/N, √2 − 1) where S_tmin ≤ σ_i ≤ S_tmax, else 0 (EDM Algorithm 2, line 4)."""
    if s_churn == 0 or not s_tmin <= sigma <= s_tmax:
        return 0.0
    return min(s_churn / num, math.sqrt(2.0) - 1.0)


HEUN_MAX_RATIO = 8.0
"""The largest σ_i/σ_{i+1} of a Heun step (σ_{i+1} > 0) that :func:`heun_grid_message` lets pass."""


class PoorGridWarning(UserWarning):
    """A sampler and grid known to give poor samples (the message names a better choice)."""


def heun_grid_message(sigmas: Sequence[float]) -> str | None:
    """The one-line warning for a Heun step of the decreasing grid ``sigmas`` (ending in 0) that spans
    a σ ratio R above :data:`HEUN_MAX_RATIO`, or None: the corrector, averaging d = (x̃ − D)/σ at
    both ends, lands near D_i + (R − 1)/2·(D_{i+1} − D_i), an overshoot of the denoiser's change."""
    worst = max(((a / b, a, b) for a, b in zip(sigmas, sigmas[1:]) if b > 0), default=None)  # (ratio, σ_i, σ_{i+1})
    if worst is None or worst[0] <= HEUN_MAX_RATIO:
        return None
    n = 2 * (len(sigmas) - 1) - 1
    return (
        f"heun: its step from σ {worst[1]:.3g} to {worst[2]:.3g} (ratio {worst[0]:.3g}) overshoots; "
        f"use more steps or sampler dpm++ with steps {n}"
    )


def heun_warning(schedule: Schedule, *, steps: int = 19, spacing: str = "karras", timesteps=None, sigmas=None):
    """:func:`heun_grid_message` for the grid ``heun_sample`` would walk with these arguments."""
    points = edm_points(steps, heun=True) if timesteps is None and sigmas is None else None
    grid = sampling_grid(schedule, points, spacing, timesteps=timesteps, sigmas=sigmas)
    return heun_grid_message(grid.sigmas + [0.0])


def edm_points(steps: int, heun: bool) -> int:
    """The number N of grid points that ``steps`` model evaluations buy: N (Euler), (steps+1)/2 (Heun,
    whose N points cost 2N − 1); an even ``steps`` for Heun is an error."""
    steps = integer("steps", steps, low=1, what="a positive integer (model evaluations)")
    if heun and steps % 2 == 0:
        raise ValueError(f"steps (model evaluations) must be odd for heun: N grid points cost 2N − 1, got {steps}")
    return (steps + 1) // 2 if heun else steps


def _edm_sample(model_fn, x_T, schedule, heun: bool, steps, spacing, churn: tuple, common: dict) -> torch.Tensor:
    """Algorithm 2 on x̃ = x_t/√ᾱ (the module's notation); ``churn`` = (S_churn, S_tmin, S_tmax, S_noise)."""
    check_churn(*churn)
    explicit = common.get("timesteps") is not None or common.get("sigmas") is not None
    points = None if explicit else edm_points(steps, heun)
    run = Sampling("Heun" if heun else "Euler", model_fn, x_T, schedule, points, spacing, **common)
    grid, sig = run.grid, run.grid.sigmas + [0.0]
    if heun and (message := heun_grid_message(sig)):
        warnings.warn(message, PoorGridWarning, stacklevel=4)
    x = x_T * (1.0 / math.sqrt(grid.alpha_bars[0]))  # x̃ = x_t/√ᾱ
    for i in run:
        sigma, sigma_next, t = sig[i], sig[i + 1], grid.t[i]
        gamma = churn_gamma(sigma, len(grid), *churn[:3])
        if gamma > 0:  # churn: add noise up to σ̂ = σ·(1 + γ), evaluated at σ̂'s own (fractional) t
            sigma_hat = sigma * (1.0 + gamma)
            x = x + (math.sqrt(sigma_hat**2 - sigma**2) * churn[3]) * noise_like(x, run.generator)
            sigma, t = sigma_hat, float(t_from_sigma(schedule, [sigma_hat])[0])
        denoised, d = run.denoise(x, i, t, 1.0 / (1.0 + sigma * sigma), sigma=sigma)
        if sigma_next == 0:  # the last step: Euler, which lands on D
            x = denoised
            continue
        x_next = x + (sigma_next - sigma) * d
        if heun:
            ab_next = 1.0 / (1.0 + sigma_next * sigma_next)
            d_next = run.denoise(x_next, i + 1, grid.t[i + 1], ab_next, sigma=sigma_next, report=False)[1]
            x_next = x + (sigma_next - sigma) * (0.5 * (d + d_next))
        x = x_next
    return x


@torch.no_grad()
def euler_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 10,
    spacing: str = "kl-optimal",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    **common,
) -> torch.Tensor:
    """EDM's Euler sampler (Algorithm 2 without the second-order correction) from x_T [N, ...] (x at
    the grid's first point, in x_T's dtype) → x_0 [N, ...] in ``steps`` model evaluations.

    ``spacing``: any of :data:`ddkit.timesteps.ALL_SPACINGS` (default ``kl-optimal``, AYS Theorem 3.1:
    the DDIM optimum for Gaussian data, and on the oracle below karras ρ=7 at every NFE); an
    explicit ``timesteps`` or ``sigmas`` grid costs one evaluation a point (the last step goes to
    σ = 0). ``s_churn`` > 0 adds noise before each step whose σ lies in [s_tmin, s_tmax]
    (γ = min(s_churn/N, √2−1), noise scaled by ``s_noise``), drawn from ``generator``. Without churn
    this is DDIM η = 0 on the same grid. ``common``: the keywords every sampler takes
    (:mod:`ddkit.samplers.common`); ``clip_x0`` clamps D and ``denoised_fn`` then changes it.
    """
    return _edm_sample(model_fn, x_T, schedule, False, steps, spacing, (s_churn, s_tmin, s_tmax, s_noise), common)


@torch.no_grad()
def heun_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 19,
    spacing: str = "karras",
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    **common,
) -> torch.Tensor:
    """EDM's Heun sampler (Algorithm 2: second order, the last step Euler) from x_T [N, ...] → x_0
    [N, ...]. ``steps`` counts model evaluations and must be odd: N = (steps+1)/2 grid points cost
    2N − 1 (default 19: N = 10). An explicit ``timesteps``/``sigmas`` grid of N points costs 2N − 1.
    Other arguments as :func:`euler_sample` (deterministic unless ``s_churn`` > 0). Without churn it
    matches diffusers' ``HeunDiscreteScheduler`` on the same σ-grid. ``callback`` is called once per
    step, with the first evaluation's D.
    """
    return _edm_sample(model_fn, x_T, schedule, True, steps, spacing, (s_churn, s_tmin, s_tmax, s_noise), common)
