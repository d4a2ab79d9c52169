"""Pieces shared by the samplers: argument checks, the model call, (α, σ, λ) at a timestep and the
progress bar."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..parameterization import ModelFn
from ..rng import Generator, randn
from ..schedule import Schedule


def check_sample_args(x: torch.Tensor, clip_x0) -> None:
    """x: a floating tensor [N, ...] with N ≥ 1; clip_x0: None or a (low, high) pair with low < high."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("the starting tensor must be a floating-point torch.Tensor [N, ...]")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"the starting tensor must have shape [N, ...] with N >= 1, got {list(x.shape)}")
    if clip_x0 is not None:
        if len(clip_x0) != 2 or not float(clip_x0[0]) < float(clip_x0[1]):
            raise ValueError(f"clip_x0 must be None or a (low, high) pair with low < high, got {clip_x0!r}")


def call_model(model_fn: ModelFn, x: torch.Tensor, t: int) -> torch.Tensor:
    """ε̂ = model_fn(x, t) for one shared 0-based timestep ``t``; checks the output's shape."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    eps = model_fn(x, t_batch)
    if eps.shape != x.shape:
        raise ValueError(f"model_fn returned shape {list(eps.shape)}, expected the input's {list(x.shape)}")
    return eps.to(x.dtype)


def alpha_sigma_lambda(schedule: Schedule, t: int) -> tuple[float, float, float]:
    """(α_t, σ_t, λ_t) = (√ᾱ_t, √(1-ᾱ_t), log(α_t/σ_t)) in float64 for a 0-based t, for the solvers
    that step in λ (DPM-Solver++, UniPC); t = -1 is the end point σ = 0 (α = 1, λ = +∞)."""
    if t < 0:
        return 1.0, 0.0, math.inf
    ab = schedule.alpha_bar(t)
    return math.sqrt(ab), math.sqrt(1.0 - ab), 0.5 * (math.log(ab) - math.log1p(-ab))


def steps_iter(seq, progress: bool, desc: str):
    """Iterate ``seq`` with a tqdm bar when ``progress`` is true."""
    return tqdm(seq, desc=desc, leave=False, dynamic_ncols=True) if progress else seq


def noise_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise with x's shape, dtype and device, drawn from ``generator`` (a
    ``torch.Generator``, :class:`ddkit.rng.SampleGenerators` for noise per sample, or None)."""
    return randn(x.shape, generator, dtype=x.dtype, device=x.device)
