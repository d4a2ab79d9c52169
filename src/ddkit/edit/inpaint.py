"""Inpainting with an unconditional model: fill the values a mask marks unknown, keep the others.

Notation (m the mask, 1 = known; y the known values; a grid τ_0 > τ_1 > … > τ_{S-1} of
timesteps, point i at ᾱ_i, and ᾱ_S = 1 after the last):

    replace (the plain method; "replacement", Song et al. 2021, App. I.2)
        at each point i:  x_i ← m ⊙ (√ᾱ_i·y + √(1-ᾱ_i)·z) + (1 - m) ⊙ x_i     (fresh z: q_sample of y)
                          x_{i+1} = DDIM step with η from (x_i, ε_θ(x_i, τ_i))    (η = 1: DDPM's step)
    repaint (Lugmayr et al. 2022, "RePaint", Algorithm 1)
        the same steps, on a walk that goes back: after reaching certain points it re-noises
        x_i → x_{i-j} ~ q(x_{i-j} | x_i) = N(√(ᾱ_{i-j}/ᾱ_i)·x_i, (1 - ᾱ_{i-j}/ᾱ_i)·I)   (j = jump_length)
        and denoises the same j steps again, ``resample`` times in all (:func:`repaint_walk`),
        which lets the unknown part agree with the known one

and at the end x₀ ← m ⊙ y + (1 - m) ⊙ x₀: the known values of the output are the input's, exactly.
The grid is DDPM's schedule (``steps`` = T) or a respaced sub-sequence (``steps`` < T, or
explicit ``timesteps``), as RePaint respaces 1000 training steps to 250.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import ParameterError, choice, integer, number
from ..parameterization import ModelFn, clip_eps
from ..rng import Generator
from ..samplers import ddim_sigma, ddim_step
from ..samplers.common import Callback, call_model, check_sample_args, noise_like, step_info, steps_iter
from ..schedule import Schedule
from ..timesteps import sampling_grid
from .masks import check_mask

INPAINT_METHODS = ("repaint", "replace")
DEFAULT_STEPS = 250  # RePaint's respaced T
DEFAULT_JUMP_LENGTH = 10
DEFAULT_RESAMPLE = 10


def repaint_walk(steps: int, jump_length: int = DEFAULT_JUMP_LENGTH, resample: int = DEFAULT_RESAMPLE) -> list[int]:
    """RePaint's time walk over a grid of ``steps`` points (its ``get_schedule_jump`` with
    ``jump_n_sample`` = resample): the grid indices visited, from 0 (the first, noisiest point) to
    ``steps`` (x₀). A move to index + 1 is a denoising step; a move back by ``jump_length``
    re-noises. The walk jumps back on reaching the points k = 0, j, 2j, … < steps - j below the
    last grid point (index steps - 1 - k), ``resample`` - 1 times at each, so it takes
    steps + (resample - 1)·j·⌈(steps - j)/j⌉ ≈ resample × steps denoising steps; resample 1 is the
    plain walk 0, 1, …, steps."""
    steps = integer("steps", steps, low=1)
    j = integer("jump_length", jump_length, low=1)
    r = integer("resample", resample, low=1)
    left = dict.fromkeys(range(0, steps - j, j), r - 1)  # k = grid points left before x₀ (RePaint's t)
    k, ks = steps, []
    while k >= 1:
        k -= 1
        ks.append(k)
        if left.get(k, 0) > 0:
            left[k] -= 1
            for _ in range(j):
                k += 1
                ks.append(k)
    return [steps - 1 - k for k in ks] + [steps]


def _check_method_options(method: str, jump_length, resample) -> tuple[int, int]:
    choice("method", method, INPAINT_METHODS)
    if method == "replace":
        if jump_length is not None or resample is not None:
            raise ParameterError("`jump_length` and `resample` apply to method repaint (replace never goes back)")
        return 1, 1
    j = DEFAULT_JUMP_LENGTH if jump_length is None else integer("jump_length", jump_length, low=1)
    r = DEFAULT_RESAMPLE if resample is None else integer("resample", resample, low=1)
    return j, r


@torch.no_grad()
def inpaint(
    model_fn: ModelFn,
    x_known: torch.Tensor,
    mask: torch.Tensor,
    schedule: Schedule,
    *,
    method: str = "repaint",
    steps: int | None = None,
    jump_length: int | None = None,
    resample: int | None = None,
    eta: float = 1.0,
    generator: Generator = None,
    spacing: str = "leading",
    timesteps: Sequence[int] | None = None,
    clip_x0=None,
    progress: bool = False,
    callback: Callback = None,
) -> torch.Tensor:
    """Fill in x_known [N, ...] where ``mask`` is 0 (1 = known; bool or 0/1, broadcasting against
    x_known, see :func:`~ddkit.edit.masks.check_mask`) → x [N, ...] whose known values equal
    x_known's exactly.

    ``method``: "repaint" (default; ``jump_length`` 10 and ``resample`` 10 by default, RePaint's) or
    "replace" (no jumps; takes neither option). ``steps``: grid points (default 250, RePaint's, or
    T if smaller; T is DDPM's own schedule) of ``spacing``, or explicit ``timesteps``; ``eta``: the
    DDIM η of each denoising step (1: DDPM's ancestral step, RePaint's). Start noise, replacement
    noise and re-noising come from ``generator`` (per-sample generators: per-sample randomness).
    ``callback(info)`` gets each model evaluation's StepInfo (``i`` counts evaluations).
    """
    j, r = _check_method_options(method, jump_length, resample)
    check_sample_args(x_known, clip_x0, callback)
    m = check_mask(mask, x_known.shape).to(x_known.device)
    eta = number("eta", eta, low=0.0, high=1.0)
    if timesteps is None:
        steps = min(DEFAULT_STEPS, schedule.num_timesteps) if steps is None else steps
        grid = sampling_grid(schedule, steps, spacing)
    else:
        if steps is not None:
            raise ParameterError("give `steps` or `timesteps`, not both")
        grid = sampling_grid(schedule, timesteps=timesteps)
    n = len(grid)
    walk = repaint_walk(n, j, r)
    x = noise_like(x_known, generator)
    evals = 0
    for a, b in steps_iter(list(zip(walk[:-1], walk[1:])), progress, method):
        ab = grid.alpha_bars[a]
        if b < a:  # jump back: x_b ~ q(x_b | x_a)
            ratio = grid.alpha_bars[b] / ab
            x = math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * noise_like(x, generator)
            continue
        noise = noise_like(x, generator)
        x = torch.where(m, math.sqrt(ab) * x_known + math.sqrt(1.0 - ab) * noise, x)  # q_sample of the known values
        eps = call_model(model_fn, x, grid.t[a])
        ab_next = grid.alpha_bar_after(a)
        if callback is not None:
            callback(step_info(evals, grid.t[a], ab, x, clip_eps(x, eps, ab, clip_x0)[0]))
        x = ddim_step(x, eps, ab, ab_next, sigma=ddim_sigma(ab, ab_next, eta), clip_x0=clip_x0, generator=generator)
        evals += 1
    return torch.where(m, x_known, x)
