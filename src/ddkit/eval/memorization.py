"""Memorisation: are samples closer to the training images than fresh real images are?

Notation (distances in pixel space: images mapped to [-1, 1], u / 127.5 − 1, Euclidean over all
H·W·C values)
--------
    d(x)               distance from image x to its nearest training image
    nn_median          median over the samples of d(sample)
    nn_median_real     median over held-out real images (never trained on) of d(real)
    closer_than_real   share of samples with d(sample) < nn_median_real

Held-out real images score closer_than_real = 0.5 by construction (up to ties), so a model that
draws fresh digits scores about 0.5 and nn_median ≈ nn_median_real; one that copies its training
set scores near 1 with nn_median near 0. The "typical" held-out distance is their median.
"""

from __future__ import annotations

import numpy as np
import torch

from .features import check_images

__all__ = ["nearest_distances", "memorization"]


def _pixels(images: np.ndarray) -> torch.Tensor:
    a = check_images(images)
    return torch.from_numpy(a.reshape(a.shape[0], -1).astype(np.float64) / 127.5 - 1.0)


def nearest_distances(images, train_images, chunk: int = 2048) -> np.ndarray:
    """d(x) for every image (uint8 [N, H, W, C]) to its nearest in train_images (uint8 [M, H, W, C]): [N]."""
    x, t = _pixels(images), _pixels(train_images)
    if x.shape[1] != t.shape[1]:
        raise ValueError(
            f"images and training images differ in size: {list(np.shape(images)[1:])} "
            f"against {list(np.shape(train_images)[1:])}"
        )
    out = [torch.cdist(x[i : i + chunk], t).min(dim=1).values for i in range(0, x.shape[0], chunk)]
    return torch.cat(out).numpy()


def memorization(samples, heldout, train_images) -> dict:
    """nn_median, nn_median_real and closer_than_real (see the module notation) as floats.

    samples [N, H, W, C], heldout [M, H, W, C] (real images the model never saw) and train_images
    [T, H, W, C], all uint8 of one size.
    """
    d_samples = nearest_distances(samples, train_images)
    d_real = nearest_distances(heldout, train_images)
    typical = float(np.median(d_real))
    return {
        "nn_median": float(np.median(d_samples)),
        "nn_median_real": typical,
        "closer_than_real": float((d_samples < typical).mean()),
    }
