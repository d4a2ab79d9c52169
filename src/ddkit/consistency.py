"""Consistency models (Song et al. 2023; Geng et al. 2024, "Consistency models made easy"): the
student's parametrisation, its ε-network view, and multistep consistency sampling
(:mod:`ddkit.samplers.consistency`).

Notation (VP schedule, float64 coefficients; see :mod:`ddkit.parameterization`):

    σ = √((1-ᾱ)/ᾱ), x̃ = x_t/√ᾱ = x₀ + σ·ε       EDM's variance-exploding view of x_t
    σ_min = σ at t = 0                          the boundary: the smallest σ the network sees
    σ_d                                         the data's standard deviation (0.5 for images)
    D_net(x̃, σ) = x̃ − σ·ε_net(√ᾱ·x̃, t(σ))      the teacher-shaped network's denoiser
    F = (D_net − c_skip^EDM·x̃)/c_out^EDM        the same network read as EDM's F (EDM Table 1)
    c_skip(σ) = σ_d²/((σ−σ_min)² + σ_d²)        Song et al. 2023, App. C (their ε is our σ_min)
    c_out(σ) = (σ−σ_min)·σ_d/√(σ_d² + σ²)
    f(x̃, σ) = c_skip(σ)·x̃ + c_out(σ)·F          the consistency function: f(x̃, σ_min) = x̃ exactly

At σ_min, c_skip is σ_d²/σ_d² = 1 and c_out is 0·… = 0 in floating point, so the boundary
condition holds bit for bit. For σ ≫ σ_min the coefficients are EDM's, so a student whose network
holds the teacher's weights starts as the teacher's denoiser.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .parameterization import sigma_from_alpha_bar, timestep_dtype
from .samplers.consistency import SIGMA_MAX, SIGMA_MID, consistency_grid, consistency_sample
from .schedule import Schedule
from .timesteps import t_of_sigma


def cm_coefficients(sigma, sigma_min: float, sigma_data: float) -> tuple:
    """(c_skip, c_out) of the consistency function at ``sigma`` (a float or a float64 tensor):
    c_skip = σ_d²/((σ−σ_min)² + σ_d²), c_out = (σ−σ_min)·σ_d/√(σ_d² + σ²) (Song et al. 2023, App. C)."""
    sqrt = torch.sqrt if isinstance(sigma, torch.Tensor) else math.sqrt
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    return c_skip, (sigma - sigma_min) * sigma_data / sqrt(sigma_data**2 + sigma**2)


def eps_at_sigma(eps_net, schedule: Schedule, x: torch.Tensor, sigma: torch.Tensor, y=None) -> torch.Tensor:
    """The ε-network ``eps_net(x_t, t, y)`` evaluated at EDM's x̃ = ``x`` [N, ...] and σ [N]: at
    x_t = √ᾱ·x̃ with ᾱ = 1/(1 + σ²) and the fractional timestep t(σ). Returns ε̂ [N, ...] in the
    network's dtype."""
    alpha_bar = 1.0 / (1.0 + sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1))) ** 2)
    return eps_net(x * alpha_bar.sqrt().to(x.dtype), t_of_sigma(schedule, sigma).to(timestep_dtype(x)), y)


class ConsistencyNetwork(nn.Module):
    """The consistency function f(x̃, σ) of the module docstring around ``eps_net``, the network
    read as an ε-network ``eps_net(x_t, t, y=None) -> ε`` (as :func:`ddkit.parameterization.eps_network`
    gives for ε, x₀, v or EDM's F). Seen from outside it is itself an ε-network:
    ``forward(x_t, t, y) -> ε = (x̃ − f(x̃, σ_t))/σ_t``, so every sampler, guidance wrapper and
    evaluation takes it; :meth:`denoise` is f at an exact σ (training, consistency sampling)."""

    def __init__(self, eps_net: nn.Module, schedule: Schedule, sigma_data: float):
        super().__init__()
        self.eps_net, self.schedule, self.sigma_data = eps_net, schedule, float(sigma_data)
        self.sigma_min = float(schedule.sigmas[0])
        self.config = getattr(eps_net, "config", None)
        self.num_classes = getattr(eps_net, "num_classes", getattr(self.config, "num_classes", None))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """f(x̃, σ) [N, ...] at x̃ = ``x`` [N, ...] and σ [N] (each ≥ σ_min)."""
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        eps = eps_at_sigma(self.eps_net, self.schedule, x, sigma, y)
        sd2 = self.sigma_data**2
        norm = (s**2 + sd2).sqrt()
        # F = (D_net − c_skip^EDM·x̃)/c_out^EDM with D_net = x̃ − σ·ε, written without dividing by σ
        a, b = s / (self.sigma_data * norm), norm / self.sigma_data
        f = a.to(x.dtype) * x - b.to(eps.dtype) * eps
        c_skip, c_out = cm_coefficients(s, self.sigma_min, self.sigma_data)
        return c_skip.to(x.dtype) * x + c_out.to(f.dtype) * f

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        ab = self.schedule.alpha_bars_at(t, x_t.new_empty((x_t.shape[0],) + (1,) * (x_t.ndim - 1), dtype=torch.float64))
        sigma = sigma_from_alpha_bar(ab)
        x = x_t / ab.sqrt().to(x_t.dtype)
        denoised = self.denoise(x, sigma.reshape(-1).clamp(min=self.sigma_min), y)
        return (x - denoised) / sigma.to(x.dtype)


__all__ = [
    "SIGMA_MAX",
    "SIGMA_MID",
    "ConsistencyNetwork",
    "cm_coefficients",
    "consistency_grid",
    "consistency_sample",
    "eps_at_sigma",
    "t_of_sigma",
]
