"""Sinusoidal timestep embeddings, as in DDPM (Ho et al. 2020, ``nn.get_timestep_embedding``).

Notation: ``t`` are 0-based training timesteps, ``dim`` the embedding width, ``half = dim // 2``.
Frequency ``k`` (``0 <= k < half``) is ``f_k = max_period ** (-k / (half - 1))``, so the first
frequency is 1 and the last is ``1 / max_period``. The embedding is ``[sin(t f), cos(t f)]``
(sines first, DDPM's order; improved-diffusion puts the cosines first and divides by ``half``),
padded with one zero column when ``dim`` is odd.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..checks import integer, timestep_batch
from ..checks import labels as check_labels

__all__ = [
    "add_augment_labels",
    "augment_embedding",
    "check_augment_dim",
    "check_images",
    "check_timesteps",
    "labels_or_null",
    "timestep_embedding",
]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000) -> Tensor:
    """DDPM's sinusoidal embedding of timesteps.

    Args:
        t: ``[N]`` timesteps (any integer or float dtype; used as float32, fractions allowed).
        dim: embedding width, an int >= 2.
        max_period: the longest period; sets the lowest frequency ``1 / max_period``.

    Returns:
        ``[N, dim]`` float32 tensor ``[sin(t f_0..f_{half-1}), cos(t f_0..f_{half-1})]``
        (plus one zero column when ``dim`` is odd), on ``t``'s device.
    """
    integer("dim", dim, low=2, what="an int >= 2")
    if not max_period > 0:
        raise ValueError(f"max_period must be > 0, got {max_period!r}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape [N], got {tuple(t.shape)}")
    half = dim // 2
    # DDPM divides by (half - 1) so the last frequency is exactly 1 / max_period.
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) / max(half - 1, 1)
    freqs = torch.exp(-math.log(max_period) * exponent)  # [half]
    args = t.to(torch.float32)[:, None] * freqs[None, :]  # [N, half]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)  # [N, 2 * half]
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def check_timesteps(t: Tensor, n: int) -> None:
    """Raise ValueError unless ``t`` is a real ``[n]`` tensor of timesteps (integer, or fractional)."""
    timestep_batch(t, n, fractional=True, per_sample=False)


def check_images(x: Tensor, t: Tensor, cfg) -> None:
    """Raise ValueError unless ``x`` is ``[N, C, S, S]`` for a network whose config ``cfg`` has
    ``in_channels`` C and ``image_size`` S, and ``t`` its ``[N]`` timesteps."""
    expected = (cfg.in_channels, cfg.image_size, cfg.image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"x must have shape [N, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
    check_timesteps(t, x.shape[0])


def labels_or_null(y: Tensor | None, t: Tensor, num_classes: int | None) -> Tensor | None:
    """Check class labels ``y`` against a model with ``num_classes`` classes; fill in the null label.

    Args:
        y: ``[N]`` int64/int32 labels in ``[0, num_classes]`` (``num_classes`` is the null label)
            or None.
        t: ``[N]`` timesteps of the same batch (gives ``N`` and the device).
        num_classes: the model's class count, None for an unconditional model.

    Returns:
        None for an unconditional model, ``y`` if given, else ``[N]`` int64 filled with
        ``num_classes`` (the null label). Raises ValueError for labels given to an unconditional
        model, a wrong shape or dtype, or values out of range (checked on the CPU only: no
        device sync).
    """
    if num_classes is None:
        if y is not None:
            raise ValueError("y was given but the model is unconditional (num_classes=None)")
        return None
    n = t.shape[0]
    if y is None:
        return torch.full((n,), num_classes, dtype=torch.long, device=t.device)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError(f"y must have shape [N] = [{n}], got {tuple(y.shape)}")
    if y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"y must be an int64 or int32 tensor, got {y.dtype}")
    check_labels(y, num_classes + 1, "y")  # num_classes itself is the null label
    return y


AUGMENT_LABEL_GAIN = 10.0  # the augmentation labels' scale where they enter the embedding


def check_augment_dim(augment_dim) -> int:
    """``augment_dim``: 0 (no augmentation labels) or their width."""
    return integer("augment_dim", augment_dim, low=0, what="an int >= 0 (0: no augmentation labels)")


def augment_embedding(augment_dim: int, dim: int) -> torch.nn.Linear | None:
    """The layer that tells a network which augmentation it sees (EDM §5, non-leaking augmentation):
    bias-free ``Linear(augment_dim → dim)`` initialised to zero, so that a fresh layer changes
    nothing; None when ``augment_dim`` is 0."""
    if augment_dim == 0:
        return None
    layer = torch.nn.Linear(augment_dim, dim, bias=False)
    torch.nn.init.zeros_(layer.weight)
    return layer


def add_augment_labels(emb: Tensor, layer: torch.nn.Linear | None, labels: Tensor | None) -> Tensor:
    """``emb`` [N, dim] plus ``layer(AUGMENT_LABEL_GAIN · labels)`` for augmentation labels
    [N, augment_dim]; ``emb`` itself when no labels are given (zero labels: an image without
    augmentation) or the network has no layer. The gain lets the zero-initialised layer grow fast
    enough to be used: under Adam each weight moves about lr per step whatever its gradient, so the
    labels' share of the embedding grows with the gain (at gain 1 a network still ignored them after
    1,500 steps; docs/generalisation-training.md, "The leak test")."""
    if labels is None:
        return emb
    if layer is None:
        raise ValueError("augment_labels were given but the network has no augmentation layer (augment_dim=0)")
    if labels.dim() != 2 or labels.shape != (emb.shape[0], layer.in_features):
        raise ValueError(
            f"augment_labels must have shape [N, augment_dim] = [{emb.shape[0]}, {layer.in_features}], "
            f"got {tuple(labels.shape)}"
        )
    return emb + layer(AUGMENT_LABEL_GAIN * labels.to(emb.dtype))
