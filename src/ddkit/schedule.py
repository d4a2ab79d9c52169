"""Variance schedules β₁…β_T and the sampling timestep sequences.

Notation (DDPM, Ho et al. 2020; DDIM, Song et al. 2020):

    β_t             forward-process variance at paper step t = 1..T   (``betas[t-1]``)
    α_t  = 1 - β_t                                                     (``alphas``)
    ᾱ_t  = Π_{s≤t} α_s                                                 (``alpha_bars``)
    ᾱ_{t-1}, with ᾱ_0 = 1                                              (``alpha_bars_prev``)
    β̃_t  = (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · β_t   posterior variance         (``posterior_variance``)

Index ``i`` of every tensor is the paper's ``t = i + 1``; models and samplers use the 0-based
``i`` throughout (as diffusers and improved-diffusion do). Schedules are kept in float64 and cast
where they are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

SPACINGS = ("uniform", "quadratic", "trailing", "linspace")
# spacings that also need the schedule (make_timesteps(..., schedule=...)); samplers and the CLI take all
SCHEDULE_SPACINGS = ("logsnr",)
ALL_SPACINGS = SPACINGS + SCHEDULE_SPACINGS
SCHEDULES = ("linear", "cosine")


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
            raise ValueError(f"ᾱ reaches 0 at t = {first + 1} of T = {betas.numel()} (a beta of 1, or underflow): "
                             "x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ would divide by zero; only the last step may have ᾱ_T = 0")
        # signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) (Kingma et al. 2021), for loss weightings
        object.__setattr__(self, "snr", alpha_bars / (1.0 - alpha_bars))
        # β̃_t (DDPM eq. 7); β̃_1 = 0 because ᾱ_0 = 1.
        object.__setattr__(self, "posterior_variance", betas * (1.0 - alpha_bars_prev) / (1.0 - alpha_bars))

    # ---- constructors -------------------------------------------------------------------
    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, *,
               timesteps: int | None = None) -> "Schedule":
        """DDPM's linear schedule over T = ``num_timesteps``: β_t evenly spaced from ``beta_start``
        to ``beta_end``. (``timesteps=`` is the old name of ``num_timesteps``, still accepted.)"""
        T = _num_timesteps(num_timesteps, timesteps)
        if not 0 < beta_start <= beta_end <= 1:
            raise ValueError(f"need 0 < beta_start <= beta_end <= 1, got beta_start={beta_start}, beta_end={beta_end}")
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        return cls(betas, "linear", {"num_timesteps": T, "beta_start": beta_start, "beta_end": beta_end})

    @classmethod
    def cosine(cls, num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999, *,
               timesteps: int | None = None) -> "Schedule":
        """Nichol & Dhariwal (2021) eq. (17): ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2),
        β_t = min(1 - ᾱ(t)/ᾱ(t-1), max_beta), with T = ``num_timesteps``."""
        T = _num_timesteps(num_timesteps, timesteps)
        if not 0 < max_beta <= 1:
            raise ValueError(f"max_beta must be in (0, 1], got {max_beta}")
        steps = np.arange(T + 1, dtype=np.float64) / T
        f = np.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
        return cls(torch.from_numpy(betas), "cosine", {"num_timesteps": T, "s": s, "max_beta": max_beta})

    @classmethod
    def from_config(cls, config: dict) -> "Schedule":
        """Inverse of :meth:`to_config`."""
        config = dict(config)
        name = config.pop("name", None)
        if name == "linear":
            return cls.linear(**config)
        if name == "cosine":
            return cls.cosine(**config)
        if name == "custom" and "betas" in config:
            return cls(torch.tensor(config["betas"], dtype=torch.float64))
        raise ValueError(f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)} (or 'custom' with betas)")

    def to_config(self) -> dict:
        """A JSON-able description that :meth:`from_config` turns back into this schedule."""
        if self.name in SCHEDULES:
            return {"name": self.name, **self.params}
        return {"name": "custom", "betas": self.betas.tolist()}

    # ---- helpers --------------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        """T, the number of diffusion (training) timesteps."""
        return self.betas.numel()

    @property
    def timesteps(self) -> int:
        """The old name of :attr:`num_timesteps` (T), kept so older code keeps working."""
        return self.num_timesteps

    def __len__(self) -> int:
        return self.num_timesteps

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"Schedule.{self.name}({params})" if self.name in SCHEDULES else f"Schedule(T={self.num_timesteps})"

    @property
    def zero_terminal_snr(self) -> bool:
        """ᾱ_T = 0 (Lin et al. 2023): usable for training only with v-prediction, and no ε-based
        sampler may start at t = T - 1 (see :func:`check_alpha_bars`)."""
        return bool(self.alpha_bars[-1] == 0)

    def alpha_bar(self, t: int) -> float:
        """ᾱ at 0-based step ``t`` as a Python float (float64); ``t = -1`` gives ᾱ_0 = 1."""
        return 1.0 if t < 0 else float(self.alpha_bars[t])

    def gather(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values[t]`` reshaped to broadcast against ``like`` [N, ...] and cast to its dtype/device."""
        t = check_t(t, like.shape[0], self.num_timesteps)
        out = values.to(t.device)[t].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))


def _num_timesteps(num_timesteps: int, timesteps: int | None) -> int:
    """T from the constructors' keyword, or from its old name ``timesteps``."""
    T = num_timesteps if timesteps is None else timesteps
    _check_timesteps(T)
    return int(T)


def _check_timesteps(timesteps: int) -> None:
    if not isinstance(timesteps, (int, np.integer)) or isinstance(timesteps, bool) or timesteps < 1:
        raise ValueError(f"num_timesteps (T) must be a positive integer, got {timesteps!r}")


def check_t(t: torch.Tensor, n: int, num_timesteps: int) -> torch.Tensor:
    """Validate a batch of 0-based timesteps: LongTensor [n] with values in [0, T-1]."""
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"t must be an integer (Long) tensor of 0-based timesteps, got {type(t).__name__}"
                         + (f" of dtype {t.dtype}" if isinstance(t, torch.Tensor) else ""))
    if t.shape != (n,):
        raise ValueError(f"t must have shape [{n}] (one timestep per sample), got {list(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= num_timesteps):
        raise ValueError(f"t must lie in [0, {num_timesteps - 1}], got values in [{int(t.min())}, {int(t.max())}]")
    return t.long()


def check_alpha_bars(schedule: "Schedule", timesteps) -> None:
    """Refuse a sampling sequence that visits a step with ᾱ = 0 (the last step of a zero-terminal-SNR
    schedule): x̂₀ from ε divides by √ᾱ = 0 there."""
    bad = [int(t) for t in timesteps if int(t) >= 0 and schedule.alpha_bars[int(t)] == 0]
    if bad:
        raise ValueError(f"the schedule has ᾱ = 0 at timestep {bad[0]} (zero terminal SNR), where x̂₀ from ε "
                         "divides by zero; sample with a sequence that starts below it (e.g. spacing 'uniform')")


def make_timesteps(num_timesteps: int, steps: int, spacing: str = "uniform",
                   schedule: "Schedule | None" = None) -> torch.Tensor:
    """The 0-based timesteps a sampler visits, out of T = ``num_timesteps``,
    strictly decreasing: LongTensor [steps].

    ``spacing``:
      - ``"uniform"``  DDIM's τ = 0, c, 2c, … with c = T // S (diffusers' "leading");
      - ``"quadratic"`` DDIM's τ_i = ⌊(i/(S-1))²·0.8T⌋ (their CIFAR-10 choice), made strictly
        increasing where flooring would repeat a step (only when S is close to T);
      - ``"trailing"`` round(T - k·T/S) - 1 for k = 0..S-1 (starts at T-1; diffusers' "trailing");
      - ``"linspace"`` round(linspace(0, T-1, S)) (diffusers' "linspace");
      - ``"logsnr"`` uniform in λ = log(√ᾱ/√(1-ᾱ)) from λ(T-1) to λ(0) (DPM-Solver's
        "logSNR" steps); needs ``schedule`` (see :func:`make_timesteps_logsnr`).
    """
    _check_timesteps(num_timesteps)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}] (the schedule's T), got {steps!r}")
    if spacing == "logsnr":
        if schedule is None:
            raise ValueError("spacing 'logsnr' needs the schedule (make_timesteps(T, steps, 'logsnr', schedule=...))")
        if schedule.num_timesteps != num_timesteps:
            raise ValueError(f"the schedule has T = {schedule.num_timesteps}, not num_timesteps = {num_timesteps}")
        return make_timesteps_logsnr(schedule, steps)
    if spacing == "uniform":
        seq = np.arange(steps, dtype=np.int64) * (num_timesteps // steps)
    elif spacing == "quadratic":
        raw = np.floor(np.linspace(0.0, math.sqrt(0.8 * num_timesteps), steps) ** 2).astype(np.int64)
        seq = raw.copy()
        for i in range(1, steps):  # keep strictly increasing; never exceeds T-1 (see docstring)
            seq[i] = max(raw[i], seq[i - 1] + 1)
        seq = np.minimum(seq, num_timesteps - steps + np.arange(steps))
    elif spacing == "trailing":
        seq = (np.round(np.arange(num_timesteps, 0, -num_timesteps / steps)[:steps]).astype(np.int64) - 1)[::-1]
    elif spacing == "linspace":
        seq = np.round(np.linspace(0, num_timesteps - 1, steps)).astype(np.int64)
    else:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(ALL_SPACINGS)}")
    return torch.from_numpy(seq[::-1].copy())


def log_snr(schedule: Schedule) -> torch.Tensor:
    """λ_t = log(√ᾱ_t / √(1-ᾱ_t)) = ½·log SNR_t for every 0-based t: float64 [T], decreasing."""
    return 0.5 * (torch.log(schedule.alpha_bars) - torch.log1p(-schedule.alpha_bars))


def make_timesteps_logsnr(schedule: Schedule, steps: int) -> torch.Tensor:
    """``steps`` timesteps uniform in λ (DPM-Solver, Lu et al. 2022, "logSNR" steps): λ evenly
    spaced from λ(T-1) to λ(0), each mapped to the t with that λ (linear interpolation of t in
    λ, as diffusers' ``use_lu_lambdas``) and rounded; strictly decreasing LongTensor [steps] from
    T-1 to 0 (where rounding would repeat a step, the lower steps move down, as for "quadratic")."""
    T = schedule.num_timesteps
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, {T}] (the schedule's T), got {steps!r}")
    lam = log_snr(schedule).numpy()
    grid = np.linspace(lam[-1], lam[0], steps)                       # increasing λ = decreasing t
    t = np.interp(grid, lam[::-1], np.arange(T - 1, -1, -1, dtype=np.float64))
    seq = np.round(t).astype(np.int64)                               # decreasing, may repeat
    seq[0] = T - 1
    for i in range(steps - 2, -1, -1):  # from the low end up: strictly decreasing, within [0, T-1]
        seq[i] = max(seq[i], seq[i + 1] + 1)
    seq = np.minimum(seq, T - 1 - np.arange(steps))
    return torch.from_numpy(seq.copy())
