"""The two-sample energy distance (Székely & Rizzo 2013), for point data where FID's feature space
does not exist:

    E(A, B) = 2·E|A - B| - E|A - A'| - E|B - B'|     (0 iff A and B have the same law)

computed over all pairs (the V-statistic, so two finite samples of one law score a small positive
floor; print it beside any result).
"""

from __future__ import annotations

import torch

__all__ = ["energy_distance"]


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """E(A, B) of samples a: [N, ...] and b: [M, ...] (flattened per sample; float64 arithmetic)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.ndim < 1 or b.ndim < 1 or a.shape[0] < 1 or b.shape[0] < 1 or a[0].numel() != b[0].numel():
        raise ValueError(f"energy_distance needs two non-empty sets of equally sized points, got shapes "
                         f"{list(a.shape)} and {list(b.shape)}")
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()
