"""The two-sample energy distance (Székely & Rizzo 2013), for point data where FID's feature space
does not exist:

    E(A, B) = 2·E|A - B| - E|A - A'| - E|B - B'|     (0 iff A and B have the same law)

:func:`energy_distance` averages over all pairs by default (the V-statistic, so two finite samples
of one law score a small positive floor, about (E|A-A'| + E|B-B'|)/N; print it beside any result);
``unbiased=True`` leaves out the zero self-pairs (the U-statistic: mean 0 for one law, either sign).
:func:`energy_distance_to_mixture` scores samples against a Gaussian mixture's exact law, with
E|A - Y| and E|Y - Y'| in closed form: no second sample, no floor, and only the samples' own noise.
"""

from __future__ import annotations

import torch

from ..oracle import GaussianMixture

__all__ = ["energy_distance", "energy_distance_to_mixture"]

_CHUNK = 2048  # rows of a distance block: memory stays O(chunk·M) for large sets


def _mean_cdist(a: torch.Tensor, b: torch.Tensor, *, skip_diagonal: bool = False) -> torch.Tensor:
    """The mean of |a_i - b_j| over all pairs (a, b: [N, D], [M, D] float64), in row blocks; with
    ``skip_diagonal`` (a is b) over the N(N-1) pairs i ≠ j."""
    total = a.new_zeros(())
    for i in range(0, a.shape[0], _CHUNK):
        total = total + torch.cdist(a[i : i + _CHUNK], b).sum()
    if skip_diagonal:
        return total / (a.shape[0] * (a.shape[0] - 1))
    return total / (a.shape[0] * b.shape[0])


def _as_points(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a set of at least 2 points [N, ...], got shape {list(x.shape)}")
    return x.double().reshape(x.shape[0], -1)


def energy_distance(a: torch.Tensor, b: torch.Tensor, *, unbiased: bool = False) -> float:
    """E(A, B) of samples a: [N, ...] and b: [M, ...] (flattened per sample; float64 arithmetic).

    ``unbiased``: the U-statistic (self-pairs i = j left out of E|A - A'| and E|B - B'|)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim < 1 or b.ndim < 1 or a.shape[0] < 1 or b.shape[0] < 1 or a[0].numel() != b[0].numel():
        raise ValueError(
            f"energy_distance needs two non-empty sets of equally sized points, got shapes "
            f"{list(a.shape)} and {list(b.shape)}"
        )
    if unbiased and min(a.shape[0], b.shape[0]) < 2:
        raise ValueError("energy_distance(unbiased=True) needs at least 2 points in each set")
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    return (
        2 * _mean_cdist(a, b) - _mean_cdist(a, a, skip_diagonal=unbiased) - _mean_cdist(b, b, skip_diagonal=unbiased)
    ).item()


def energy_distance_to_mixture(a: torch.Tensor, mixture: GaussianMixture) -> float:
    """E(A, Y) of samples a: [N, D] against the exact law Y of a 1- or 2-D Gaussian mixture:

        2·mean_i E|a_i - Y| - mean_{i≠j} |a_i - a_j| - E|Y - Y'|

    with both expectations over Y in closed form (:meth:`GaussianMixture.mean_distance`,
    :meth:`~GaussianMixture.self_distance`). Unbiased: its mean over draws of A is the true energy
    distance, 0 when A ~ Y."""
    a = _as_points(a, "a")
    if a.shape[1] != mixture.dim:
        raise ValueError(f"a must have shape [N, {mixture.dim}] (the mixture's dimension), got {list(a.shape)}")
    return (
        2 * mixture.mean_distance(a).mean() - _mean_cdist(a, a, skip_diagonal=True)
    ).item() - mixture.self_distance()
