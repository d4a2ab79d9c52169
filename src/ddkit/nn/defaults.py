"""The default network for a data set: what ``ddkit train`` and :func:`ddkit.train` build when no
architecture is given. (The config classes' own defaults are the papers' networks: ``UNetConfig``'s
are DDPM's CIFAR-10 UNet.)"""

from __future__ import annotations

from ..checks import ParameterError
from .mlp import MLPConfig
from .unet import UNetConfig

DEFAULT_CHANNELS = 32  # UNet base channels for a data set (why: the docs' "Choosing the defaults")
DEFAULT_MLP_WIDTH = 256
DEFAULT_DROPOUT = 0.0


def default_model_config(
    kind: str,
    shape: tuple[int, ...],
    *,
    channels: int | None = None,
    dropout: float | None = None,
    num_classes: int | None = None,
    augment_dim: int = 0,
) -> UNetConfig | MLPConfig:
    """The network for data of ``kind`` "image" (``shape`` = (C, H, W)) or "points" (``shape`` = (D,)).

    Images of side s ≤ 16 get three levels (8×8 digits: 8, 4, 2 with channel_mult (1, 2, 2)) and
    self-attention at the second; larger images get levels down to 4×4 (at most five; 32×32:
    channel_mult (1, 2, 2, 2)) with self-attention at 16×16, as DDPM does on CIFAR-10. Two residual
    blocks per level, ``channels`` (default 32) wide at the first. Points get a residual MLP
    ``channels`` (default 256) wide. ``augment_dim``: the width of the augmentation labels a UNet
    is told (0: none; :mod:`ddkit.training.augment`).
    """
    if channels is not None and not 1 <= channels <= 4096:
        raise ParameterError(f"`model_channels` must be in [1, 4096], got {channels}")
    if kind == "points":
        if augment_dim:
            raise ParameterError("`augment` (geometric augmentation) is for images, not 2-D points")
        return MLPConfig(dim=shape[0], hidden=channels or DEFAULT_MLP_WIDTH, num_classes=num_classes)
    if kind != "image":
        raise ValueError(f"kind must be 'image' or 'points', got {kind!r}")
    c, size = shape[0], shape[1]
    levels = 3 if size <= 16 else min(5, max(1, size.bit_length() - 2))
    while levels > 1 and size % 2 ** (levels - 1):
        levels -= 1
    mult = (1,) + (2,) * (levels - 1)
    resolutions = [size // 2**i for i in range(levels)]
    attn = (16,) if 16 in resolutions and size > 16 else (resolutions[min(1, levels - 1)],)
    return UNetConfig(
        image_size=size,
        in_channels=c,
        base_channels=channels or DEFAULT_CHANNELS,
        channel_mult=mult,
        num_res_blocks=2,
        attn_resolutions=attn,
        dropout=DEFAULT_DROPOUT if dropout is None else dropout,
        num_classes=num_classes,
        augment_dim=augment_dim,
    )
