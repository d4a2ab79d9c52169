"""Improved precision and recall (Kynkäänniemi et al. 2019): k-nearest-neighbour manifolds, k = 3.

Notation
--------
    φ_r (r < M), φ_g (g < N)   real and generated feature vectors, [M, D] and [N, D]
    NN_k(φ, Φ)                 distance from φ to its k-th nearest neighbour in Φ (itself excluded)
    f(φ, Φ)                    1 if ||φ − φ'|| <= NN_k(φ', Φ) for some φ' ∈ Φ, else 0   (paper eq. 1)
    precision                  mean_g f(φ_g, Φ_r)     (how many samples look real)
    recall                     mean_r f(φ_r, Φ_g)     (how much of the real data the samples cover)

Guidance and truncation raise precision at the cost of recall; FID alone hides the trade.
Identical sets score (1, 1); well-separated sets (0, 0). Distances are Euclidean, float64.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["knn_radii", "manifold_coverage", "precision_recall", "DEFAULT_K"]

DEFAULT_K = 3


def _pairwise(a: torch.Tensor, b: torch.Tensor, chunk: int = 4096):
    """Yield (start, distances [chunk, Nb]) between rows of a and all rows of b, float64."""
    for i in range(0, a.shape[0], chunk):
        yield i, torch.cdist(a[i : i + chunk], b)


def knn_radii(feats: torch.Tensor, k: int) -> torch.Tensor:
    """NN_k of every row of feats [M, D] among the others: [M] (the self-distance 0 is skipped)."""
    out = torch.empty(feats.shape[0], dtype=torch.float64)
    for i, d in _pairwise(feats, feats):
        out[i : i + d.shape[0]] = d.kthvalue(k + 1, dim=1).values
    return out


def manifold_coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
    """Share of queries [Q, D] inside at least one ball (support [S, D], radii [S])."""
    inside = torch.zeros(queries.shape[0], dtype=torch.bool)
    for i, d in _pairwise(queries, support):
        inside[i : i + d.shape[0]] = (d <= radii[None, :]).any(dim=1)
    return float(inside.double().mean())


def precision_recall(real_feats, fake_feats, *, k: int = DEFAULT_K) -> tuple[float, float]:
    """(precision, recall) of fake_feats [N, D] against real_feats [M, D]; needs M, N >= k + 1."""
    real = torch.as_tensor(np.asarray(real_feats), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake_feats), dtype=torch.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"precision/recall needs features [M, D] and [N, D] of one D, got {list(real.shape)} and {list(fake.shape)}"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if min(real.shape[0], fake.shape[0]) < k + 1:
        raise ValueError(
            f"precision/recall with k = {k} needs at least {k + 1} samples in each set, "
            f"got {fake.shape[0]} samples and {real.shape[0]} reference images"
        )
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    recall = manifold_coverage(real, fake, knn_radii(fake, k))
    return precision, recall
