"""Prediction targets: what a network outputs (ε, x₀, v, or EDM's preconditioned F), what it is fed,
its conversion to ε, its training target and its loss weight — one table, :data:`TARGETS` — and the
adapters to ``model_fn``.

With x_t = √ᾱ·x₀ + √(1-ᾱ)·ε (DDPM eq. 4 / seed eq. 3) and v = √ᾱ·ε - √(1-ᾱ)·x₀
(Salimans & Ho 2022):

    x̂₀ = (x_t - √(1-ᾱ)·ε) / √ᾱ          ε = (x_t - √ᾱ·x̂₀) / √(1-ᾱ)
    ε  = √ᾱ·v + √(1-ᾱ)·x_t               x̂₀ = √ᾱ·x_t - √(1-ᾱ)·v

EDM's preconditioning (Karras et al. 2022, Table 1) on this VP schedule: σ = √((1-ᾱ)/ᾱ) and
x̃ = x_t/√ᾱ = x₀ + σ·ε; the network F sees (c_in·x̃, c_noise) and the denoiser is
D(x̃; σ) = c_skip·x̃ + c_out·F, so ε = (x̃ - D)/σ (:func:`edm_coefficients`; σ_d = ``sigma_data``).
With σ_d = 1, F's target is -v.

``alpha_bar`` is a Python float (one ᾱ for the whole batch, as samplers use) or a tensor that
broadcasts against ``x_t`` (e.g. ``schedule.gather(schedule.alpha_bars, t, x_t)``: [N, 1, …]).
Scalars stay float64 until they multiply the tensor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

AlphaBar = float | torch.Tensor
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _sqrt(a: AlphaBar) -> AlphaBar:
    return math.sqrt(a) if isinstance(a, float) else a.sqrt()


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """x̂₀ = (x_t - √(1-ᾱ)·ε) / √ᾱ  (DDPM eq. 15 / DDIM eq. 9)."""
    return (x_t - _sqrt(1 - alpha_bar) * eps) / _sqrt(alpha_bar)


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """ε = (x_t - √ᾱ·x₀) / √(1-ᾱ); undefined where ᾱ = 1."""
    return (x_t - _sqrt(alpha_bar) * x0) / _sqrt(1 - alpha_bar)


def v_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """v = √ᾱ·ε - √(1-ᾱ)·x₀ with x₀ taken from (x_t, ε); equals (ε - √(1-ᾱ)·x_t)/√ᾱ."""
    return (eps - _sqrt(1 - alpha_bar) * x_t) / _sqrt(alpha_bar)


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """ε = √ᾱ·v + √(1-ᾱ)·x_t."""
    return _sqrt(alpha_bar) * v + _sqrt(1 - alpha_bar) * x_t


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """x̂₀ = √ᾱ·x_t - √(1-ᾱ)·v."""
    return _sqrt(alpha_bar) * x_t - _sqrt(1 - alpha_bar) * v


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: AlphaBar) -> torch.Tensor:
    """The v target for training: v = √ᾱ·ε - √(1-ᾱ)·x₀."""
    return _sqrt(alpha_bar) * eps - _sqrt(1 - alpha_bar) * x0


def edm_coefficients(sigma, sigma_data: float) -> tuple:
    """EDM's preconditioning (Karras et al. 2022, Table 1), for noise level ``sigma`` (a float or a
    tensor) and data standard deviation ``sigma_data``: ``(c_skip, c_out, c_in, c_noise)`` with

        c_skip = σ_d²/(σ²+σ_d²)   c_out = σ·σ_d/√(σ²+σ_d²)   c_in = 1/√(σ²+σ_d²)   c_noise = ¼·ln σ

    so that D(x̃; σ) = c_skip·x̃ + c_out·F(c_in·x̃; c_noise) (EDM eq. 7)."""
    sqrt, log = (torch.sqrt, torch.log) if isinstance(sigma, torch.Tensor) else (math.sqrt, math.log)
    norm = sqrt(sigma**2 + sigma_data**2)
    return sigma_data**2 / norm**2, sigma * sigma_data / norm, 1 / norm, log(sigma) / 4


def sigma_from_alpha_bar(alpha_bar: torch.Tensor) -> torch.Tensor:
    """σ = √((1-ᾱ)/ᾱ): the noise level of x̃ = x_t/√ᾱ = x₀ + σ·ε (``Schedule.sigmas``)."""
    return ((1 - alpha_bar) / alpha_bar).sqrt()


def timestep_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of fractional timesteps (or EDM's c_noise) fed with ``x``: float64 for float64 ``x``,
    else float32 (never half precision, which cannot tell neighbouring timesteps apart)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# EDM's preconditioning on the VP schedule: x̃ = x_t/√ᾱ and σ = √((1-ᾱ)/ᾱ). ``ab`` is ᾱ in float64
# [N, 1, …]; the coefficients are cast to the tensor's dtype where they multiply it.
def _edm_input(x_t: torch.Tensor, t: torch.Tensor, ab: torch.Tensor, sigma_data: float):
    """(c_in·x̃, c_noise): the network's input [N, ...] and its noise label [N] (fractional)."""
    _, _, c_in, c_noise = edm_coefficients(sigma_from_alpha_bar(ab), sigma_data)
    return x_t * (c_in / ab.sqrt()).to(x_t.dtype), c_noise.reshape(-1).to(timestep_dtype(x_t))


def _edm_to_eps(x_t: torch.Tensor, out: torch.Tensor, ab: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """ε = (x̃ - D)/σ with D = c_skip·x̃ + c_out·F, written without the division by σ (finite at σ → 0):
    ε = σ/(σ²+σ_d²)·x̃ - σ_d/√(σ²+σ_d²)·F."""
    sigma = sigma_from_alpha_bar(ab)
    a = sigma / (sigma**2 + sigma_data**2) / ab.sqrt()
    b = sigma_data / (sigma**2 + sigma_data**2).sqrt()
    return a.to(x_t.dtype) * x_t - b.to(out.dtype) * out


def _edm_target(x0: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """F's target (x₀ - c_skip·x̃)/c_out with x̃ = x₀ + σε: (σ/σ_d·x₀ - σ_d·ε)/√(σ²+σ_d²)."""
    sigma = sigma_from_alpha_bar(ab)
    norm = (sigma**2 + sigma_data**2).sqrt()
    return (sigma / (sigma_data * norm)).to(x0.dtype) * x0 - (sigma_data / norm).to(eps.dtype) * eps


@dataclass(frozen=True)
class Target:
    """One prediction target: what the network outputs and everything that follows from it.

    ``target(x0, eps, ᾱ, σ_d)``: the training target; ``to_eps(x_t, out, ᾱ, σ_d)``: ε from the
    network's output; ``error_ratio(snr, σ_d)``: ‖target error‖² per ‖x̂₀ error‖² at a noise level
    (SNR = ᾱ/(1-ᾱ) = 1/σ²), which turns a loss weight λ(σ) on the x̂₀ error (Hang et al. 2023's
    min-SNR-γ, EDM's 1/c_out²) into this target's: λ/error_ratio; ``diffusers_name``: diffusers'
    ``prediction_type`` (None: diffusers cannot express the target); ``zero_terminal_snr``: whether
    the target can be trained on a schedule whose ᾱ_T = 0 (only v: x_T then holds no signal, and
    ε/x₀ are undefined there).

    A preconditioned row (EDM) also changes the network's input: ``network_input(x_t, t, ᾱ, σ_d)``
    gives ``(x_in, t_in)`` (None: the network sees ``(x_t, t)``); its ᾱ arrives in float64 and its
    ``σ_d`` (``sigma_data``, the data's standard deviation) must be known. The other rows ignore σ_d.
    """

    name: str
    diffusers_name: str | None
    target: Callable[[torch.Tensor, torch.Tensor, AlphaBar, float | None], torch.Tensor]
    to_eps: Callable[[torch.Tensor, torch.Tensor, AlphaBar, float | None], torch.Tensor]
    error_ratio: Callable[[torch.Tensor, float | None], torch.Tensor]
    zero_terminal_snr: bool = False
    network_input: Callable | None = None

    @property
    def preconditioned(self) -> bool:
        """Whether the row transforms the network's input (and needs ``sigma_data``)."""
        return self.network_input is not None

    def min_snr_weight(self, snr: torch.Tensor, gamma: float, sigma_data: float | None = None) -> torch.Tensor:
        """Hang et al. 2023's min-SNR-γ weight, min(SNR, γ) on the x̂₀ error, for this target."""
        return snr.clamp(max=gamma) / self.error_ratio(snr, sigma_data)


TARGETS: dict[str, Target] = {
    "eps": Target("eps", "epsilon", lambda x0, eps, ab, sd: eps, lambda x_t, out, ab, sd: out, lambda snr, sd: snr),
    "x0": Target(
        "x0",
        "sample",
        lambda x0, eps, ab, sd: x0,
        lambda x_t, out, ab, sd: eps_from_x0(x_t, out, ab),
        lambda snr, sd: torch.ones_like(snr),
    ),
    "v": Target(
        "v",
        "v_prediction",
        lambda x0, eps, ab, sd: v_from_x0_eps(x0, eps, ab),
        lambda x_t, out, ab, sd: eps_from_v(x_t, out, ab),
        lambda snr, sd: snr + 1,
        zero_terminal_snr=True,
    ),
    # EDM's preconditioning (Karras et al. 2022, Table 1): the network F sees c_in·x̃ and c_noise,
    # D = c_skip·x̃ + c_out·F, and F's target makes D = x₀; ‖F error‖² = ‖D error‖²/c_out², and
    # 1/c_out² = 1/σ² + 1/σ_d² = SNR + 1/σ_d²
    "edm": Target("edm", None, _edm_target, _edm_to_eps, lambda snr, sd: snr + 1 / sd**2, network_input=_edm_input),
}
"""The prediction targets by name: ``eps``, ``x0``, ``v`` and EDM's preconditioned ``edm`` (see
:class:`Target`): the training target, the conversion to ε and the loss weight of each."""
PREDICTIONS = tuple(name for name, t in TARGETS.items() if not t.preconditioned)
"""What ``prediction`` may name: the targets of an unpreconditioned network, ``eps``, ``x0`` and ``v``
(EDM's is ``preconditioning``; see :class:`Target`)."""
PRECONDITIONINGS = ("none", "edm")
"""What ``preconditioning`` may name: none, or EDM's (Karras et al. 2022, Table 1)."""


def get_target(prediction: str) -> Target:
    """The :class:`Target` named ``prediction`` (eps | x0 | v | edm); a ValueError names the allowed ones."""
    try:
        return TARGETS[prediction]
    except (KeyError, TypeError):
        raise ValueError(f"prediction must be one of {', '.join(TARGETS)}; got {prediction!r}") from None


def target_name(prediction: str = "eps", preconditioning: str = "none") -> str:
    """The :data:`TARGETS` row of a network that predicts ``prediction`` under ``preconditioning``
    (none | edm): EDM's preconditioning is its own row."""
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"preconditioning must be one of {', '.join(PRECONDITIONINGS)}; got {preconditioning!r}")
    return prediction if preconditioning == "none" else preconditioning


def check_terminal_snr(schedule, prediction: str = "eps") -> None:
    """A schedule whose ᾱ_T is 0 (zero terminal SNR, Lin et al. 2023) trains only a target that
    allows it (v): with ε or x₀ the network cannot learn at t = T (x_T holds no signal, and
    x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ divides by zero). A ValueError says so otherwise."""
    if schedule.alpha_bars[-1] == 0 and not get_target(prediction).zero_terminal_snr:
        allowed = [name for name, target in TARGETS.items() if target.zero_terminal_snr]
        raise ValueError(
            f"this schedule reaches ᾱ_T = 0 (zero terminal SNR, e.g. a beta of 1); that needs "
            f"prediction {' or '.join(map(repr, allowed))} (Lin et al. 2023), not {prediction!r}: with it "
            "x̂₀ = (x_t − √(1−ᾱ)ε)/√ᾱ divides by zero. Use prediction v or a beta_end below 1"
        )


def clip_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float, clip_x0) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂₀ from ε, clamped to ``clip_x0 = (low, high)`` (or left alone when None), and ε re-derived
    from the clamped x̂₀ so that every later formula sees a consistent pair (improved-diffusion's
    ``clip_denoised``). Returns ``(x0, eps)``."""
    x0 = x0_from_eps(x_t, eps, alpha_bar)
    if clip_x0 is None:
        return x0, eps
    x0 = x0.clamp(clip_x0[0], clip_x0[1])
    return x0, eps_from_x0(x_t, x0, alpha_bar)


def model_fn_from(
    model: torch.nn.Module, prediction: str = "eps", schedule=None, *, sigma_data: float | None = None, **kwargs
) -> ModelFn:
    """Wrap a network ``model(x_in, t_in, **kwargs)`` as ``model_fn(x_t, t) -> ε``.

    ``prediction`` is what the network outputs: ``"eps"``, ``"x0"``, ``"v"`` or ``"edm"`` (EDM's
    preconditioned F, which also sees c_in·x̃ and c_noise instead of x_t and t, and needs
    ``sigma_data``); all but eps need the ``schedule`` to convert. Extra keyword arguments (e.g.
    ``y=labels``) are bound.
    """
    _check_prediction(prediction, schedule, sigma_data)

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x_in, t_in = network_input(prediction, x_t, t, schedule, sigma_data)
        return eps_from_prediction(model(x_in, t_in, **kwargs), prediction, x_t, t, schedule, sigma_data)

    return model_fn


def _check_prediction(prediction: str, schedule, sigma_data: float | None = None) -> Target:
    target = get_target(prediction)
    if prediction != "eps" and schedule is None:
        raise ValueError(f"prediction={prediction!r} needs the schedule to convert to eps")
    if target.preconditioned and not (
        isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data) and sigma_data > 0
    ):
        raise ValueError(
            f"prediction={prediction!r} (a preconditioned network) needs sigma_data, the data's standard "
            f"deviation (a run records it in config.json), got {sigma_data!r}"
        )
    return target


def _alpha_bars(target: Target, schedule, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """ᾱ_t [N, 1, …] for ``target``'s formulas: in ``like``'s dtype, or float64 for a preconditioned
    row (its coefficients are cast where they multiply a tensor)."""
    if not target.preconditioned:
        return schedule.alpha_bars_at(t, like)
    return schedule.alpha_bars_at(t, like.new_empty((like.shape[0],) + (1,) * (like.ndim - 1), dtype=torch.float64))


def network_input(
    prediction: str, x_t: torch.Tensor, t: torch.Tensor, schedule=None, sigma_data: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a network that predicts ``prediction`` is fed at (x_t [N, ...], t [N]): ``(x_t, t)`` itself,
    or for EDM's preconditioning ``(c_in·x̃, c_noise)`` with x̃ = x_t/√ᾱ_t (EDM Table 1; c_noise
    fractional, [N])."""
    target = get_target(prediction)
    if not target.preconditioned:
        return x_t, t
    return target.network_input(x_t, t, _alpha_bars(target, schedule, t, x_t), sigma_data)


def eps_from_prediction(
    out: torch.Tensor, prediction: str, x_t: torch.Tensor, t: torch.Tensor, schedule, sigma_data: float | None = None
) -> torch.Tensor:
    """ε from a network output ``out`` [N, ...] that predicts ``prediction`` (eps | x0 | v | edm) at
    x_t [N, ...] and timesteps t [N] (integer, or fractional on a σ-grid)."""
    if prediction == "eps":
        return out
    target = get_target(prediction)
    return target.to_eps(x_t, out, _alpha_bars(target, schedule, t, x_t), sigma_data)


def prediction_target(
    prediction: str, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule, sigma_data: float | None = None
) -> torch.Tensor:
    """The training target [N, ...] for a network that predicts ``prediction``: ε, x₀,
    v = √ᾱ_t·ε - √(1-ᾱ_t)·x₀ (Salimans & Ho 2022, eq. 8's target), or EDM's F target
    (x₀ - c_skip·x̃)/c_out, which makes D = x₀ (EDM eq. 8)."""
    target = _check_prediction(prediction, schedule, sigma_data)
    if prediction == "eps":
        return eps
    return target.target(x0, eps, _alpha_bars(target, schedule, t, x0), sigma_data)


class EpsNetwork(torch.nn.Module):
    """A network that predicts ε, x₀, v or EDM's F, seen as one that predicts ε:
    ``f(x_t, t, y=None) -> ε`` [N, ...] (the input of a preconditioned network is transformed on the
    way in). Exposes the wrapped network's ``config`` and ``num_classes`` so that code written for
    ε-networks (samplers, guidance wrappers, :func:`ddkit.generate.generate`) takes it as is. Networks
    trained with augmentation labels get none here: samples are images without augmentation."""

    def __init__(self, net: torch.nn.Module, prediction: str, schedule, sigma_data: float | None = None):
        super().__init__()
        _check_prediction(prediction, schedule, sigma_data)
        self.net, self.prediction, self.schedule, self.sigma_data = net, prediction, schedule, sigma_data
        self.config = getattr(net, "config", None)
        self.num_classes = getattr(self.config, "num_classes", None)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        x_in, t_in = network_input(self.prediction, x_t, t, self.schedule, self.sigma_data)
        out = self.net(x_in, t_in, y)
        return eps_from_prediction(out, self.prediction, x_t, t, self.schedule, self.sigma_data)


def eps_network(net: torch.nn.Module, prediction: str, schedule, *, sigma_data: float | None = None) -> torch.nn.Module:
    """``net`` (which outputs ``prediction``: eps | x0 | v | edm) as an ε-network ``f(x_t, t, y=None) -> ε``
    (an :class:`EpsNetwork`, for "eps" too, so that ``num_classes`` is always there) with the wrapped
    network's ``config`` and ``num_classes``; "edm" needs ``sigma_data``. A network already wrapped is
    returned as it is."""
    if isinstance(net, EpsNetwork):
        return net
    return EpsNetwork(net, prediction, schedule, sigma_data)
