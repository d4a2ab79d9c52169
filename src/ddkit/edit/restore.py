"""Linear inverse problems with an unconditional model: find x₀ with y = A(x₀) (+ noise).

Both methods are DDIM sampling (:func:`~ddkit.samplers.ddim_sample`) whose data prediction x̂₀ is
corrected at every step through the sampler's ``denoised_fn`` hook:

    ddnm (Wang et al. 2023, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space
          Model", eq. 8, with the DDIM step of their code):
          x̂₀' = A⁺y + (I - A⁺A)·x̂₀,   x_{i-1} = √ᾱ_{i-1}·x̂₀' + √(1-ᾱ_{i-1}-σ²)·ε_θ(x_i) + σ·z
        the range of Aᵀ from the measurement, the null space from the model, and the network's own
        ε (the paper's Algorithm 1 samples q(x_{i-1} | x_i, x̂₀'), which re-derives ε from x̂₀' and
        was worse on the digits: docs/editing.md); the last step returns the projected x̂₀, so the
        output satisfies A·x = y (to rounding) for an exact pseudo-inverse.
    dps  (Chung et al. 2023, "Diffusion Posterior Sampling for General Noisy Inverse Problems",
          Algorithm 1, with the step size ζ_i = ζ'/‖y - A(x̂₀)‖ of their experiments):
          x_{i-1} = (the step from x_i and x̂₀(x_i)) - ζ'·∇_{x_i} ‖y - A(x̂₀(x_i))‖
        the gradient through the network (one forward and backward pass per step). Here the step
        moves x̂₀ by -ζ'/k_i·∇, k_i the weight of x̂₀ in the DDIM step (√ᾱ_{i-1}·β_i/(1-ᾱ_i) for
        DDPM), which moves x_{i-1} by exactly -ζ'·∇: with η = 1 on all T steps this is Algorithm 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..checks import ParameterError, choice, number
from ..parameterization import ModelFn, x0_from_eps
from ..rng import Generator, randn
from ..samplers import ddim_sample, ddim_sigma
from ..samplers.common import Callback
from ..schedule import Schedule
from ..timesteps import sampling_grid
from .operators import check_operator, project

RESTORE_METHODS = ("ddnm", "dps")
# method → (steps, η, scale): DDNM's 100 steps with η = 0.85; DPS's 1000 DDPM steps, ζ' = 1
DEFAULTS = {"ddnm": (100, 0.85, None), "dps": (1000, 1.0, 1.0)}


def _x_shape(y: torch.Tensor, operator, shape) -> tuple[int, ...]:
    if shape is not None:
        return tuple(shape)
    if not callable(getattr(operator, "A_pinv", None)):
        raise ParameterError("`shape` is needed: the operator has no A_pinv to tell the shape of x from y")
    return tuple(operator.A_pinv(y).shape)


def _x0_weight(grid, info, eta: float) -> tuple[float, float]:
    """(k, √ᾱ_m): the weight k = √ᾱ_m - √(1-ᾱ_m-σ²)·√(ᾱ_n/(1-ᾱ_n)) of x̂₀ in the DDIM step n → m
    that :func:`ddim_sample` takes after its ``denoised_fn`` (ε re-derived from x̂₀), and the weight
    √ᾱ_m x̂₀ has when the step keeps the network's ε instead."""
    ab, ab_next = info.alpha_bar, grid.alpha_bar_after(info.i)
    sigma = ddim_sigma(ab, ab_next, eta)
    k = math.sqrt(ab_next) - math.sqrt(max(1.0 - ab_next - sigma**2, 0.0)) * math.sqrt(ab / (1.0 - ab))
    return k, math.sqrt(ab_next)


def ddnm_fn(y: torch.Tensor, operator, grid, eta: float):
    """DDNM's ``denoised_fn`` for :func:`ddim_sample` on ``grid`` with η = ``eta``: the projection
    x̂₀' = A⁺y + (I - A⁺A)·x̂₀ (:func:`~ddkit.edit.operators.project`), in a step that keeps the
    network's ε, x_m = √ᾱ_m·x̂₀' + √(1-ᾱ_m-σ²)·ε + σ·z (DDNM's released code). Through the hook,
    which re-derives ε from what it returns, that is x̂₀ + (√ᾱ_m/k)·(x̂₀' - x̂₀); the last step
    (k = √ᾱ_m = 1) returns x̂₀' itself."""

    def fn(x0: torch.Tensor, info) -> torch.Tensor:
        projected = project(operator, x0, y.to(x0.dtype))
        k, a_next = _x0_weight(grid, info, eta)
        return projected if a_next == k else x0 + (a_next / k) * (projected - x0)

    return fn


def dps_fns(model_fn: ModelFn, y: torch.Tensor, operator, schedule: Schedule, grid, eta: float, scale: float):
    """DPS as (model_fn, denoised_fn) for :func:`ddim_sample` on ``grid`` with η = ``eta``: the
    model_fn evaluates ε with gradients on and keeps g = ∇_{x_t}‖y - A(x̂₀(x_t))‖ (per sample) of
    that evaluation; the denoised_fn of the same step moves x̂₀ by -ζ'/k·g (module notation)."""
    kept: dict = {}

    def model_fn_with_grad(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x_in = x_t.detach().requires_grad_(True)
            eps = model_fn(x_in, t)
            x0 = x0_from_eps(x_in, eps, schedule.alpha_bars_at(t, x_in))
            residual = (y.to(x0.dtype) - operator.A(x0)).reshape(x0.shape[0], -1).norm(dim=1)  # [N]
            (grad,) = torch.autograd.grad(residual.sum(), x_in)
        kept.update(x_t=x_t, grad=grad)
        return eps.detach()

    def denoised_fn(x0: torch.Tensor, info) -> torch.Tensor:
        if kept.get("x_t") is not info.x_t:
            raise RuntimeError("dps: the gradient kept is not for this step's x_t")
        k, _ = _x0_weight(grid, info, eta)
        return x0 - (scale / k) * kept.pop("grad").to(x0.dtype)

    return model_fn_with_grad, denoised_fn


def restore(
    model_fn: ModelFn,
    y: torch.Tensor,
    operator,
    schedule: Schedule,
    *,
    method: str = "ddnm",
    steps: int | None = None,
    scale: float | None = None,
    eta: float | None = None,
    shape: Sequence[int] | None = None,
    generator: Generator = None,
    spacing: str = "leading",
    timesteps: Sequence[int] | None = None,
    clip_x0=None,
    progress: bool = False,
    callback: Callback = None,
) -> torch.Tensor:
    """A sample x [N, ...] consistent with the measurement y = A(x₀) [N, ...] of ``operator``
    (:mod:`ddkit.edit.operators`, or any object with ``A`` and, for ddnm, ``A_pinv``).

    ``method``: "ddnm" (default: 100 steps, η = 0.85, DDNM's) or "dps" (default: T steps — 1000
    for DDPM's schedule — η = 1, ``scale`` ζ' = 1; ``scale`` applies to dps only). ``steps`` of
    ``spacing`` or explicit ``timesteps``, as :func:`~ddkit.samplers.ddim_sample`. ``shape``: of x
    (default A⁺y's). Start and step noise from ``generator`` (per-sample generators: per-sample).
    ``clip_x0`` clamps x̂₀ before the correction.
    """
    choice("method", method, RESTORE_METHODS)
    d_steps, d_eta, d_scale = DEFAULTS[method]
    if method == "ddnm" and scale is not None:
        raise ParameterError("`scale` applies to method dps (DDNM's projection has no step size)")
    if not isinstance(y, torch.Tensor) or not y.is_floating_point():
        raise ValueError("y must be a floating-point tensor [N, ...] (the measurement A(x₀))")
    x_shape = _x_shape(y, operator, shape)
    check_operator(operator, x_shape, pinv=method == "ddnm")
    eta = d_eta if eta is None else number("eta", eta, low=0.0, high=1.0)
    if timesteps is None:
        steps = min(d_steps, schedule.num_timesteps) if steps is None else steps
    x_T = randn(x_shape, generator, dtype=y.dtype, device=y.device)
    options = dict(spacing=spacing, timesteps=timesteps, generator=generator, clip_x0=clip_x0, eta=eta)
    options.update(progress=progress, callback=callback, **({} if steps is None else {"steps": steps}))
    grid = sampling_grid(schedule, steps, spacing, timesteps=timesteps)
    if method == "ddnm":
        return ddim_sample(model_fn, x_T, schedule, denoised_fn=ddnm_fn(y, operator, grid, eta), **options)
    scale = d_scale if scale is None else number("scale", scale, low=0.0)
    fn, denoised_fn = dps_fns(model_fn, y, operator, schedule, grid, eta, scale)
    return ddim_sample(fn, x_T, schedule, denoised_fn=denoised_fn, **options)
