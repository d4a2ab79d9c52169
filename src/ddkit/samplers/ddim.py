"""DDIM sampling and deterministic encoding (Song et al. 2020).

On a decreasing sub-sequence τ_S > … > τ_1 of timesteps, with ᾱ before the first step equal to 1,
one step from n = τ_i to m = τ_{i-1} is (DDIM eq. 12; seed eq. 19)

    x̂₀  = (x_n - √(1-ᾱ_n)·ε_θ(x_n, n)) / √ᾱ_n
    x_m = √ᾱ_m·x̂₀ + √(1-ᾱ_m-σ²)·ε_θ(x_n, n) + σ·z
    σ   = η·√((1-ᾱ_m)/(1-ᾱ_n))·√(1-ᾱ_n/ᾱ_m)                           (DDIM eq. 16)

η = 0 is deterministic; η = 1 over every step is DDPM with σ_t² = β̃_t (seed eqs. 20–21).
Inversion runs the η = 0 update backwards along the same sequence (DDIM §4.3, eq. 13).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ..parameterization import ModelFn, clip_eps, x0_from_eps
from ..schedule import Schedule, check_alpha_bars, make_timesteps
from .common import call_model, check_sample_args, noise_like, steps_iter


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
    if not 0.0 <= sigma ** 2 <= 1.0 - alpha_bar_prev + 1e-12:
        raise ValueError(f"sigma^2 must be in [0, 1 - alpha_bar_prev] = [0, {1.0 - alpha_bar_prev:.6g}], got {sigma ** 2:.6g}")
    x0, eps = clip_eps(x_t, eps, alpha_bar, clip_x0)
    x_prev = math.sqrt(alpha_bar_prev) * x0 + math.sqrt(max(1.0 - alpha_bar_prev - sigma ** 2, 0.0)) * eps
    if sigma > 0:
        if noise is None:
            noise = noise_like(x_t, generator)
        x_prev = x_prev + sigma * noise
    return x_prev


def resolve_timesteps(schedule: Schedule, steps: int, spacing: str, timesteps: Sequence[int] | None) -> list[int]:
    """The decreasing 0-based timesteps to visit: ``timesteps`` if given, else from (steps, spacing)."""
    if timesteps is None:
        return make_timesteps(schedule.num_timesteps, steps, spacing, schedule=schedule).tolist()
    seq = [int(t) for t in timesteps]
    if not seq or any(not 0 <= t < schedule.num_timesteps for t in seq) or any(a <= b for a, b in zip(seq, seq[1:])):
        raise ValueError(f"timesteps must be a non-empty, strictly decreasing sequence in [0, {schedule.num_timesteps - 1}]")
    return seq


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
) -> torch.Tensor:
    """DDIM sampling from x_T [N, ...] (in x_T's dtype) over ``steps`` timesteps → x_0 [N, ...].

    ``spacing``: uniform | quadratic | trailing | linspace (see :func:`ddkit.make_timesteps`), or pass
    an explicit decreasing ``timesteps`` sequence. η ∈ [0, 1] scales the noise (eq. 16).
    """
    check_sample_args(x_T, clip_x0)
    _check_eta(eta)
    seq = resolve_timesteps(schedule, steps, spacing, timesteps)
    check_alpha_bars(schedule, seq)
    x = x_T
    for i in steps_iter(range(len(seq)), progress, "DDIM"):
        t, t_prev = seq[i], (seq[i + 1] if i + 1 < len(seq) else -1)
        ab, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        eps = call_model(model_fn, x, t)
        x = ddim_step(x, eps, ab, ab_prev, sigma=ddim_sigma(ab, ab_prev, float(eta)),
                      clip_x0=clip_x0, generator=generator)
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
    refine: int = 1,
) -> torch.Tensor:
    """Deterministic DDIM encoding x_0 → x_T [N, ...]: the η = 0 update run backwards along the
    sequence that :func:`ddim_sample` walks (same ``steps``/``spacing``/``timesteps``).

    The sampler's step from n = τ_i down to m = τ_{i-1} is x_m = a·x_n + b·ε_θ(x_n, n) with
    a = √(ᾱ_m/ᾱ_n), b = √(1-ᾱ_m) - √(ᾱ_m(1-ᾱ_n)/ᾱ_n). Inverting it needs ε_θ(x_n, n) before x_n is
    known. The plain inversion (``refine=0``; diffusers' ``DDIMInverseScheduler``) uses
    ε_θ(x_m, n); each refinement re-evaluates ε_θ at the latest x_n and solves
    x_n = (x_m - b·ε)/a again (a fixed-point iteration), which makes sampling an almost exact
    inverse of the encoding. Cost: ``steps · (1 + refine)`` model calls.
    """
    check_sample_args(x0, None)
    if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
        raise ValueError(f"refine must be a non-negative integer, got {refine!r}")
    seq = resolve_timesteps(schedule, steps, spacing, timesteps)[::-1]
    x = x0
    ab_prev = 1.0
    for t in steps_iter(seq, progress, "DDIM inversion"):
        ab = schedule.alpha_bar(t)
        x_next = x
        for _ in range(1 + refine):
            eps = call_model(model_fn, x_next, t)
            x_next = math.sqrt(ab) * x0_from_eps(x, eps, ab_prev) + math.sqrt(1.0 - ab) * eps
        x, ab_prev = x_next, ab
    return x
