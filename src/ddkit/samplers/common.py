"""What every sampler shares, so that a sampler module holds only its update rule and its options:
:class:`Sampling` checks the common arguments and resolves the grid once
(:func:`ddkit.timesteps.sampling_grid`), and its step helper :meth:`Sampling.denoise` turns the
model's ε into x̂₀, clips it, applies ``denoised_fn`` and reports to the ``callback``.

The common keywords every sampler takes (:data:`COMMON`): ``generator`` (a ``torch.Generator``,
:class:`ddkit.rng.SampleGenerators` or None; unused by the deterministic samplers), ``progress``
(a tqdm bar), ``clip_x0`` (None or (low, high): x̂₀ is clamped), ``timesteps`` or ``sigmas`` (an
explicit decreasing grid), ``start_t`` (the spacing starts there; x_T is then x at that
timestep), ``callback(info)`` (each step's :class:`StepInfo`) and ``denoised_fn(x0, info) -> x0``
(changes each x̂₀ after clipping, before the step uses it)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..parameterization import ModelFn, eps_from_x0, timestep_dtype, x0_from_eps
from ..rng import Generator, randn
from ..timesteps import sampling_grid

COMMON = ("generator", "progress", "clip_x0", "timesteps", "sigmas", "start_t", "callback", "denoised_fn")


class StepInfo(dict):
    """What a sampler reports to ``callback`` after evaluating the model at step ``i``: a dict (as
    k-diffusion's ``callback({'x', 'i', 'sigma', 'denoised'})``) whose keys are also attributes.

    i: the step index (0 first); t: the model timestep (int, or float on a σ-grid); sigma: σ_t =
    √((1-ᾱ_t)/ᾱ_t); alpha_bar: ᾱ_t; x_t: the sample at t [N, ...]; x0: the prediction x̂₀ [N, ...]
    (after clipping). ``x`` and ``denoised`` are k-diffusion's names for x_t and x0."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


Callback = Callable[[StepInfo], None] | None
# x̂₀ [N, ...] and the step's StepInfo -> the x̂₀ [N, ...] the step uses
DenoisedFn = Callable[[torch.Tensor, StepInfo], torch.Tensor] | None


def step_info(i: int, t, alpha_bar: float, x_t: torch.Tensor, x0: torch.Tensor) -> StepInfo:
    """The :class:`StepInfo` of step i."""
    sigma = math.sqrt((1.0 - alpha_bar) / alpha_bar) if alpha_bar > 0 else math.inf
    return StepInfo(i=i, t=t, sigma=sigma, alpha_bar=alpha_bar, x_t=x_t, x0=x0, x=x_t, denoised=x0)


def check_sample_args(x: torch.Tensor, clip_x0, callback: Callback = None, denoised_fn: DenoisedFn = None) -> None:
    """x: a floating tensor [N, ...] with N ≥ 1; clip_x0: None or a (low, high) pair with low < high;
    callback, denoised_fn: None or callable."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("the starting tensor must be a floating-point torch.Tensor [N, ...]")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"the starting tensor must have shape [N, ...] with N >= 1, got {list(x.shape)}")
    if clip_x0 is not None and (len(clip_x0) != 2 or not float(clip_x0[0]) < float(clip_x0[1])):
        raise ValueError(f"clip_x0 must be None or a (low, high) pair with low < high, got {clip_x0!r}")
    for name, fn in (("callback", callback), ("denoised_fn", denoised_fn)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable, got {type(fn).__name__}")


def call_model(model_fn: ModelFn, x: torch.Tensor, t) -> torch.Tensor:
    """ε̂ = model_fn(x, t) for one shared timestep ``t`` of the grid: an int gives a LongTensor [N],
    a fractional timestep of a σ-grid a float tensor [N] (float64 for a float64 x, else float32).
    Checks the output's shape."""
    if isinstance(t, int):
        t_batch = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    else:
        t_batch = torch.full((x.shape[0],), float(t), dtype=timestep_dtype(x), device=x.device)
    eps = model_fn(x, t_batch)
    if eps.shape != x.shape:
        raise ValueError(f"model_fn returned shape {list(eps.shape)}, expected the input's {list(x.shape)}")
    return eps.to(x.dtype)


class Sampling:
    """One sampling run's shared pieces, made once before the loop: the checked arguments, the
    ``grid`` (:class:`~ddkit.timesteps.Grid` of ``steps``/``spacing``, or ``timesteps``/``sigmas``,
    from ``start_t``; ``solver``: the multistep solvers' grid) and the step helper
    :meth:`denoise`. Iterating it gives the step indices (with a progress bar named ``desc``)."""

    def __init__(
        self, desc: str, model_fn: ModelFn, x_T: torch.Tensor, schedule, steps, spacing, *, solver=False, **common
    ):
        unknown = sorted(set(common) - set(COMMON))
        if unknown:
            raise TypeError(f"unexpected sampler keyword(s) {', '.join(unknown)}; the common ones: {', '.join(COMMON)}")
        c = dict.fromkeys(COMMON) | common
        check_sample_args(x_T, c["clip_x0"], c["callback"], c["denoised_fn"])
        grid_of = {"timesteps": c["timesteps"], "sigmas": c["sigmas"], "start_t": c["start_t"], "solver": solver}
        self.grid = sampling_grid(schedule, steps, spacing, **grid_of)
        self.desc, self.model_fn, self.generator, self.progress = desc, model_fn, c["generator"], c["progress"]
        self.clip_x0, self.callback, self.denoised_fn = c["clip_x0"], c["callback"], c["denoised_fn"]

    def __iter__(self):
        return iter(steps_iter(range(len(self.grid)), self.progress, self.desc))

    def report(self, i: int, t, alpha_bar: float, x_t: torch.Tensor, x0: torch.Tensor) -> None:
        """Call the ``callback`` (if any) with the :class:`StepInfo` of step i."""
        if self.callback is not None:
            self.callback(step_info(i, t, alpha_bar, x_t, x0))

    def denoise(self, x: torch.Tensor, i: int, t, alpha_bar: float, *, sigma=None, report: bool = True):
        """The step helper: ε̂ = model_fn(x_t, t) at step i, x̂₀ = (x_t − √(1−ᾱ)·ε̂)/√ᾱ (DDIM eq. 9),
        clamped to ``clip_x0``, changed by ``denoised_fn`` and (``report``) reported to the callback.
        ``denoised_fn(x0, info)`` is guided-diffusion's hook with the step's :class:`StepInfo`: a
        projection or correction of x̂₀ (DDNM's range–null-space projection, DPS's gradient step).
        Returns (x̂₀, ε) [N, ...] each, ε re-derived from x̂₀ where clipping or ``denoised_fn`` changed
        it. With ``sigma``, x is EDM's x̃ = x_t/√ᾱ at that σ: then x̂₀ = D = x̃ − σ·ε̂ and the returned
        ε is d = (x̃ − D)/σ."""
        x_t = x if sigma is None else x * math.sqrt(alpha_bar)
        eps = call_model(self.model_fn, x_t, t)
        x0 = x0_from_eps(x_t, eps, alpha_bar) if sigma is None else x - sigma * eps
        if self.clip_x0 is not None:
            x0 = x0.clamp(self.clip_x0[0], self.clip_x0[1])
        if self.denoised_fn is not None:  # checked: a tensor of x̂₀'s shape, in its dtype
            out = self.denoised_fn(x0, step_info(i, t, alpha_bar, x_t, x0))
            if not isinstance(out, torch.Tensor) or out.shape != x0.shape:
                got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"denoised_fn must return a tensor of x̂₀'s shape {list(x0.shape)}, got {got}")
            x0 = out.to(x0.dtype)
        if self.clip_x0 is not None or self.denoised_fn is not None:
            eps = eps_from_x0(x_t, x0, alpha_bar) if sigma is None else (x - x0) / sigma
        if report:
            self.report(i, t, alpha_bar, x_t, x0)
        return x0, eps


def alpha_sigma_lambda(alpha_bar: float) -> tuple[float, float, float]:
    """(α, σ, λ) = (√ᾱ, √(1-ᾱ), log(α/σ)) in float64 for the solvers that step in λ (DPM-Solver++,
    UniPC); ᾱ = 1 is the end point σ = 0 (λ = +∞)."""
    if alpha_bar >= 1.0:
        return 1.0, 0.0, math.inf
    return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar), 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


ORDERS = (1, 2, 3)


def check_order(order: int) -> None:
    """A multistep solver's order must be 1, 2 or 3 (a ValueError naming them otherwise)."""
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(map(str, ORDERS))}, got {order!r}")


def solver_order(i: int, num: int, order: int, lower_final: bool) -> int:
    """The order of a multistep solver's step i of ``num`` (DPM-Solver++, UniPC): a warm-up from 1
    (only i earlier predictions exist), at most 2 at the second-to-last step with ``lower_final``, and
    1 at the last step, to σ = 0."""
    o = min(order, i + 1)
    if lower_final and i == num - 2:
        o = min(o, 2)
    return 1 if i == num - 1 else o


def steps_iter(seq, progress: bool, desc: str):
    """Iterate ``seq`` with a tqdm bar when ``progress`` is true."""
    return tqdm(seq, desc=desc, leave=False, dynamic_ncols=True) if progress else seq


def noise_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise with x's shape, dtype and device, drawn from ``generator`` (a
    ``torch.Generator``, :class:`ddkit.rng.SampleGenerators` for noise per sample, or None)."""
    return randn(x.shape, generator, dtype=x.dtype, device=x.device)
