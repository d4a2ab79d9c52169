"""Variance schedules β₁…β_T.

Notation (DDPM, Ho et al. 2020; DDIM, Song et al. 2020):

    β_t             forward-process variance at paper step t = 1..T   (``betas[t-1]``)
    α_t  = 1 - β_t                                                     (``alphas``)
    ᾱ_t  = Π_{s≤t} α_s                                                 (``alpha_bars``)
    ᾱ_{t-1}, with ᾱ_0 = 1                                              (``alpha_bars_prev``)
    β̃_t  = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t   posterior variance         (``posterior_variance``)
    σ_t  = √((1 - ᾱ_t) / ᾱ_t)   noise level of x_t/√ᾱ_t (EDM's σ)       (``sigmas``)

Index ``i`` of every tensor is the paper's ``t = i + 1``; models and samplers use the 0-based
``i`` throughout (as diffusers and improved-diffusion do). Schedules are kept in float64 and cast
where they are used. The sequences a sampler walks live in :mod:`ddkit.timesteps`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from . import checks
from .timesteps import alpha_bar_at

SCHEDULES = ("linear", "cosine")
_NAMED = SCHEDULES + ("scaled_linear",)  # the constructors that to_config records by name
# the per-timestep tables a Schedule keeps (float64 [T])
_TABLES = ("betas", "alphas", "alpha_bars", "alpha_bars_prev", "snr", "sigmas", "posterior_variance")


@dataclass(frozen=True, eq=False)
class Schedule:
    """A diffusion variance schedule. ``betas``: float64 [T], each in (0, 1].

    Build one with :meth:`linear` or :meth:`cosine`, or pass any betas. ``name`` and ``params``
    record how it was made so that :meth:`to_config` / :meth:`from_config` round-trip it.
    """

    betas: torch.Tensor
    name: str = "custom"
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() < 1:
            raise ValueError(f"betas must be a 1-D tensor with at least one entry, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must all lie in (0, 1]")
        object.__setattr__(self, "betas", betas)
        alphas = 1.0 - betas
        alpha_bars = torch.cumprod(alphas, dim=0)
        alpha_bars_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bars[:-1]])
        object.__setattr__(self, "alphas", alphas)
        object.__setattr__(self, "alpha_bars", alpha_bars)
        object.__setattr__(self, "alpha_bars_prev", alpha_bars_prev)
        if bool((alpha_bars[:-1] <= 0).any()):  # a beta of 1 before the last step: all later ᾱ are 0
            first = int((alpha_bars <= 0).nonzero()[0])
            raise ValueError(
                f"ᾱ reaches 0 at t = {first + 1} of T = {betas.numel()} (a beta of 1, or underflow): "
                "x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ would divide by zero; only the last step may have ᾱ_T = 0"
            )
        # signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) (Kingma et al. 2021), for loss weightings
        object.__setattr__(self, "snr", alpha_bars / (1.0 - alpha_bars))
        # σ_t = √((1 - ᾱ_t)/ᾱ_t) = 1/√SNR_t (EDM's noise level; +∞ where ᾱ = 0)
        object.__setattr__(self, "sigmas", ((1.0 - alpha_bars) / alpha_bars).sqrt())
        # β̃_t (DDPM eq. 7); β̃_1 = 0 because ᾱ_0 = 1.
        object.__setattr__(self, "posterior_variance", betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars))
        # copies of these tables on other devices, made once: a copy from the host on every lookup
        # would stall an accelerator's queue at each model call (a host-device synchronisation)
        object.__setattr__(self, "_on_device", {})

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def linear(
        cls,
        num_timesteps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> Schedule:
        """DDPM's linear schedule over T = ``num_timesteps``: β_t evenly spaced from ``beta_start``
        to ``beta_end``."""
        T = _num_timesteps(num_timesteps)
        if not 0 < beta_start <= beta_end <= 1:
            raise ValueError(f"need 0 < beta_start <= beta_end <= 1, got beta_start={beta_start}, beta_end={beta_end}")
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(betas, "linear", {"num_timesteps": T, "beta_start": beta_start, "beta_end": beta_end})

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
        """Nichol & Dhariwal (2021) eq. (17): ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2),
        β_t = min(1 - ᾱ(t)/ᾱ(t-1), max_beta), with T = ``num_timesteps``."""
        T = _num_timesteps(num_timesteps)
        if not 0 < max_beta <= 1:
            raise ValueError(f"max_beta must be in (0, 1], got {max_beta}")
        steps = np.arange(T + 1, dtype=np.float64) / T
        f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
        return cls(torch.from_numpy(betas), "cosine", {"num_timesteps": T, "s": s, "max_beta": max_beta})

    @classmethod
    def scaled_linear(cls, num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> Schedule:
        """β_t = (linspace(√beta_start, √beta_end, T))² (diffusers' "scaled_linear", Stable Diffusion's)."""
        T = _num_timesteps(num_timesteps)
        if not 0 < beta_start <= beta_end <= 1:
            raise ValueError(f"need 0 < beta_start <= beta_end <= 1, got beta_start={beta_start}, beta_end={beta_end}")
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
        return cls(betas, "scaled_linear", {"num_timesteps": T, "beta_start": beta_start, "beta_end": beta_end})

    @classmethod
    def from_config(cls, config: dict) -> Schedule:
        """Inverse of :meth:`to_config`."""
        config = dict(config)
        name = config.pop("name", None)
        if name in _NAMED:
            return getattr(cls, name)(**config)
        if name == "custom" and "betas" in config:
            return cls(torch.tensor(config["betas"], dtype=torch.float64))
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)} (or 'custom' with betas)")

    def to_config(self) -> dict:
        """A JSON-able description that :meth:`from_config` turns back into this schedule."""
        if self.name in _NAMED:
            return {"name": self.name, **self.params}
        return {"name": "custom", "betas": self.betas.tolist()}

    # ---- helpers --------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion (training) timesteps."""
        return self.betas.numel()

    def __len__(self) -> int:
        return self.num_timesteps

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"Schedule.{self.name}({params})" if self.name in _NAMED else f"Schedule(T={self.num_timesteps})"

    @property
    def zero_terminal_snr(self) -> bool:
        """ᾱ_T = 0 (Lin et al. 2023): usable for training only with v-prediction, and no ε-based
        sampler may start at t = T - 1 (see :func:`check_alpha_bars`)."""
        return bool(self.alpha_bars[-1] == 0)

    def alpha_bar(self, t: int) -> float:
        """ᾱ at 0-based step ``t`` as a Python float (float64); ``t = -1`` gives ᾱ_0 = 1."""
        return 1.0 if t < 0 else float(self.alpha_bars[t])

    def on(self, values: torch.Tensor, device: torch.device | str) -> torch.Tensor:
        """``values`` (one of this schedule's float64 [T] tables) on ``device``; the copy is made once
        per device and kept. Other tensors are simply moved."""
        device = torch.device(device)
        if device.type == "cpu":
            return values if values.device.type == "cpu" else values.cpu()
        name = next((k for k in _TABLES if getattr(self, k) is values), None)
        if name is None:
            return values.to(device)
        key = (name, str(device))
        if key not in self._on_device:
            self._on_device[key] = values.to(device)
        return self._on_device[key]

    def gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` reshaped to broadcast against ``like`` [N, ...] and cast to its dtype/device."""
        t = check_t(t, like.shape[0], self.num_timesteps)
        out = self.on(values, t.device)[t].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    def alpha_bars_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """ᾱ at timesteps ``t`` [N] — integer steps, or fractional ones of a σ-grid
        (:func:`ddkit.timesteps.alpha_bar_at`) — shaped [N, 1, …] to broadcast against ``like``, in its
        dtype (float64 arithmetic before the cast)."""
        if not isinstance(t, torch.Tensor) or t.shape != (like.shape[0],):
            raise ValueError(
                f"t must be a tensor of shape [{like.shape[0]}], got "
                f"{list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}"
            )
        if not t.is_floating_point():
            return self.gather(self.alpha_bars, t, like)
        ab = alpha_bar_at(self.on(self.alpha_bars, t.device), t).to(device=like.device, dtype=like.dtype)
        return ab.reshape(-1, *([1] * (like.ndim - 1)))


def _num_timesteps(num_timesteps: int) -> int:
    """T, checked: an integer >= 1."""
    return checks.integer("num_timesteps (T)", num_timesteps, low=1)


def check_t(t: torch.Tensor, n: int, num_timesteps: int) -> torch.Tensor:
    """Validate a batch of 0-based timesteps: LongTensor [n] with values in [0, T-1]."""
    return checks.timestep_batch(t, n, num_timesteps)


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1 (diffusers' ``rescale_betas_zero_snr``): √ᾱ shifted and scaled
    so that √ᾱ_T = 0 and √ᾱ_1 is kept; then ᾱ_T = min(2⁻²⁴, ᾱ_{T-1}/2) instead of 0 (diffusers'
    Euler schedulers use 2⁻²⁴) so that x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ stays finite. float64 [T]."""
    s = torch.cumprod(1 - torch.as_tensor(betas, dtype=torch.float64), 0).sqrt()
    s0, sT = s[0].clone(), s[-1].clone()
    s = (s - sT) * s0 / (s0 - sT)
    alpha_bars = s**2
    alpha_bars[-1] = min(2.0**-24, alpha_bars[-2].item() / 2)
    alphas = torch.cat([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])
    return 1 - alphas
