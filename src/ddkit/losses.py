"""Training losses.

L_simple (DDPM eq. 14 / seed §1.2): E_{t, x₀, ε} ‖ε - ε_θ(√ᾱ_t·x₀ + √(1-ᾱ_t)·ε, t)‖², with t uniform
over the T steps and ε ~ N(0, I). ``prediction="x0"`` or ``"v"`` trains the network to output x₀ or
v = √ᾱ_t·ε - √(1-ᾱ_t)·x₀ instead (Salimans & Ho 2022), and ``"edm"`` EDM's preconditioned F
(Karras et al. 2022, Table 1: the network sees c_in·x̃ and c_noise; :mod:`ddkit.parameterization`):
the same unweighted mean squared error on that target.

Loss weights λ(σ) are stated on the x̂₀ error and converted to each target's
(``Target.error_ratio``): ``weighting="min-snr"`` is λ = min(SNR_t, γ) (Hang et al. 2023; for ε
that is min(SNR, γ)/SNR: steps with little noise count less, the rest keep weight 1), ``"edm"`` is
EDM's λ = 1/c_out² = SNR + 1/σ_d², which gives EDM's F unit weight at every σ (EDM §5).

``t_probs`` sets the training distribution of t (uniform over the T steps when None):
:func:`timestep_probs` carries EDM's log-normal density of σ, ln σ ~ N(P_mean, P_std²), onto the
discrete t. It is a function of (model_fn, schedule, batch) so that targets and weightings can change
without touching the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .checks import choice, integer
from .forward import q_posterior, q_sample
from .parameterization import ModelFn, get_target, network_input, prediction_target, x0_from_eps
from .schedule import Schedule

REDUCTIONS = ("mean", "none")
WEIGHTINGS = ("uniform", "min-snr", "edm")
NOISE_LEVELS = ("uniform", "lognormal")
P_MEAN, P_STD = -1.2, 1.2  # EDM's log-normal noise levels (Karras et al. 2022, Table 1)


def lognormal_timestep_probs(schedule: Schedule, p_mean: float = P_MEAN, p_std: float = P_STD) -> torch.Tensor:
    """EDM's training noise levels, ln σ ~ N(p_mean, p_std²), carried onto the T discrete timesteps:
    float64 [T] with p_t = the probability of t's σ-bin. σ_t = √((1-ᾱ_t)/ᾱ_t) grows with t; the bins
    meet halfway between neighbours in ln σ (each σ drawn goes to the nearest σ_t in log scale), and
    the first and last bins reach to σ = 0 and σ = ∞."""
    if not (math.isfinite(p_std) and p_std > 0 and math.isfinite(p_mean)):
        raise ValueError(f"p_std must be a positive number and p_mean finite, got p_mean={p_mean}, p_std={p_std}")
    log_sigma = schedule.sigmas.log()  # [T], +inf where ᾱ = 0
    edges = (log_sigma[1:] + log_sigma[:-1]) / 2  # [T-1]
    cdf = torch.special.ndtr((edges - p_mean) / p_std)
    cdf = torch.cat([cdf.new_zeros(1), cdf, cdf.new_ones(1)])
    return (cdf[1:] - cdf[:-1]).clamp(min=0.0)


def timestep_probs(
    schedule: Schedule, noise_levels: str = "uniform", p_mean: float = P_MEAN, p_std: float = P_STD
) -> torch.Tensor | None:
    """The training distribution of t for ``noise_levels``: None for uniform (``torch.randint``),
    :func:`lognormal_timestep_probs` for lognormal."""
    choice("noise_levels", noise_levels, NOISE_LEVELS)
    return None if noise_levels == "uniform" else lognormal_timestep_probs(schedule, p_mean, p_std)


def draw_timesteps(
    n: int, num_timesteps: int, generator: torch.Generator | None, device, t_probs: torch.Tensor | None = None
) -> torch.Tensor:
    """n training timesteps (LongTensor [n] on ``device``): uniform over 0..T-1, or drawn from the
    probabilities ``t_probs`` [T] by inverting their cumulative sum with uniforms from ``generator``."""
    if t_probs is None:
        return torch.randint(0, num_timesteps, (n,), generator=generator, device=device)
    if t_probs.shape != (num_timesteps,):
        raise ValueError(
            f"t_probs must have shape [{num_timesteps}] (one probability per timestep), got {list(t_probs.shape)}"
        )
    cdf = t_probs.to(device=device, dtype=torch.float64).cumsum(0)
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64) * cdf[-1]
    return torch.searchsorted(cdf, u, right=True).clamp(max=num_timesteps - 1)


def diffusion_loss(
    net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    schedule: Schedule,
    x0: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    reduction: str = "mean",
    weighting: str = "uniform",
    snr_gamma: float = 5.0,
    prediction: str = "eps",
    t_probs: torch.Tensor | None = None,
    sigma_data: float | None = None,
) -> torch.Tensor:
    """L_simple: mean squared error between the drawn noise ε and the raw network's output
    ``net(x_t, t)`` (or, with ``prediction`` "x0" | "v" | "edm", between that target and the
    output; "edm" feeds the network (c_in·x̃, c_noise) and needs ``sigma_data``). ``net`` is what
    the network outputs, not an ε ``model_fn`` (which :func:`ddkit.parameterization.model_fn_from`
    makes of it); bind labels with a lambda.

    x0: [N, ...]. ``t`` (LongTensor [N]) and ``noise`` ([N, ...]) are drawn with ``generator``
    (t uniform over 0..T-1, or from ``t_probs`` [T], e.g. :func:`timestep_probs`; standard normal
    noise) unless given. ``reduction="none"`` returns the per-sample loss [N] (mean over all other
    dimensions, after ``weighting``: uniform | min-snr with ``snr_gamma`` | edm).
    """
    choice("weighting", weighting, WEIGHTINGS)
    choice("reduction", reduction, REDUCTIONS)
    n = x0.shape[0]
    if t is None:
        t = draw_timesteps(n, schedule.num_timesteps, generator, x0.device, t_probs)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    target = prediction_target(prediction, x0, noise, t, schedule, sigma_data)
    x_t = q_sample(schedule, x0, t, noise)
    out = net(*network_input(prediction, x_t, t, schedule, sigma_data))
    if out.shape != x0.shape:
        raise ValueError(f"net returned shape {list(out.shape)}, expected {list(x0.shape)}")
    per_sample = (out.float() - target.float()).pow(2).reshape(n, -1).mean(dim=1)
    if weighting == "min-snr":
        snr = schedule.gather(schedule.snr, t, per_sample)
        per_sample = per_sample * get_target(prediction).min_snr_weight(snr, snr_gamma, sigma_data)
    elif weighting == "edm":
        if sigma_data is None:
            raise ValueError("weighting='edm' (λ = 1/c_out² = SNR + 1/σ_d²) needs sigma_data")
        snr = schedule.gather(schedule.snr, t, per_sample)
        per_sample = per_sample * ((snr + 1 / sigma_data**2) / get_target(prediction).error_ratio(snr, sigma_data))
    return per_sample.mean() if reduction == "mean" else per_sample


# ---- the variational bound (DDPM eq. 5 / seed eqs. 7–8) --------------------------------------
#
#   L = L_T + Σ_{t>1} L_{t-1} + L_0
#   L_T     = KL(q(x_T | x_0) ‖ N(0, I))
#   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t)),  p_θ = N(μ_θ(x_t, t), σ_t²·I)
#   L_0     = -log p_θ(x_0 | x_1), DDPM's discretised Gaussian decoder (DDPM eq. 13)
#
# All in nats here; ``ddkit.eval.likelihood.nll_bpd`` sums them and converts to bits/dim.

BOUND_VARIANCES = ("small", "large")


def normal_kl(mean1: torch.Tensor, var1: torch.Tensor, mean2: torch.Tensor, var2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, var1) ‖ N(mean2, var2)) element by element, in nats (broadcasting):
    ½·(log(var2/var1) + var1/var2 - 1 + (mean1 - mean2)²/var2)."""
    return 0.5 * (torch.log(var2) - torch.log(var1) + var1 / var2 - 1.0 + (mean1 - mean2) ** 2 / var2)


def _log_normal_mass(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """log(Φ(hi) - Φ(lo)) for lo < hi (standardised edges, ±inf allowed), without cancellation:
    a bin right of the mean is mirrored to the left, where Φ is small and log Φ accurate."""
    right = (lo + hi) > 0
    a = torch.where(right, -hi, lo)
    b = torch.where(right, -lo, hi)  # now Φ(b) - Φ(a) is the same mass with a < b, b "mostly" ≤ 0
    log_b, log_a = torch.special.log_ndtr(b), torch.special.log_ndtr(a)
    return log_b + torch.log1p(-torch.exp(log_a - log_b).clamp(max=1.0))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *, levels: int
) -> torch.Tensor:
    """log P(x) under N(mean, std²) discretised to ``levels`` grey levels on [-1, 1] (DDPM eq. 13),
    element by element, in nats (float64).

    The levels are -1, -1 + w, …, 1 with bin width w = 2/(levels - 1); the bin of x is
    [x - w/2, x + w/2], except that the lowest bin reaches down to -inf (x < -1 + w/2) and the highest
    up to +inf (x > 1 - w/2), so the masses of all levels sum to 1. x, mean, std broadcast.
    """
    integer("levels", levels, low=2, what="an integer >= 2 (e.g. 17 for the digits, 256 for 8-bit images)")
    x, mean, std = (torch.as_tensor(v, dtype=torch.float64) for v in (x, mean, std))
    half = 1.0 / (levels - 1)
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=x.device)
    lo = torch.where(x < -1.0 + half, -inf, (x - half - mean) / std)
    hi = torch.where(x > 1.0 - half, inf, (x + half - mean) / std)
    return _log_normal_mass(lo, hi)


def prior_kl(schedule: Schedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)) per example, in nats: [N] (float64) for x0: [N, ...]."""
    ab = schedule.alpha_bars[-1].to(x0.device)
    x0 = x0.to(torch.float64)
    kl = normal_kl(ab.sqrt() * x0, 1.0 - ab, torch.zeros_like(x0), torch.ones_like(x0))
    return kl.reshape(x0.shape[0], -1).sum(dim=1)


def bound_variance(schedule: Schedule, variance: str = "large") -> torch.Tensor:
    """σ_t² of p_θ(x_{t-1} | x_t) for every 0-based t: float64 [T].

    ``"small"``: β̃_t, ``"large"``: β_t (DDPM §3.2). At t = 0 (the decoder) both use β̃ of the next
    step, as DDPM's and improved-diffusion's code do (β̃ at t = 0 is 0; a T = 1 schedule uses β_1).
    """
    choice("variance", variance, BOUND_VARIANCES)
    var = (schedule.posterior_variance if variance == "small" else schedule.betas).clone()
    var[0] = schedule.posterior_variance[1] if schedule.num_timesteps > 1 else schedule.betas[0]
    return var


def vb_terms(
    model_fn: ModelFn,
    schedule: Schedule,
    x0: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    *,
    levels: int,
    variance: str = "large",
    clip_x0: tuple[float, float] | None = None,
) -> torch.Tensor:
    """One term of the bound per example, in nats: [N] (float64).

    x_t = q_sample(x0, t, noise); μ_θ is the posterior mean with x̂₀ from ``model_fn(x_t, t)``
    (DDPM eq. 11). For t ≥ 1 (the paper's t ≥ 2): L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ‖ N(μ_θ, σ_t²)),
    summed over dimensions; for t = 0: L_0 = -log p_θ(x_0 | x_1), the discretised Gaussian decoder
    with ``levels`` grey levels. σ_t² from :func:`bound_variance` (``variance``). ``clip_x0=(-1, 1)``
    clamps x̂₀ before the mean (improved-diffusion's ``clip_denoised``: another p_θ, still a bound;
    it tames the last steps, where x̂₀ = (x_t - √(1-ᾱ)·ε)/√ᾱ divides by √ᾱ_T ≈ 0). x0, noise: [N, ...].
    """
    n = x0.shape[0]
    x0 = x0.to(torch.float64)
    x_t = q_sample(schedule, x0, t, noise.to(torch.float64))
    eps = model_fn(x_t.to(noise.dtype), t)
    if eps.shape != x0.shape:
        raise ValueError(f"model_fn returned shape {list(eps.shape)}, expected {list(x0.shape)}")
    ab = schedule.gather(schedule.alpha_bars, t, x0)
    x0_hat = x0_from_eps(x_t, eps.to(torch.float64), ab)
    if clip_x0 is not None:
        x0_hat = x0_hat.clamp(*clip_x0)
    model_mean, _ = q_posterior(schedule, x0_hat, x_t, t)
    true_mean, true_var = q_posterior(schedule, x0, x_t, t)
    model_var = schedule.gather(bound_variance(schedule, variance), t, x0)
    kl = normal_kl(true_mean, true_var.clamp(min=1e-300), model_mean, model_var).reshape(n, -1).sum(1)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, model_var.sqrt(), levels=levels).reshape(n, -1).sum(1)
    return torch.where(t == 0, nll, kl)
