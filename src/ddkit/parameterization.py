"""Prediction targets: what a network outputs (ε, x₀ or v), its conversion to ε, its training
target and its loss weight — one table, :data:`TARGETS` — and the adapters to ``model_fn``.

With x_t = √ᾱ·x₀ + √(1-ᾱ)·ε (DDPM eq. 4 / seed eq. 3) and v = √ᾱ·ε - √(1-ᾱ)·x₀
(Salimans & Ho 2022):

    x̂₀ = (x_t - √(1-ᾱ)·ε) / √ᾱ          ε = (x_t - √ᾱ·x̂₀) / √(1-ᾱ)
    ε  = √ᾱ·v + √(1-ᾱ)·x_t               x̂₀ = √ᾱ·x_t - √(1-ᾱ)·v

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


@dataclass(frozen=True)
class Target:
    """One prediction target: what the network outputs and everything that follows from it.

    ``target(x0, eps, ᾱ)``: the training target; ``to_eps(x_t, out, ᾱ)``: ε from the network's output;
    ``min_snr_weight(snr, γ)``: Hang et al. 2023's min-SNR-γ loss weight for this target;
    ``diffusers_name``: diffusers' ``prediction_type``; ``zero_terminal_snr``: whether the target can
    be trained on a schedule whose ᾱ_T = 0 (only v: x_T then holds no signal, and ε/x₀ are undefined there).
    """

    name: str
    diffusers_name: str
    target: Callable[[torch.Tensor, torch.Tensor, AlphaBar], torch.Tensor]
    to_eps: Callable[[torch.Tensor, torch.Tensor, AlphaBar], torch.Tensor]
    min_snr_weight: Callable[[torch.Tensor, float], torch.Tensor]
    zero_terminal_snr: bool = False


TARGETS: dict[str, Target] = {
    "eps": Target(
        "eps",
        "epsilon",
        lambda x0, eps, ab: eps,
        lambda x_t, out, ab: out,
        lambda snr, gamma: snr.clamp(max=gamma) / snr,
    ),
    "x0": Target("x0", "sample", lambda x0, eps, ab: x0, eps_from_x0, lambda snr, gamma: snr.clamp(max=gamma)),
    "v": Target(
        "v",
        "v_prediction",
        lambda x0, eps, ab: v_from_x0_eps(x0, eps, ab),
        eps_from_v,
        lambda snr, gamma: snr.clamp(max=gamma) / (snr + 1),
        zero_terminal_snr=True,
    ),
}
"""The prediction targets by name: ``eps``, ``x0`` and ``v`` (see :class:`Target`)."""
PREDICTIONS = tuple(TARGETS)


def get_target(prediction: str) -> Target:
    """The :class:`Target` named ``prediction`` (eps | x0 | v); a ValueError names the allowed ones."""
    try:
        return TARGETS[prediction]
    except (KeyError, TypeError):
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}; got {prediction!r}") from None


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


def model_fn_from(model: torch.nn.Module, prediction: str = "eps", schedule=None, **kwargs) -> ModelFn:
    """Wrap a network ``model(x_t, t, **kwargs)`` as ``model_fn(x_t, t) -> ε``.

    ``prediction`` is what the network outputs: ``"eps"``, ``"x0"`` or ``"v"``; the latter two need
    the ``schedule`` to convert. Extra keyword arguments (e.g. ``y=labels``) are bound.
    """
    _check_prediction(prediction, schedule)

    def model_fn(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return eps_from_prediction(model(x_t, t, **kwargs), prediction, x_t, t, schedule)

    return model_fn


def _check_prediction(prediction: str, schedule) -> None:
    get_target(prediction)
    if prediction != "eps" and schedule is None:
        raise ValueError(f"prediction={prediction!r} needs the schedule to convert to eps")


def eps_from_prediction(
    out: torch.Tensor, prediction: str, x_t: torch.Tensor, t: torch.Tensor, schedule
) -> torch.Tensor:
    """ε from a network output ``out`` [N, ...] that predicts ``prediction`` (eps | x0 | v) at
    x_t [N, ...] and timesteps t [N] (integer, or fractional on a σ-grid)."""
    if prediction == "eps":
        return out
    return get_target(prediction).to_eps(x_t, out, schedule.alpha_bars_at(t, x_t))


def prediction_target(prediction: str, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, schedule) -> torch.Tensor:
    """The training target [N, ...] for a network that predicts ``prediction``: ε, x₀ or
    v = √ᾱ_t·ε - √(1-ᾱ_t)·x₀ (Salimans & Ho 2022, eq. 8's target)."""
    _check_prediction(prediction, schedule)
    if prediction == "eps":
        return eps
    return get_target(prediction).target(x0, eps, schedule.gather(schedule.alpha_bars, t, x0))


class EpsNetwork(torch.nn.Module):
    """A network that predicts ε, x₀ or v, seen as one that predicts ε: ``f(x_t, t, y=None) -> ε``
    [N, ...]. Exposes the wrapped network's ``config`` and ``num_classes`` so that code written
    for ε-networks (samplers, guidance wrappers, :func:`ddkit.generate.generate`) takes it as is."""

    def __init__(self, net: torch.nn.Module, prediction: str, schedule):
        super().__init__()
        _check_prediction(prediction, schedule)
        self.net, self.prediction, self.schedule = net, prediction, schedule
        self.config = getattr(net, "config", None)
        self.num_classes = getattr(self.config, "num_classes", None)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return eps_from_prediction(self.net(x_t, t, y), self.prediction, x_t, t, self.schedule)


def eps_network(net: torch.nn.Module, prediction: str, schedule) -> torch.nn.Module:
    """``net`` (which outputs ``prediction``: eps | x0 | v) as an ε-network ``f(x_t, t, y=None) -> ε``
    (an :class:`EpsNetwork`, for "eps" too, so that ``num_classes`` is always there) with the wrapped
    network's ``config`` and ``num_classes``. A network already wrapped is returned as it is."""
    if isinstance(net, EpsNetwork):
        return net
    return EpsNetwork(net, prediction, schedule)
