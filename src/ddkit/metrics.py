"""Compatibility re-exports: the metrics now live in ``ddkit.eval`` (one module per metric).

``ddkit.metrics`` keeps its old names: the Fréchet distance (``ddkit.eval.fid``), the digits feature
network and its training (``ddkit.eval.digits_net``), and ``digits_fid``, which now scores in the
feature space of the shipped network (``ddkit.eval.features.DigitsFeatures``) unless given a net.
"""

from __future__ import annotations

from .eval.digits_net import (
    DigitsFeatureNet,
    digits_images_to_float,
    feature_net_accuracy,
    load_digits_data,
    net_features,
    train_digits_feature_net,
)
from .eval.fid import frechet_distance, frechet_distance_from_stats, gaussian_stats

__all__ = [
    "gaussian_stats",
    "frechet_distance_from_stats",
    "frechet_distance",
    "load_digits_data",
    "digits_images_to_float",
    "DigitsFeatureNet",
    "train_digits_feature_net",
    "feature_net_accuracy",
    "digits_fid",
]


def digits_fid(images, reference=None, net: DigitsFeatureNet | None = None, batch_size: int = 512) -> float:
    """FID of `images` against `reference` in a DigitsFeatureNet feature space.

    images, reference: float [N, 1, 8, 8] in [-1, 1] or uint8 [N, 8, 8, 1] / [N, 8, 8] in [0, 255]
    (see digits_images_to_float); N >= 2. reference defaults to all 1,797 digits (prefer the
    held-out ``ddkit.eval.evaluate_samples(images, "digits:test")``). net defaults to the shipped
    network (trained on digits:train). Lower is better; biased upwards for small N.
    """
    x = digits_images_to_float(images)
    if x.shape[0] < 2:
        raise ValueError(f"images needs at least 2 images, got {x.shape[0]}")
    ref = load_digits_data()[0] if reference is None else digits_images_to_float(reference)
    if ref.shape[0] < 2:
        raise ValueError(f"reference needs at least 2 images, got {ref.shape[0]}")
    if net is None:
        from .eval.features import DigitsFeatures

        net = DigitsFeatures().net
    net.eval()
    return frechet_distance(net_features(net, x, batch_size), net_features(net, ref, batch_size))
