"""The KL upper bound of Align Your Steps (Sabour et al. 2024, eq. 10, Algorithms 1-2): a cost of a
σ-grid measured on the law of the samples, not on their squared error to a teacher.

Notation (as :mod:`ddkit.timesteps`; VP schedule, float64 where it matters):

    σ = √((1-ᾱ)/ᾱ)                  noise level;  x̃ = x/√ᾱ = x₀ + σ·ε
    D(x̃, σ) = x̃ − σ·ε_θ(√ᾱ·x̃, t(σ))  the denoiser's x̂₀ (t(σ): :func:`ddkit.timesteps.t_from_sigma`)
    σ_min = s_0 < s_1 < … < s_n = σ_max   a grid (ascending here; samplers walk it from σ_max down)

For a grid, the bound is a sum over its intervals (eq. 10):

    KLUB = Σ_i ∫_{s_{i-1}}^{s_i} σ⁻³ · E‖D(x̃_σ, σ) − D(x̃_{s_i}, s_i)‖² dσ,
    x̃_σ = x₀ + σ·ε₁,   x̃_{s_i} = x̃_σ + √(s_i² − σ²)·ε₂,   x₀ from the training data

(up to a constant factor that no choice of grid changes). It ends at σ_min, not at 0, where it is
infinite; the last evaluation's x̂₀ is the sample.

**Estimator** (no importance sampling): on a fine ascending grid σ_0 < … < σ_{M-1}, each training
point x₀ gets one path x̃_{σ_k} = x₀ + W(σ_k²) of a Brownian motion W in the variance, drawn by
independent increments √(σ_k² − σ_{k-1}²)·z_k. Every pair (x̃_{σ_k}, x̃_{σ_b}), k < b, on a path has
exactly the joint law above, so one denoiser call per (x₀, k) serves every interval. With
g_b(σ_k) = mean over x₀ of ‖D_k − D_b‖² (summed over the dimensions), the integral of an interval
[σ_a, σ_b] is the trapezoidal rule in u = log σ (dσ = σ·du) of σ⁻²·g_b(σ) over the fine points
σ_a … σ_b (g_b(σ_b) = 0). Its error is the quadrature's (second order in the fine spacing of log σ)
plus Monte Carlo noise: :func:`klub_interval` returns the standard error over the paths.

The cost then splits over intervals, so the grid with n points from σ_min to σ_max that
minimises it over the fine points is found exactly by dynamic programming
(:func:`least_cost_path`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .checks import integer
from .parameterization import timestep_dtype
from .timesteps import t_from_sigma


def denoiser(model_fn, schedule):
    """D(x̃, σ) = x̃ − σ·ε_θ(√ᾱ·x̃, t(σ)) with ᾱ = 1/(1+σ²) and t(σ) the (fractional) model timestep of
    σ: a function ``(x̃ [N, ...], σ float) -> x̂₀ [N, ...]`` from a ``model_fn(x_t, t) -> ε``."""

    def D(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = float(t_from_sigma(schedule, [sigma])[0])
        t_batch = torch.full((x.shape[0],), t, dtype=timestep_dtype(x), device=x.device)
        eps = model_fn(x * (1.0 / math.sqrt(1.0 + sigma * sigma)), t_batch)
        return x - sigma * eps.to(x.dtype)

    return D


def _check_sigmas(sigmas) -> np.ndarray:
    s = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if s.size < 2 or not (np.all(np.isfinite(s)) and s[0] > 0 and np.all(np.diff(s) > 0)):
        raise ValueError("sigmas must be an increasing sequence of at least 2 positive finite noise levels")
    return s


@torch.no_grad()
def path_denoised(D, x0: torch.Tensor, sigmas, *, generator: torch.Generator | None = None, batch_size: int = 256):
    """D(x̃_{σ_k}, σ_k) along one Brownian path per training point (the module's estimator):
    x0 [N, ...], ``sigmas`` increasing [M] → float32 tensor [M, N, ...] (on x0's device)."""
    s = _check_sigmas(sigmas)
    integer("batch_size", batch_size, low=1)
    out = torch.empty((len(s),) + tuple(x0.shape), dtype=torch.float32, device=x0.device)
    for start in range(0, x0.shape[0], batch_size):
        x = x0[start : start + batch_size].double()
        prev = 0.0
        for k, sigma in enumerate(s):
            z = torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.device)
            x = x + math.sqrt(sigma * sigma - prev * prev) * z
            prev = sigma
            out[k, start : start + batch_size] = D(x.to(x0.dtype), float(sigma)).float()
    return out


def _log_trapezoid_weights(s: np.ndarray) -> np.ndarray:
    """w_k with Σ_k w_k·f(σ_k) ≈ ∫ f dσ = ∫ f·σ du over [s_0, s_{-1}], u = log σ (trapezoid in u)."""
    du = np.diff(np.log(s))
    w = np.zeros_like(s)
    w[:-1] += du / 2
    w[1:] += du / 2
    return w * s


def klub_interval(
    D, x0: torch.Tensor, sigmas, *, generator: torch.Generator | None = None, batch_size: int = 256
) -> tuple[float, float]:
    """One interval's term ∫_{σ_0}^{σ_{-1}} σ⁻³·E‖D(x̃_σ, σ) − D(x̃_{σ_{-1}}, σ_{-1})‖² dσ, by the
    module's estimator with the increasing quadrature points ``sigmas``, over the training points
    x0 [N, ...]: (estimate, its standard error over the N paths)."""
    s = _check_sigmas(sigmas)
    d = path_denoised(D, x0, s, generator=generator, batch_size=batch_size).double()
    sq = (d - d[-1]).flatten(2).pow(2).sum(-1)  # [M, N]
    w = torch.from_numpy(_log_trapezoid_weights(s) / s**3).to(sq)  # σ⁻³ dσ
    per_path = (w[:, None] * sq).sum(0)
    n = per_path.numel()
    se = float(per_path.std() / math.sqrt(n)) if n > 1 else math.nan
    return float(per_path.mean()), se


def klub_costs(
    D, x0: torch.Tensor, sigmas, *, generator: torch.Generator | None = None, batch_size: int = 256
) -> np.ndarray:
    """C[a, b] (a < b) = the bound's term of the interval [σ_a, σ_b] of the increasing fine grid
    ``sigmas`` [M], estimated on the training points x0 [N, ...] (module docstring); inf elsewhere.
    float64 [M, M]."""
    s = _check_sigmas(sigmas)
    d = path_denoised(D, x0, s, generator=generator, batch_size=batch_size)
    M = len(s)
    flat = d.reshape(M, d.shape[1], -1)
    cost = np.full((M, M), np.inf)
    log_s = np.log(s)
    for b in range(1, M):
        g = (flat[: b + 1].double() - flat[b].double()).pow(2).sum(-1).mean(-1).numpy()  # g_b(σ_k), k ≤ b
        f = g / s[: b + 1] ** 2  # σ⁻³ dσ = σ⁻² du
        # trapezoid in u from a to b, for every a < b at once: cumulative sums from the right
        seg = 0.5 * (f[:-1] + f[1:]) * np.diff(log_s[: b + 1])  # [b]
        cost[:b, b] = np.cumsum(seg[::-1])[::-1]
    return cost


def least_cost_path(cost: np.ndarray, n: int, end: int | None = None) -> list[int]:
    """The n indices 0 = i_0 < i_1 < … < i_{n-1} = ``end`` (default M-1) of a fine grid that minimise
    Σ_j cost[i_{j-1}, i_j] (``cost`` [M, M], used above the diagonal): exact dynamic programming."""
    cost = np.asarray(cost, dtype=np.float64)
    M = cost.shape[0]
    if cost.ndim != 2 or cost.shape[1] != M or M < 2:
        raise ValueError(f"cost must be a square [M, M] array with M >= 2, got shape {list(cost.shape)}")
    end = M - 1 if end is None else integer("end", end, low=1, high=M - 1)
    integer("n", n, low=2, high=end + 1)
    M = end + 1
    # best[k, j]: least cost of a path of k+1 points from 0 to j
    best = np.full((n, M), np.inf)
    back = np.zeros((n, M), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, n):
        for j in range(k, M):
            totals = best[k - 1, :j] + cost[:j, j]
            back[k, j] = int(np.argmin(totals))
            best[k, j] = totals[back[k, j]]
    path = [M - 1]
    for k in range(n - 1, 0, -1):
        path.append(int(back[k, path[-1]]))
    return path[::-1]


def path_cost(cost: np.ndarray, path) -> float:
    """Σ_j cost[i_{j-1}, i_j] of a path of fine-grid indices."""
    return float(sum(cost[a, b] for a, b in zip(path, path[1:])))


def interpolate_theta(a, b, weight: float, c: float) -> np.ndarray:
    """The grid between two grids of equal length: θ = atan(σ/c) interpolated, (1 − weight)·θ_a +
    weight·θ_b, pointwise (monotone grids stay monotone, the shared ends stay put)."""
    ta, tb = np.arctan(np.asarray(a, dtype=np.float64) / c), np.arctan(np.asarray(b, dtype=np.float64) / c)
    return c * np.tan((1 - weight) * ta + weight * tb)
