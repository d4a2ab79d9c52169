"""Bits per dimension from the variational bound (DDPM eq. 5 / the seed's eqs. 7–8).

    -log p_θ(x_0) ≤ L = L_T + Σ_{t=2}^{T} L_{t-1} + L_0
    L_T      = KL(q(x_T | x_0) ‖ N(0, I))                                      prior term
    L_{t-1}  = KL(q(x_{t-1} | x_t, x_0) ‖ p_θ(x_{t-1} | x_t)),  x_t ~ q(x_t | x_0)
    p_θ(x_{t-1} | x_t) = N(μ_θ(x_t, t), σ_t²·I),  μ_θ = μ̃_t(x_t, x̂₀(x_t, ε_θ))  (DDPM eq. 11)
    L_0      = -log p_θ(x_0 | x_1), the discretised Gaussian decoder (DDPM eq. 13)

Every term is exact except for the draw of x_t: one x_t ~ q(x_t | x_0) per image and timestep, as
DDPM and improved-diffusion evaluate it (so T network calls per image). Bits per dimension divide
nats by D·ln 2, D the number of values per image (64 for an 8×8 digit). A model that puts all its
mass uniformly on the ``levels`` grey levels scores log2(levels) bits/dim (4.09 for the digits' 17).

σ_t²: ``variance="large"`` (β_t, the default: DDPM's choice for its CIFAR-10 likelihood, and the
tighter bound for an ε-model, since the true reverse step is wider than β̃_t wherever x_0 is
uncertain given x_t) or ``"small"`` (β̃_t); the decoder uses β̃ of the second step either way (as
DDPM's and improved-diffusion's code). The term math lives in ``ddkit.losses`` (``normal_kl``,
``discretized_gaussian_log_likelihood``, ``prior_kl``, ``vb_terms``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..checks import is_int
from ..losses import prior_kl, vb_terms
from ..parameterization import ModelFn
from ..schedule import Schedule

__all__ = ["BoundTerms", "nll_bpd"]


@dataclass(frozen=True)
class BoundTerms:
    """The variational bound per image, in bits per dimension (float64, on the CPU).

    prior:   [N]     L_T, KL of q(x_T | x_0) to N(0, I)
    terms:   [N, T]  terms[:, t] = L_t for 0-based t: terms[:, 0] is L_0 (the decoder), terms[:, t]
                     for t ≥ 1 the KL at the paper's step t + 1 (improved-diffusion's ``vb`` layout)
    decoder: [N]     L_0 = terms[:, 0]
    total:   [N]     prior + terms.sum(1): the bound on -log2 p(x_0) per dimension
    """

    prior: torch.Tensor
    terms: torch.Tensor
    decoder: torch.Tensor
    total: torch.Tensor

    def summary(self) -> dict:
        """Means over the images: {"nll_bpd", "prior_bpd", "decoder_bpd", "kl_bpd", "num"} (floats)."""
        return {
            "nll_bpd": float(self.total.mean()),
            "prior_bpd": float(self.prior.mean()),
            "decoder_bpd": float(self.decoder.mean()),
            "kl_bpd": float(self.terms[:, 1:].sum(1).mean()),
            "num": int(self.total.shape[0]),
        }


def _check_x0(x0: torch.Tensor) -> torch.Tensor:
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2 or x0.shape[0] < 1:
        raise ValueError("x0 must be a float tensor [N, ...] with N >= 1 (data scaled to [-1, 1])")
    if not torch.isfinite(x0).all():
        raise ValueError("x0 must be finite")
    return x0


@torch.no_grad()
def nll_bpd(
    model_fn: ModelFn,
    schedule: Schedule,
    x0: torch.Tensor,
    *,
    levels: int,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    variance: str = "large",
    clip_x0: tuple[float, float] | str | None = "auto",
    progress: bool = False,
) -> BoundTerms:
    """L_T, every L_{t-1}, L_0 and their sum, in bits per dimension, per image (see the module doc).

    model_fn(x_t, t) -> ε; x0: [N, ...] float in [-1, 1] on the grid of ``levels`` grey levels
    (17 for the digits, 256 for 8-bit images; bin width 2/(levels - 1), the extreme bins reach to
    ±inf). Every one of the T timesteps is evaluated (T network calls per image); ``batch_size``
    caps the rows of one call (default N: one call per timestep; larger values put several
    timesteps into one call). The x_t draws come from ``generator`` (per timestep, one [n, ...]
    draw for each chunk of n images). ``variance``: σ_t² = β_t ("large", default) or β̃_t ("small").
    ``clip_x0``: clamp x̂₀ inside p_θ's mean to (low, high), as DDPM's and improved-diffusion's
    bits/dim evaluations do (``clip_denoised=True``); None: the plain ε-model. "auto" (default):
    (-1, 1) when all of x0 lies in [-1, 1] (image data), else None (e.g. unbounded Gaussian data).
    Either way p_θ is a valid model and the result a valid bound; clipping removes the blow-up of
    x̂₀ = (x_t - √(1-ᾱ)·ε)/√ᾱ at the last steps, where √ᾱ is close to 0.
    Returns :class:`BoundTerms` (fields prior [N], terms [N, T], decoder [N], total [N]).
    """
    x0 = _check_x0(x0)
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(clip_x0, str):
        if clip_x0 != "auto":
            raise ValueError(f"clip_x0 must be 'auto', None or (low, high), got {clip_x0!r}")
        clip_x0 = (-1.0, 1.0) if float(x0.min()) >= -1.0 and float(x0.max()) <= 1.0 else None
    n_all, T = x0.shape[0], schedule.num_timesteps
    rows = batch_size or n_all
    n_img = min(rows, n_all)
    per_call = max(1, rows // n_img)  # timesteps per network call
    terms = torch.empty(n_all, T, dtype=torch.float64)
    bar = tqdm(total=n_all * T, desc="variational bound", unit="term", disable=not progress, dynamic_ncols=True)
    for start in range(0, n_all, n_img):
        x = x0[start : start + n_img]
        n = x.shape[0]
        for t0 in range(0, T, per_call):
            ts = range(t0, min(t0 + per_call, T))
            noise = torch.cat([torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) for _ in ts])
            t = torch.arange(ts.start, ts.stop, device=x.device).repeat_interleave(n)
            out = vb_terms(
                model_fn,
                schedule,
                x.repeat(len(ts), *([1] * (x.ndim - 1))),
                t,
                noise,
                levels=levels,
                variance=variance,
                clip_x0=clip_x0,
            )
            terms[start : start + n, ts.start : ts.stop] = out.reshape(len(ts), n).T.cpu()
            bar.update(n * len(ts))
    bar.close()
    to_bpd = 1.0 / (x0[0].numel() * math.log(2.0))
    prior = prior_kl(schedule, x0).cpu() * to_bpd
    terms = terms * to_bpd
    return BoundTerms(prior=prior, terms=terms, decoder=terms[:, 0].clone(), total=prior + terms.sum(1))
