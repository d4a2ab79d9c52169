"""The forward (noising) process and its posterior.

    q(x_t | x_0)          = N(√ᾱ_t·x_0, (1-ᾱ_t)·I)                       DDPM eq. 4, seed eqs. (3), (4)
    q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t·I)                      DDPM eqs. 6–7, seed eqs. (9)–(12)
    μ̃_t = √ᾱ_{t-1}·β_t/(1-ᾱ_t)·x_0 + √α_t·(1-ᾱ_{t-1})/(1-ᾱ_t)·x_t
    β̃_t = (1-ᾱ_{t-1})/(1-ᾱ_t)·β_t

``t`` is a LongTensor [N] of 0-based steps (index i is the paper's t = i + 1); ``x``: [N, ...].
"""

from __future__ import annotations

import torch

from .checks import same_shape as _check_same_shape
from .schedule import Schedule


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw x_t ~ q(x_t | x_0) in closed form (seed eq. 3): √ᾱ_t·x_0 + √(1-ᾱ_t)·noise.

    x0, noise: [N, ...]; t: LongTensor [N]. Returns x_t in x0's dtype.
    """
    _check_same_shape(x0, noise, "x0 and noise")
    sqrt_ab = schedule.gather(schedule.alpha_bars.sqrt(), t, x0)
    sqrt_one_minus_ab = schedule.gather((1.0 - schedule.alpha_bars).sqrt(), t, x0)
    return sqrt_ab * x0 + sqrt_one_minus_ab * noise


def q_mean_variance(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [N, ...] and variance [N, 1, ...] of q(x_t | x_0) (seed eq. 4)."""
    mean = schedule.gather(schedule.alpha_bars.sqrt(), t, x0) * x0
    return mean, schedule.gather(1.0 - schedule.alpha_bars, t, x0)


def q_posterior(
    schedule: Schedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ̃_t [N, ...] and variance β̃_t [N, 1, ...] of q(x_{t-1} | x_t, x_0) (seed eqs. 11, 12).

    At t = 0 (the paper's t = 1) the posterior is a point mass at x_0: mean x_0, variance 0.
    """
    _check_same_shape(x0, x_t, "x0 and x_t")
    ab, ab_prev = schedule.alpha_bars, schedule.alpha_bars_prev
    coef_x0 = schedule.gather(ab_prev.sqrt() * schedule.betas / (1.0 - ab), t, x0)
    coef_xt = schedule.gather(schedule.alphas.sqrt() * (1.0 - ab_prev) / (1.0 - ab), t, x0)
    mean = coef_x0 * x0 + coef_xt * x_t
    return mean, schedule.gather(schedule.posterior_variance, t, x0)
