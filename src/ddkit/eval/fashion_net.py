"""The Fashion-MNIST feature network: a small CNN classifier for clean 28×28 grey images whose
penultimate activations play the role Inception's pool features play for ImageNet-sized images.

    x             float32 [N, 1, 28, 28] in [-1, 1] (ddkit's model space)
    features(x)   [N, feature_dim] (128), the penultimate SiLU activations
    forward(x)    logits [N, 10]

``train_fashion_feature_net`` is what ``scripts/train_fashion_features.py`` runs (on
fashion-mnist:train only) to make the weights shipped in
``ddkit/eval/fashion_features.safetensors``; evaluation loads those
(:class:`ddkit.eval.features.FashionFeatures`) and never trains.
"""

from __future__ import annotations

import torch
from torch import nn

from .digits_net import FeatureNet, _random_shift, conv_stack, fit_classifier

__all__ = ["FashionFeatureNet", "train_fashion_feature_net", "class_accuracy"]


class FashionFeatureNet(FeatureNet):
    """x: [N, 1, 28, 28] in [-1, 1] → features(x): [N, feature_dim] → forward(x): logits [N, 10].

    Three 3×3 convolutions with SiLU, average-pooled 28 → 14 → 7 → 3, then one linear layer to the
    features (BatchNorm-free, so features do not depend on the batch).
    """

    def __init__(self, width: int = 32, feature_dim: int = 128):
        w = width  # [N, 1, 28, 28] → [N, w, 14, 14] → [N, 2w, 7, 7] → [N, 4w, 3, 3]
        super().__init__(conv_stack((1, w, 2 * w, 4 * w), (True, True, True)), 4 * w * 9, feature_dim)


def _augment(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of x [N, 1, H, W] mirrored left–right with probability 1/2 (clothing survives a
    mirror), then shifted by up to max_shift pixels (:func:`ddkit.eval.digits_net._random_shift`)."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return _random_shift(x, max_shift, generator) if max_shift > 0 else x


def train_fashion_feature_net(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    seed: int = 0,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 2e-3,
    max_shift: int = 2,
    log=None,
) -> FashionFeatureNet:
    """Train a FashionFeatureNet on images float32 [N, 1, 28, 28] in [-1, 1] with labels int64 [N],
    deterministic given ``seed`` (the global RNG is left untouched). Adam, cosine decay of the
    learning rate to 0, label smoothing 0.1; augmentation: shifts of up to ``max_shift`` pixels and
    left–right mirrors. ``log(epoch, mean_loss)`` is called after each epoch. Returns the net in eval mode."""
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"images must be [N, 1, 28, 28], got {list(images.shape)}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {list(labels.shape)}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    augment = lambda x, gen: _augment(x, max_shift, gen)  # noqa: E731
    return fit_classifier(
        FashionFeatureNet, images, labels, augment, seed, epochs, batch_size, lr, label_smoothing=0.1, log=log
    )


@torch.no_grad()
def class_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, list]:
    """(overall accuracy, accuracy per class 0..9) of ``net`` on x [N, 1, 28, 28] with labels y [N]."""
    pred = torch.cat([net(x[i : i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])
    right = pred == y
    per_class = [float(right[y == k].double().mean()) if (y == k).any() else float("nan") for k in range(10)]
    return float(right.double().mean()), per_class
