"""Held-out evaluation of samples: FID, KID, precision/recall and memorisation in a feature space.

    from ddkit.eval import evaluate_samples
    evaluate_samples(images, "digits:test", metrics=("fid", "kid", "precision_recall", "memorization"))

Modules: ``features`` (FeatureExtractor, the shipped DigitsFeatures and FashionFeatures, Inception from an installed
library), ``fid``, ``kid``, ``precision_recall``, ``memorization``, ``likelihood`` (bits/dim) and
``table`` (quality against sampling steps). Scores compare with data the model never saw: the
default reference is digits:test, and memorisation measures distances to digits:train (for
fashion-mnist:test: to fashion-mnist:train).
"""

from __future__ import annotations

import numpy as np

from .features import DigitsFeatures, FashionFeatures, FeatureExtractor, check_images, default_features, get_features

# the metric functions are imported under private names so that ddkit.eval.fid, .kid, .precision_recall
# and .memorization stay the modules
from .fid import fid as _fid
from .fid import min_samples_fid, reference_stats
from .kid import MIN_SAMPLES_KID
from .kid import kid as _kid
from .memorization import memorization as _memorization
from .precision_recall import DEFAULT_K
from .precision_recall import precision_recall as _precision_recall
from .references import TRAIN_SPLIT, load_reference

__all__ = [
    "evaluate_samples",
    "METRICS",
    "normalize_metrics",
    "FeatureExtractor",
    "DigitsFeatures",
    "FashionFeatures",
    "default_features",
    "get_features",
    "load_reference",
    "min_samples_fid",
    "MIN_SAMPLES_KID",
    "DEFAULT_K",
    "check_counts",
]

# metric name → the keys it adds to evaluate_samples' result
METRICS = {
    "fid": ("fid",),
    "kid": ("kid", "kid_std"),
    "precision_recall": ("precision", "recall"),
    "memorization": ("nn_median", "nn_median_real", "closer_than_real"),
}


def normalize_metrics(metrics) -> tuple[str, ...]:
    """Metric names in METRICS order; ValueError for unknown ones."""
    names = set([metrics] if isinstance(metrics, str) else metrics)
    unknown = sorted(names - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def check_counts(metrics, n: int, m: int, dim: int) -> None:
    """Enough samples (``n``) and reference images (``m``) for each metric in a ``dim``-dimensional
    feature space (FID needs more than ``dim``); a ValueError says how many otherwise."""
    need = {"fid": min_samples_fid(dim), "kid": MIN_SAMPLES_KID, "precision_recall": DEFAULT_K + 1}
    for name in metrics:
        if name in need and min(n, m) < need[name]:
            raise ValueError(
                f"{name} in the {dim}-dimensional feature space needs at least {need[name]} samples "
                f"and reference images, got {n} samples and {m} reference images"
            )


def evaluate_samples(
    images,
    reference="digits:test",
    *,
    metrics=("fid", "kid"),
    features=None,
    train_images=None,
    seed: int = 0,
    cache_dir=None,
    kid_subsets: int = 100,
    kid_subset_size: int | None = None,
) -> dict:
    """Score samples against real reference images the model never saw.

    images: uint8 [N, H, W, C]. reference: a split name ("digits:test", …), a folder, an .npz or a
    uint8 array [M, H, W, C] of the same H, W, C. metrics: among "fid", "kid", "precision_recall",
    "memorization". features: a FeatureExtractor or a name ("digits", "fashion", "inception");
    default :func:`default_features` ("digits" for 8×8, "fashion" for 28×28 grey). train_images:
    uint8 training images for memorisation (default for digits:test: digits:train, for
    fashion-mnist:test: fashion-mnist:train). seed: KID's subsets. cache_dir: where reference statistics are kept.
    Returns {"reference": name, "num": N, and fid, kid, kid_std, precision, recall, nn_median,
    nn_median_real, closer_than_real for the metrics asked for}.
    """
    metrics = normalize_metrics(metrics)
    images = check_images(images)
    ref, ref_name = load_reference(reference)
    if ref.shape[1:] != images.shape[1:]:
        raise ValueError(
            f"samples are {list(images.shape[1:])} (H, W, C) but the reference {ref_name} is {list(ref.shape[1:])}"
        )
    if features is None:
        features = default_features(images.shape[1:])
    if isinstance(features, str):
        features = get_features(features)
    out: dict = {"reference": ref_name, "num": int(images.shape[0])}
    feature_metrics = [m for m in metrics if m != "memorization"]
    if feature_metrics:
        stats = reference_stats(features, ref, cache_dir=cache_dir)
        check_counts(feature_metrics, images.shape[0], ref.shape[0], stats.feats.shape[1])
        feats = np.asarray(features(images), dtype=np.float64)
        if "fid" in metrics:
            out["fid"] = _fid(feats, stats)
        if "kid" in metrics:
            out["kid"], out["kid_std"] = _kid(
                feats, stats.feats, num_subsets=kid_subsets, subset_size=kid_subset_size, seed=seed
            )
        if "precision_recall" in metrics:
            out["precision"], out["recall"] = _precision_recall(stats.feats, feats, k=DEFAULT_K)
    if "memorization" in metrics:
        if train_images is None:
            if ref_name not in TRAIN_SPLIT:
                raise ValueError(
                    "the memorisation metric needs the training images (train_images) for a "
                    f"reference other than {' or '.join(TRAIN_SPLIT)}, got {ref_name}"
                )
            train_images = TRAIN_SPLIT[ref_name]
        train, _ = load_reference(train_images)
        out.update(_memorization(images, ref, train))
    return out
