"""UniPC: multistep unified predictor (UniP) and corrector (UniC) with data prediction (Zhao et al.
2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models").

Notation (on the discrete schedule, float64; as in dpm_solver.py):

    α_t = √ᾱ_t,  σ_t = √(1-ᾱ_t),  λ_t = log(α_t/σ_t)           (half the log-SNR; increases as t falls)
    x̂₀_s = (x_s - σ_s·ε_θ(x_s, s)) / α_s                        (data prediction; DDIM eq. 9)
    s = s₀ > s₁ > s₂                                             (the current point and the earlier ones)
    h = λ_t - λ_s,   r_k = (λ_{s_k} - λ_s)/h  (< 0),   D_k = (x̂₀_{s_k} - x̂₀_s)/r_k
    B(h): "bh1" B(h) = -h,  "bh2" B(h) = e^{-h} - 1              (the paper's B₁(z) = z, B₂(z) = e^z - 1
                                                                  at z = -h, the data-prediction form)
    φ_k:  φ_1(z) = (e^z - 1)/z,  φ_{k+1}(z) = (φ_k(z) - 1/k!)/z
    g_k = k!·(-h)·φ_{k+1}(-h) / B(h)                             (g_k → 1/(k+1) as h → 0)

One update shape serves both halves (the paper's "unified analytical form"): from x_s,

    x_t = (σ_t/σ_s)·x_s - α_t·(e^{-h} - 1)·x̂₀_s - α_t·B(h)·Σ_k ρ_k·D_k

which with no D terms is the DDIM / DPM-Solver++ first-order step.

    UniP-p (predictor, p = 1, 2, 3): D_1 … D_{p-1} from the p-1 earlier predictions; ρ solves
        Σ_k r_k^{m-1}·ρ_k = g_m  for m = 1 … p-1            (p = 2: ρ = [½], diffusers' shortcut)
    UniC-p (corrector, after the model call at the predicted x̃_t): r_p = 1 and
        D_p = x̂₀_t - x̂₀_s with x̂₀_t = x̂₀(x̃_t, t); ρ solves the same system for m = 1 … p
                                                              (p = 1: ρ = [½])

UniC-p raises the order of UniP-p by one (the paper's Theorem 3.1) at no extra model evaluation:
x̂₀_t, evaluated at the uncorrected x̃_t, is both the corrector's new point and the newest history
entry of the next predictor step, which starts from the corrected x_t. The coefficients ρ and the
½ shortcuts are those of diffusers' ``UniPCMultistepScheduler`` (``predict_x0=True``,
``multistep_uni_p_bh_update`` and ``multistep_uni_c_bh_update``), so the samples agree with it.
With B = "bh2" and no corrector, UniP-2 is DPM-Solver++(2M): ρ = ½ turns the update into
:func:`ddkit.samplers.dpm_solver_step`'s Algorithm 2.

The end point and the grid are DPM-Solver++'s (``sampling_grid(..., solver=True)``): ``steps``
model evaluations, then a last step to σ = 0 (λ = ∞) that is always first order and returns the
last x̂₀. So no corrector follows the final step (it would cost an evaluation at σ = 0), and the
corrector at the last evaluated point is skipped too: the step to σ = 0 does not read x there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..parameterization import ModelFn
from ..schedule import Schedule
from .common import Sampling, alpha_sigma_lambda, check_order, solver_order

VARIANTS = ("bh1", "bh2")


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def unipc_coefficients(rs: Sequence[float], h: float, variant: str) -> tuple[float, list[float]]:
    """(B(h), ρ) for a UniPC update with step h = λ_t - λ_s > 0 and ratios ``rs`` = r_1 … r_n
    (the corrector's last one is r = 1): ρ solves the Vandermonde system Σ_k r_k^{m-1}·ρ_k = g_m,
    m = 1 … n (see the module notation). n = 1 gives ρ = [½] (the shortcut of diffusers and the
    reference code for UniP-2 and UniC-1, equal to g_1 to first order in h); n = 0 gives ρ = []."""
    _check_variant(variant)
    z = -h
    b = z if variant == "bh1" else math.expm1(z)
    if len(rs) <= 1:
        return b, [0.5] * len(rs)
    g, z_phi, factorial = [], math.expm1(z) / z - 1.0, 1  # z·φ_2(z)
    for m in range(1, len(rs) + 1):
        g.append(z_phi * factorial / b)  # g_m = m!·z·φ_{m+1}(z)/B
        factorial *= m + 1
        z_phi = z_phi / z - 1.0 / factorial  # z·φ_{m+2}(z)
    R = torch.tensor([[r ** (m - 1) for r in rs] for m in range(1, len(rs) + 1)], dtype=torch.float64)
    return b, torch.linalg.solve(R, torch.tensor(g, dtype=torch.float64)).tolist()


def unipc_predictor_step(
    x: torch.Tensor,
    x0s: Sequence[torch.Tensor],
    lambdas: Sequence[float],
    sigma_s: float,
    alpha_t: float,
    sigma_t: float,
    lambda_t: float,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniP-p, one multistep step x_s → x̃_t of order p = ``len(x0s)`` (1, 2 or 3).

    x: [N, ...] at s; ``x0s``: the data predictions at s, s₁, s₂ (newest first), [N, ...] each;
    ``lambdas``: their λ (newest first); σ_s and the target's α_t, σ_t, λ_t. λ_t = ∞ (σ_t = 0)
    takes the first-order step, whose exact value is x̂₀_s. The update (the module's unified form):
    x_t = (σ_t/σ_s)·x_s - α_t·(e^{-h}-1)·x̂₀_s - α_t·B(h)·Σ_k ρ_k·D_k with r_k = (λ_{s_k} - λ_s)/h and
    D_k = (x̂₀_{s_k} - x̂₀_s)/r_k for the earlier points k ≥ 1."""
    if not math.isfinite(lambda_t):
        return x0s[0].clone()
    h = lambda_t - lambdas[0]
    rs = [(lam - lambdas[0]) / h for lam in lambdas[1:]]
    b, rhos = unipc_coefficients(rs, h, variant)
    x_next = (sigma_t / sigma_s) * x - (alpha_t * math.expm1(-h)) * x0s[0]
    for rho, x0_k, r in zip(rhos, x0s[1:], rs):
        x_next = x_next - (alpha_t * b * rho) * ((x0_k - x0s[0]) / r)
    return x_next


def unipc_corrector_step(
    x: torch.Tensor,
    x0s: Sequence[torch.Tensor],
    lambdas: Sequence[float],
    x0_t: torch.Tensor,
    sigma_s: float,
    alpha_t: float,
    sigma_t: float,
    lambda_t: float,
    variant: str = "bh2",
) -> torch.Tensor:
    """UniC-p: the corrected x_t from the same start x_s [N, ...] as the predictor step that gave
    x̃_t, of order p = ``len(x0s)`` (the predictor's order), with the data prediction ``x0_t``
    [N, ...] the model gave at x̃_t. Arguments otherwise as :func:`unipc_predictor_step`;
    λ_t must be finite (there is no model evaluation at σ = 0 to correct with). UniC is UniP's update
    with x̂₀_t as one more point, at λ_t: there r = (λ_t - λ_s)/h = 1 and D = x̂₀_t - x̂₀_s."""
    if not math.isfinite(lambda_t):
        raise ValueError("the corrector needs a finite λ_t (σ_t > 0); the step to σ = 0 has no corrector")
    return unipc_predictor_step(x, [*x0s, x0_t], [*lambdas, lambda_t], sigma_s, alpha_t, sigma_t, lambda_t, variant)


@torch.no_grad()
def unipc_sample(
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    steps: int = 10,
    order: int = 2,
    spacing: str = "leading",
    variant: str = "bh2",
    lower_order_final: bool = True,
    corrector: bool = True,
    **common,
) -> torch.Tensor:
    """UniPC (multistep UniP-p + UniC, data prediction) from x_T [N, ...] → x_0 [N, ...] in
    ``steps`` model evaluations; deterministic (``generator`` is accepted for the common signature).

    ``order``: p = 1, 2 (default, as diffusers) or 3. ``variant``: "bh2" (B(h) = e^{-h} - 1, the
    default, as diffusers) or "bh1" (B(h) = -h). ``corrector=False`` runs UniP alone (then order 1
    is DDIM η = 0, and order 2 with "bh2" is DPM-Solver++(2M)). ``spacing`` and an explicit grid as
    :func:`dpm_solver_sample` (the same evaluation timesteps); ``common``: the keywords every
    sampler takes (:mod:`ddkit.samplers.common`). The callback sees x after the corrector.
    """
    check_order(order)
    _check_variant(variant)
    run = Sampling("UniPC", model_fn, x_T, schedule, steps, spacing, solver=True, **common)
    x, seq, x0s, lambdas = x_T, run.grid.t, [], []
    last = None  # (x_s, σ_s, p) of the predictor step that led to the current point
    for i in run:
        ab = run.grid.alpha_bars[i]
        alpha_s, sigma_s, lambda_s = alpha_sigma_lambda(ab)
        x0 = run.denoise(x, i, seq[i], ab, report=False)[0]  # at the predicted x̃
        if corrector and last is not None and i < len(seq) - 1:
            x_prev, sigma_prev, p = last  # UniC-p at t = seq[i]
            x = unipc_corrector_step(x_prev, x0s[:p], lambdas[:p], x0, sigma_prev, alpha_s, sigma_s, lambda_s, variant)
        run.report(i, seq[i], ab, x, x0)
        x0s, lambdas = [x0] + x0s[:2], [lambda_s] + lambdas[:2]
        # diffusers' UniPC rule caps the order at the steps left, for every number of steps (unlike
        # DPM-Solver++'s, it does not stop at 15): with order ≤ 3 that is ≤ 2 at the second-to-last step
        p = solver_order(i, len(seq), order, lower_order_final)
        last = (x, sigma_s, p)
        alpha_t, sigma_t, lambda_t = alpha_sigma_lambda(run.grid.alpha_bar_after(i))
        x = unipc_predictor_step(x, x0s[:p], lambdas[:p], sigma_s, alpha_t, sigma_t, lambda_t, variant)
    return x
