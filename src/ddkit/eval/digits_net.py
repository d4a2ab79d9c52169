"""The digits feature network: a small CNN classifier for clean 8×8 digits whose penultimate
activations play the role Inception's pool features play for ImageNet-sized images.

    x             float32 [N, 1, 8, 8] in [-1, 1] (ddkit's model space)
    features(x)   [N, feature_dim] (128), the penultimate SiLU activations
    forward(x)    logits [N, 10]

``train_digits_feature_net`` is what ``scripts/train_digits_features.py`` runs (on digits:train
only) to make the weights shipped in ``ddkit/eval/digits_features.safetensors``; evaluation loads
those (``ddkit.eval.features.DigitsFeatures``) and never trains.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import load_digits

__all__ = [
    "load_digits_data",
    "digits_images_to_float",
    "FeatureNet",
    "DigitsFeatureNet",
    "fit_classifier",
    "train_digits_feature_net",
    "feature_net_accuracy",
    "net_features",
]


def load_digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 8×8 digits: (x: float32 [1797, 1, 8, 8] in [-1, 1], y: int64 [1797])."""
    ds = load_digits()
    return ds.x, ds.y


def digits_images_to_float(images) -> torch.Tensor:
    """Bring digit images into the form the feature net reads: float32 [N, 1, 8, 8] in [-1, 1].

    Accepted inputs (tensor or numpy array):
      * floating point [N, 1, 8, 8] in [-1, 1] (ddkit's model space), used as is;
      * uint8 [N, 8, 8, 1] or [N, 8, 8] in [0, 255] (saved PNG pixels), mapped by x / 255 * 2 − 1.
    Raises ValueError for other shapes or dtypes and for non-finite values.
    """
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    t = t.detach().cpu()
    if t.dtype == torch.uint8:
        if t.ndim == 3:
            t = t.unsqueeze(-1)
        if t.ndim != 4 or tuple(t.shape[1:]) != (8, 8, 1):
            raise ValueError(f"uint8 images must have shape [N, 8, 8, 1] or [N, 8, 8], got {tuple(t.shape)}")
        return (t.permute(0, 3, 1, 2).float() / 255.0) * 2.0 - 1.0
    if not t.is_floating_point():
        raise ValueError(
            f"images must be floating point [N, 1, 8, 8] in [-1, 1] or uint8 [N, 8, 8, 1], got dtype {t.dtype}"
        )
    if t.ndim != 4 or tuple(t.shape[1:]) != (1, 8, 8):
        raise ValueError(f"float images must have shape [N, 1, 8, 8], got {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError("images must be finite, got NaN or inf values")
    return t.float()


def conv_stack(channels: tuple[int, ...], pooled: tuple[bool, ...]) -> nn.Sequential:
    """3×3 convolutions (padding 1) through ``channels`` (c_in, c_1, …), each followed by SiLU and,
    where ``pooled`` says, a 2×2 average pool."""
    layers = []
    for c_in, c_out, pool in zip(channels, channels[1:], pooled):
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.SiLU()] + ([nn.AvgPool2d(2)] if pool else [])
    return nn.Sequential(*layers)


class FeatureNet(nn.Module):
    """A small CNN classifier whose penultimate layer is a feature space: ``conv`` (ending in
    ``flat`` values per image) → linear to ``feature_dim`` → SiLU (the features) → 10 logits."""

    def __init__(self, conv: nn.Sequential, flat: int, feature_dim: int):
        super().__init__()
        self.feature_dim = feature_dim
        self.conv = conv
        self.fc = nn.Linear(flat, feature_dim)
        self.head = nn.Linear(feature_dim, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations, [N, feature_dim]."""
        return F.silu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitsFeatureNet(FeatureNet):
    """A small CNN classifier for clean 8×8 digits; its penultimate layer is the FID feature space.

    x: [N, 1, 8, 8] in [-1, 1] → features(x): [N, feature_dim] → forward(x): logits [N, 10].
    """

    def __init__(self, width: int = 32, feature_dim: int = 128):
        w = width  # [N, 1, 8, 8] → [N, w, 8, 8] → [N, 2w, 4, 4] → [N, 2w, 2, 2]
        super().__init__(conv_stack((1, w, 2 * w, 2 * w), (False, True, True)), 2 * w * 4, feature_dim)


def _random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to max_shift pixels in each direction, filling with background (-1)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]  # [N, 1, H, 1]
    out = padded.gather(2, rows.expand(n, x.shape[1], h, w + 2 * max_shift))
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, x.shape[1], h, w)
    return out.gather(3, cols)


def train_digits_feature_net(
    seed: int = 0,
    epochs: int = 40,
    device: str | torch.device = "cpu",
    images: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    batch_size: int = 128,
    lr: float = 1e-2,
    max_shift: int = 1,
) -> DigitsFeatureNet:
    """Train a DigitsFeatureNet on the digits (all 1,797 by default), deterministic given `seed`.

    images: float [N, 1, 8, 8] in [-1, 1] and labels: int64 [N] to train on a subset (e.g. to measure
    held-out accuracy); both or neither. Augmentation: random shifts of up to `max_shift` pixels.
    Adam with a cosine learning-rate decay. Returns the net in eval mode on `device`. The global
    RNG is left untouched.
    """
    if (images is None) != (labels is None):
        raise ValueError("pass both images and labels, or neither")
    if images is None:
        images, labels = load_digits_data()
    images = digits_images_to_float(images)
    labels = torch.as_tensor(labels, dtype=torch.int64).cpu()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape [{images.shape[0]}], got {tuple(labels.shape)}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")

    shift = (lambda x, gen: _random_shift(x, max_shift, gen)) if max_shift > 0 else (lambda x, gen: x)
    return fit_classifier(DigitsFeatureNet, images, labels, shift, seed, epochs, batch_size, lr, device=device)


def fit_classifier(
    make_net, images, labels, augment, seed, epochs, batch_size, lr, *, device="cpu", label_smoothing=0.0, log=None
) -> nn.Module:
    """Train ``make_net()`` (built under ``torch.manual_seed(seed)``, the global RNG left untouched)
    on images [N, ...] with labels int64 [N] by cross-entropy: Adam with a cosine decay of the
    learning rate to 0 over ``epochs``, batches in a random order and ``augment(x, generator)``
    from one generator seeded with ``seed``. ``log(epoch, mean_loss)`` after each epoch. Returns the
    net in eval mode on ``device``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_net()
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * math.ceil(images.shape[0] / batch_size))
    for epoch in range(epochs):
        perm = torch.randperm(images.shape[0], generator=gen)
        total, count = 0.0, 0
        for i in range(0, images.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            logits = net(augment(images[idx], gen).to(device))
            loss = F.cross_entropy(logits, labels[idx].to(device), label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + float(loss.detach()) * len(idx), count + len(idx)
        if log is not None:
            log(epoch, total / count)
    return net.eval()


def _net_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def net_features(net: DigitsFeatureNet, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Penultimate features of float images x [N, 1, 8, 8], in float64 on the CPU: [N, feature_dim]."""
    dev = _net_device(net)
    out = [net.features(x[i : i + batch_size].to(dev)).double().cpu() for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out)


@torch.no_grad()
def feature_net_accuracy(net: DigitsFeatureNet, images, labels, batch_size: int = 512) -> float:
    """Fraction of `images` (see digits_images_to_float) that `net` classifies as `labels`."""
    x = digits_images_to_float(images)
    y = torch.as_tensor(labels, dtype=torch.int64).cpu()
    dev = _net_device(net)
    pred = torch.cat([net(x[i : i + batch_size].to(dev)).argmax(1).cpu() for i in range(0, x.shape[0], batch_size)])
    return float((pred == y).double().mean())
