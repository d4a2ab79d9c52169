"""Kernel Inception Distance (Bińkowski et al. 2018): the unbiased estimate of the squared maximum
mean discrepancy with the cubic polynomial kernel, averaged over random subsets.

Notation
--------
    x_i (i < m), y_j (j < n)   feature vectors of the two sets, [m, D] and [n, D]
    k(a, b)                    (a·b / D + 1)³
    MMD²_u                     1/(m(m−1)) Σ_{i≠i'} k(x_i, x_i') + 1/(n(n−1)) Σ_{j≠j'} k(y_j, y_j')
                                 − 2/(m n) Σ_{i,j} k(x_i, y_j)            (Gretton et al. 2012, eq. 3)

MMD²_u is unbiased for every set size, so, unlike FID, its expectation does not depend on N; it can be
negative (its expectation is 0 when both sets come from one distribution). ``kid`` returns the mean
and standard deviation over ``num_subsets`` subsets of ``subset_size`` features drawn without
replacement from each set (torch-fidelity's and the paper's protocol; the sd is the spread of one
subset's estimate, not the standard error of the mean).
"""

from __future__ import annotations

import numpy as np

__all__ = ["polynomial_kernel", "mmd2_unbiased", "kid", "default_subset_size", "MIN_SAMPLES_KID"]

MIN_SAMPLES_KID = 2
_PRECOMPUTE_MAX = 4096  # sets up to this size: whole kernel matrices (at most 128 MiB each)


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a_i, b_j) = (a_i·b_j / D + 1)³ for a: [m, D], b: [n, D] → [m, n], float64."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = kxy.shape
    term_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_x + term_y - 2.0 * kxy.mean())


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """MMD²_u between feature sets x: [m, D] and y: [n, D] (m, n >= 2), cubic polynomial kernel."""
    return _mmd2_from_kernels(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))


def default_subset_size(na: int, nb: int) -> int:
    """min(1000, ⌊min(Na, Nb) / 2⌋), at least 2: subsets of half the smaller set differ from draw to
    draw, so their spread means something even when a set has only a few hundred images."""
    return max(MIN_SAMPLES_KID, min(1000, min(na, nb) // 2))


def kid(
    feats_a, feats_b, *, num_subsets: int = 100, subset_size: int | None = None, seed: int = 0
) -> tuple[float, float]:
    """(mean, sd) of MMD²_u over subsets. feats_a: [Na, D], feats_b: [Nb, D]; each subset takes
    min(subset_size, Na) rows of a and min(subset_size, Nb) rows of b without replacement, drawn by
    ``numpy.random.default_rng(seed)``; subset_size defaults to ``default_subset_size(Na, Nb)``.
    Needs Na, Nb >= 2."""
    a, b = np.asarray(feats_a, dtype=np.float64), np.asarray(feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs features [Na, D] and [Nb, D] of one D, got {list(a.shape)} and {list(b.shape)}")
    if min(a.shape[0], b.shape[0]) < MIN_SAMPLES_KID:
        raise ValueError(f"KID needs at least {MIN_SAMPLES_KID} samples in each set, got {a.shape[0]} and {b.shape[0]}")
    if subset_size is None:
        subset_size = default_subset_size(a.shape[0], b.shape[0])
    if num_subsets < 1 or subset_size < 2:
        raise ValueError(f"num_subsets must be >= 1 and subset_size >= 2, got {num_subsets} and {subset_size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("KID features must be finite, got NaN or inf values")
    rng = np.random.default_rng(seed)
    ma, mb = min(subset_size, a.shape[0]), min(subset_size, b.shape[0])
    subsets = [
        (rng.choice(a.shape[0], ma, replace=False), rng.choice(b.shape[0], mb, replace=False))
        for _ in range(num_subsets)
    ]
    if max(a.shape[0], b.shape[0]) <= _PRECOMPUTE_MAX:  # kernels once, then index: same numbers, faster
        kaa, kbb, kab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
        values = np.array(
            [_mmd2_from_kernels(kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]) for i, j in subsets]
        )
    else:
        values = np.array([mmd2_unbiased(a[i], b[j]) for i, j in subsets])
    return float(values.mean()), float(values.std(ddof=1) if num_subsets > 1 else 0.0)
