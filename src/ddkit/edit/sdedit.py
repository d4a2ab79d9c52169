"""SDEdit (Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations"): push an image part of the way into the noise, then denoise it back.

    t₀  = round(strength·T) - 1   (0-based; strength 1 starts at T - 1, pure noise for most schedules)
    x_t₀ = √ᾱ_t₀·x₀ + √(1-ᾱ_t₀)·ε      (q_sample, seed eq. 3)   or   DDIM inversion to t₀ (``invert``)
    x̃₀  = sampler(x_t₀) from t₀ down to 0

A small strength keeps the input's layout and fixes its details (faithful); a large one trusts the
model more (realistic). With ``invert=True`` the way up is the deterministic DDIM encoding, so
with DDIM η = 0 on the same grid the edit is (close to) the identity at any strength.
"""

from __future__ import annotations

import torch

from ..checks import ParameterError, number
from ..parameterization import ModelFn
from ..rng import Generator
from ..samplers import ddim_invert, get_sampler, run_sampler
from ..samplers.common import noise_like
from ..schedule import Schedule


def strength_timestep(schedule: Schedule, strength: float) -> int:
    """t₀ = round(strength·T) - 1 (at least 0): the 0-based timestep SDEdit starts from, for a
    strength in (0, 1]."""
    s = number("strength", strength, low=0.0, high=1.0, low_open=True, what="a number in (0, 1]")
    return max(0, min(schedule.num_timesteps - 1, round(s * schedule.num_timesteps) - 1))


def _steps_for(sampler: str, steps: int | None, t0: int) -> int | None:
    """``steps`` (or the sampler's default), at most the t₀ + 1 timesteps below t₀."""
    spec = get_sampler(sampler)
    if "steps" not in spec.options:
        if steps is not None:
            raise ParameterError(f"sampler {sampler!r} takes no `steps` (it walks every timestep from t₀)")
        return None
    if steps is None:
        steps = spec.defaults["steps"]
    return min(int(steps), t0 + 1)


@torch.no_grad()
def sdedit(
    model_fn: ModelFn,
    x0: torch.Tensor,
    schedule: Schedule,
    *,
    strength: float,
    sampler: str = "ddim",
    steps: int | None = None,
    generator: Generator = None,
    invert: bool = False,
    refine: int = 1,
    progress: bool = False,
    **sampler_options,
) -> torch.Tensor:
    """SDEdit of x0 [N, ...] → [N, ...]: noise to t₀ = round(strength·T) - 1 with ``q_sample``
    (noise from ``generator``: per-sample generators give per-sample noise), then denoise from t₀
    with the registered ``sampler`` (its ``start_t``), in ``steps`` steps (default the sampler's;
    at most t₀ + 1).

    ``invert=True`` reaches t₀ by DDIM inversion (:func:`~ddkit.samplers.ddim_invert` with
    ``refine``) on the grid the sampler will walk back (``steps``, ``spacing``/``timesteps``), so
    that with ``sampler="ddim"`` and η = 0, strength 1 round-trips x0. ``sampler_options``
    (``eta``, ``spacing``, ``order``, ``clip_x0``, ``callback``, ``denoised_fn``, …) go to the sampler.
    """
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise ValueError("x0 must be a floating-point tensor [N, ...]")
    t0 = strength_timestep(schedule, strength)
    steps = _steps_for(sampler, steps, t0)
    if "timesteps" in sampler_options or "sigmas" in sampler_options or "start_t" in sampler_options:
        raise ParameterError("sdedit chooses the grid from `strength`: pass `steps` and `spacing`, not a grid")
    grid = {"steps": steps} if steps is not None else {}
    if invert:
        spacing = sampler_options.get("spacing") or "leading"  # ddim_invert's default
        x_t = ddim_invert(
            model_fn, x0, schedule, steps=steps or t0 + 1, spacing=spacing, start_t=t0, refine=refine, progress=progress
        )
    else:
        ab = schedule.alpha_bar(t0)
        noise = noise_like(x0, generator)
        x_t = ab**0.5 * x0 + (1.0 - ab) ** 0.5 * noise  # q_sample at t₀ (seed eq. 3), ᾱ in float64
    return run_sampler(
        sampler, model_fn, x_t, schedule, generator=generator, progress=progress, start_t=t0, **grid, **sampler_options
    )
