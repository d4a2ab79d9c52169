"""2-D toy data sets at roughly unit scale: a Gaussian mixture (the exact oracle of
:mod:`ddkit.oracle`), two moons, a swiss roll and two circles."""

from __future__ import annotations

import math

import torch

from ..oracle import GaussianMixture

TOY_NAMES = ("gmm", "moons", "swissroll", "circles")
_TOY_NUM_CLASSES = {"gmm": 8, "moons": 2, "swissroll": None, "circles": 2}


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, dtype=torch.float64, generator=generator)


def _moons(n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles (as sklearn's make_moons, noise 0.1, random angles)."""
    labels = (_uniform(n, generator) < 0.5).long()
    theta = math.pi * _uniform(n, generator)
    outer = torch.stack([theta.cos(), theta.sin()], dim=1)
    inner = torch.stack([1 - theta.cos(), 0.5 - theta.sin()], dim=1)
    x = torch.where(labels[:, None] == 0, outer, inner)
    x = x + 0.1 * torch.randn(n, 2, dtype=torch.float64, generator=generator)
    # centre (0.5, 0.25); per-coordinate std becomes about (0.87, 0.51)
    return x - torch.tensor([0.5, 0.25], dtype=torch.float64), labels


def _swissroll(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """A 2-D swiss roll: (t cos t, t sin t) with t ∈ [1.5π, 4.5π], scaled by 1/8."""
    t = 1.5 * math.pi * (1 + 2 * _uniform(n, generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    x = x + 0.5 * torch.randn(n, 2, dtype=torch.float64, generator=generator)
    return x / 8.0


def _circles(n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two concentric circles of radius 1 (label 0) and 0.5 (label 1), noise 0.05."""
    labels = (_uniform(n, generator) < 0.5).long()
    theta = 2 * math.pi * _uniform(n, generator)
    radius = torch.where(labels == 0, 1.0, 0.5).to(torch.float64)
    x = radius[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
    return x + 0.05 * torch.randn(n, 2, dtype=torch.float64, generator=generator), labels


def _check_toy_name(name: str) -> None:
    if name not in TOY_NAMES:
        raise ValueError(f"unknown toy data set {name!r}; allowed: {', '.join(TOY_NAMES)}")


def toy_num_classes(name: str) -> int | None:
    """The number of label classes of a toy set (None when make_toy returns no labels)."""
    _check_toy_name(name)
    return _TOY_NUM_CLASSES[name]


def make_toy(name: str, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample a named 2-D toy data set at roughly unit scale (per-coordinate std 0.5–1).

    name: one of TOY_NAMES. "gmm" is ``GaussianMixture.default_2d()`` (labels = component),
    "moons" (labels = moon), "swissroll" (labels None), "circles" (labels = circle).
    Returns (x: [n, 2] float32, labels: [n] int64 or None).
    """
    _check_toy_name(name)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    labels: torch.Tensor | None
    if name == "gmm":
        x, labels = GaussianMixture.default_2d().sample(n, generator=generator)
    elif name == "moons":
        x, labels = _moons(n, generator)
    elif name == "swissroll":
        x, labels = _swissroll(n, generator), None
    else:
        x, labels = _circles(n, generator)
    return x.to(torch.float32), labels
