"""The Fréchet distance (FID when the features are Inception's) and cached reference statistics.

Notation
--------
    f          feature vectors, [N, D]
    μ, Σ       their mean [D] and covariance [D, D] (unbiased, N − 1 in the denominator)
    FD         ||μ_a − μ_b||² + Tr(Σ_a + Σ_b − 2 (Σ_a^½ Σ_b Σ_a^½)^½)   (Heusel et al. 2017, eq. 6;
               Dowson & Landau 1982 for the Fréchet distance between two Gaussians)

All the linear algebra runs in float64 (torch.linalg.eigh; no scipy needed). The estimate is biased
upwards for small N, so compare sample sets of equal size; ``fid`` asks for N > D so that the
sample covariance can be full rank (``min_samples_fid``).

``reference_stats(features, images, cache_dir=...)`` computes a reference split's features and
(μ, Σ) once and keeps them in ``cache_dir`` as an NPZ keyed by the feature space (name and weights
fingerprint) and a hash of the reference pixels.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.npz import savez_atomic

__all__ = [
    "gaussian_stats",
    "frechet_distance_from_stats",
    "frechet_distance",
    "ReferenceStats",
    "reference_stats",
    "min_samples_fid",
    "fid",
]


def _as_float64(a, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    if not (t.is_floating_point() or t.dtype in (torch.uint8, torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real-valued array, got dtype {t.dtype}")
    t = t.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got NaN or inf values")
    return t


def _check_features(feats, name: str) -> torch.Tensor:
    f = _as_float64(feats, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(f.shape)}")
    if f.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 feature vectors to estimate a covariance, got {f.shape[0]}")
    return f


def gaussian_stats(feats) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance of features, in float64.

    feats: [N, D] (tensor or array), N >= 2. Returns (mu: [D], sigma: [D, D]), as `np.cov(f, rowvar=False)`.
    """
    f = _check_features(feats, "feats")
    mu = f.mean(dim=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(sigma: torch.Tensor) -> torch.Tensor:
    """Σ^½ of a symmetric positive semi-definite matrix via eigh; tiny negative eigenvalues → 0."""
    w, v = torch.linalg.eigh(0.5 * (sigma + sigma.T))
    return (v * w.clamp(min=0.0).sqrt()) @ v.T


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """FD between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    mu*: [D]; sigma*: [D, D] symmetric PSD. Tr((Σ1 Σ2)^½) is computed as Tr((Σ1^½ Σ2 Σ1^½)^½), the
    trace of the square root of a symmetric PSD matrix: the sum of the square roots of its
    eigenvalues (negative round-off clamped to 0). Returns a Python float >= 0 up to round-off.
    """
    mu1, mu2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    if mu1.ndim != 1 or mu2.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"mu1 and mu2 must both have shape [D], got {tuple(mu1.shape)} and {tuple(mu2.shape)}")
    d = mu1.shape[0]
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape [{d}, {d}] to match the means, got {tuple(s.shape)}")
    sqrt_s1 = _psd_sqrt(s1)
    m = sqrt_s1 @ s2 @ sqrt_s1
    eig = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp(min=0.0)
    tr_covmean = eig.sqrt().sum()
    diff = mu1 - mu2
    fd = diff @ diff + torch.trace(s1) + torch.trace(s2) - 2.0 * tr_covmean
    return float(fd)


def frechet_distance(feats_a, feats_b) -> float:
    """FD between Gaussians fitted to two feature sets. feats_a: [Na, D], feats_b: [Nb, D]."""
    fa, fb = _check_features(feats_a, "feats_a"), _check_features(feats_b, "feats_b")
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature size D, got {fa.shape[1]} and {fb.shape[1]}")
    return frechet_distance_from_stats(*gaussian_stats(fa), *gaussian_stats(fb))


def min_samples_fid(dim: int) -> int:
    """Fewest samples ``fid`` accepts in a D-dimensional feature space: D + 1 (a full-rank Σ is possible)."""
    return dim + 1


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """A reference split in one feature space: feats [M, D] float64, mu [D], sigma [D, D]."""

    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    key: str


def _cache_key(features, images: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(f"{features.name}|{getattr(features, 'fingerprint', '')}|{images.shape}|{images.dtype}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    return f"{features.name}-{h.hexdigest()[:24]}"


def reference_stats(features, images: np.ndarray, *, cache_dir: str | os.PathLike | None = None) -> ReferenceStats:
    """Features and Gaussian statistics of reference images (uint8 [M, H, W, C]), cached in
    ``cache_dir`` (``fid-stats-<features>-<hash>.npz``, written atomically) when one is given."""
    images = np.asarray(images)
    key = _cache_key(features, images)
    path = Path(cache_dir) / f"fid-stats-{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return ReferenceStats(z["feats"], z["mu"], z["sigma"], key)
    feats = np.asarray(features(images), dtype=np.float64)
    mu, sigma = (t.numpy() for t in gaussian_stats(feats))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        savez_atomic(path, feats=feats, mu=mu, sigma=sigma)
    return ReferenceStats(feats, mu, sigma, key)


def fid(sample_feats, reference: ReferenceStats) -> float:
    """FD between sample features [N, D] and a reference's (μ, Σ); needs N >= D + 1."""
    f = _check_features(sample_feats, "sample features")
    need = min_samples_fid(reference.mu.shape[0])
    if f.shape[0] < need:
        raise ValueError(
            f"FID in a {reference.mu.shape[0]}-dimensional feature space needs at least {need} "
            f"samples, got {f.shape[0]}"
        )
    return frechet_distance_from_stats(*gaussian_stats(f), reference.mu, reference.sigma)
