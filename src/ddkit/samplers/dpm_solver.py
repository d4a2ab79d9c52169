"""DPM-Solver++ multistep with data prediction (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and
its third-order multistep form).

Notation (on the discrete schedule, float64):

    α_t = √ᾱ_t,  σ_t = √(1-ᾱ_t),  λ_t = log(α_t/σ_t)          (half the log-SNR; increases as t falls)
    x̂₀_i = (x_i - σ_i·ε_θ(x_i, t_i)) / α_i                     (data prediction; DDIM eq. 9)
    h_i = λ_{t_i} - λ_{t_{i-1}},  r_i = h_{i-1}/h_i

A step from s = t_{i-1} to t = t_i solves the diffusion ODE exactly in its linear part and
approximates x̂₀ along λ by a polynomial through the last ``order`` data predictions:

    order 1 (= DDIM η = 0):   x_t = (σ_t/σ_s)·x_s - α_t·(e^{-h} - 1)·D₀
    order 2 (Algorithm 2):    ... with D₀ + ½·D₁,   D₁ = (x̂₀_s - x̂₀_{s'})/r
    order 3:                  x_t = (σ_t/σ_s)·x_s - α_t·(e^{-h}-1)·D₀ + α_t·((e^{-h}-1)/h + 1)·D₁
                                    - α_t·((e^{-h}-1+h)/h² - ½)·D₂

(D₁, D₂ the first and second divided differences; the same formulas as diffusers'
``DPMSolverMultistepScheduler`` with ``algorithm_type="dpmsolver++"``, ``solver_type="midpoint"``.)

The end point: the last step goes to σ = 0, ᾱ = 1 (diffusers' ``final_sigmas_type="zero"``, and
ᾱ after the last step = 1 as in ddkit's DDIM); there h = ∞ and the first-order step returns the
last x̂₀ exactly. So ``steps`` model evaluations take ``steps`` steps, and the evaluation
points are (:func:`ddkit.timesteps.sampling_grid` with ``solver=True``) the first ``steps`` points
of a grid of ``steps + 1`` that ends at t = 0 — the t = 0 point is replaced by σ = 0 rather than
spending an evaluation there — or, for ``"trailing"`` and σ-grids, the ``steps`` points themselves.
For leading, linspace and trailing spacings this is exactly diffusers' own timestep sequence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..parameterization import ModelFn
from ..schedule import Schedule
from .common import Sampling, alpha_sigma_lambda, check_order, solver_order

# with lower_order_final, below this many steps the second-to-last step drops to order ≤ 2 (the
# paper's and diffusers' rule; the last step, to σ = 0, is always first order)
LOWER_ORDER_FINAL_BELOW = 15


def dpm_solver_step(
    x: torch.Tensor,
    x0s: Sequence[torch.Tensor],
    lambdas: Sequence[float],
    sigma_s: float,
    alpha_t: float,
    sigma_t: float,
    lambda_t: float,
) -> torch.Tensor:
    """One multistep DPM-Solver++ step x_s → x_t of order ``len(x0s)`` (1, 2 or 3).

    x: [N, ...] at s; ``x0s``: the data predictions x̂₀ at s, s', s'' (newest first), [N, ...] each;
    ``lambdas``: their λ (newest first); σ_s and the target's α_t, σ_t, λ_t (λ_t = ∞: σ_t = 0)."""
    if not math.isfinite(lambda_t):  # σ_t = 0: the exact solution of the first-order step is x̂₀
        return x0s[0].clone()
    h = lambda_t - lambdas[0]
    phi1 = math.expm1(-h)  # e^{-h} - 1
    if len(x0s) == 1:
        return (sigma_t / sigma_s) * x - alpha_t * phi1 * x0s[0]
    r0 = (lambdas[0] - lambdas[1]) / h
    d1_0 = (x0s[0] - x0s[1]) / r0
    if len(x0s) == 2:  # Algorithm 2: D = (1 + 1/(2r))·x̂₀_s - 1/(2r)·x̂₀_s'
        return (sigma_t / sigma_s) * x - alpha_t * phi1 * (x0s[0] + 0.5 * d1_0)
    r1 = (lambdas[1] - lambdas[2]) / h
    d1_1 = (x0s[1] - x0s[2]) / r1
    d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
    d2 = (d1_0 - d1_1) / (r0 + r1)
    phi2 = phi1 / h + 1.0
    phi3 = (phi1 + h) / h**2 - 0.5
    return (sigma_t / sigma_s) * x - alpha_t * phi1 * x0s[0] + alpha_t * phi2 * d1 - alpha_t * phi3 * d2


@torch.no_grad()
def dpm_solver_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 10,
    order: int = 2,
    spacing: str = "leading",
    lower_order_final: bool = True,
    **common,
) -> torch.Tensor:
    """DPM-Solver++ (multistep, data prediction) from x_T [N, ...] → x_0 [N, ...] in ``steps``
    model evaluations; deterministic (``generator`` is accepted for the common signature).

    Defaults: order 2 and ``spacing="leading"`` (the measurements behind them: the docs'
    "Benchmarks and results"). ``order``: 1 (DDIM), 2 (the paper's Algorithm 2) or 3. ``spacing``: any of
    :data:`ddkit.timesteps.ALL_SPACINGS`; with an explicit decreasing ``timesteps`` or ``sigmas``
    sequence of evaluation points the final step goes from its last entry to σ = 0. ``common``: the
    keywords every sampler takes (:mod:`ddkit.samplers.common`).
    """
    check_order(order)
    run = Sampling("DPM-Solver++", model_fn, x_T, schedule, steps, spacing, solver=True, **common)
    x, grid, x0s, lambdas = x_T, run.grid, [], []
    for i in run:
        alpha_s, sigma_s, lambda_s = alpha_sigma_lambda(grid.alpha_bars[i])
        x0s = [run.denoise(x, i, grid.t[i], grid.alpha_bars[i])[0]] + x0s[:2]
        lambdas = [lambda_s] + lambdas[:2]
        alpha_t, sigma_t, lambda_t = alpha_sigma_lambda(grid.alpha_bar_after(i))
        o = solver_order(i, len(grid), order, lower_order_final and len(grid) < LOWER_ORDER_FINAL_BELOW)
        x = dpm_solver_step(x, x0s[:o], lambdas[:o], sigma_s, alpha_t, sigma_t, lambda_t)
    return x
