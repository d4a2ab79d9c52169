"""Building blocks of DDPM's UNet (Ho et al. 2020, TF ``diffusion_utils/unet.py``).

Shapes: ``N`` batch, ``C`` channels, ``H, W`` spatial size, ``E`` width of the timestep embedding.

Initialisation follows DDPM: convolutions and linear layers get ``variance_scaling(1, fan_avg,
uniform)`` (= Xavier-uniform) weights and zero biases; the last convolution of each residual
block and the output projection of each attention block start at zero, so every block starts
as the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import integer

__all__ = [
    "AttentionBlock",
    "Downsample",
    "ResBlock",
    "Upsample",
    "group_norm",
    "init_ddpm_",
    "num_groups",
    "positive_int",
    "zero_",
]

MAX_GROUPS = 32
NORM_EPS = 1e-6  # tf.contrib.layers.group_norm's epsilon, as DDPM used


def positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an int >= 1 (bools excluded), else raise a ValueError naming ``name``."""
    return integer(name, value, low=1, what="a positive int")


def num_groups(channels: int) -> int:
    """GroupNorm group count: the largest divisor of ``channels`` that is <= min(32, channels // 2)
    (at least 1).

    That is DDPM's 32 for every multiple of 32 from 64 up (all widths of the paper's models and
    of diffusers' ``google/ddpm-*``), and a valid grouping for tiny models:
    16 -> 8, 32 -> 16, 48 -> 24, 20 -> 10, 36 -> 18. It never puts one channel in a group:
    with ``groups == channels`` GroupNorm is InstanceNorm, which subtracts each channel's mean
    and so removes the per-channel timestep/label embedding that ResBlock adds right before
    its second norm (a 16/32-channel model would ignore ``t`` entirely).
    """
    positive_int("channels", channels)
    limit = max(1, min(MAX_GROUPS, channels // 2))
    return next(g for g in range(limit, 0, -1) if channels % g == 0)


def group_norm(channels: int) -> nn.GroupNorm:
    """``GroupNorm(num_groups(channels), channels, eps=1e-6)`` with affine parameters."""
    return nn.GroupNorm(num_groups(channels), channels, eps=NORM_EPS)


def zero_(module: nn.Module) -> nn.Module:
    """Set every parameter of ``module`` to zero in place and return it."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


def init_ddpm_(module: nn.Module) -> nn.Module:
    """DDPM's default initialisation for every Conv2d/Linear inside ``module``, in place.

    Weights: Xavier-uniform (``variance_scaling(1.0, "fan_avg", "uniform")`` in TF); biases: 0.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=padding)


class ResBlock(nn.Module):
    """DDPM residual block with an additive timestep embedding.

    ``h = conv1(silu(norm1(x))) + emb_proj(emb)``; ``h = conv2(dropout(silu(norm2(h))))``;
    returns ``shortcut(x) + h`` where ``shortcut`` is a 1x1 conv when the width changes.
    ``conv2`` starts at zero.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, dropout: float):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.emb_proj = nn.Linear(emb_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        init_ddpm_(self)
        zero_(self.conv2)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x: ``[N, C_in, H, W]``; emb: ``[N, E]``, already through SiLU. Returns ``[N, C_out, H, W]``."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb_proj(emb)[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """DDPM's single-head self-attention over the ``H * W`` positions, with a residual.

    ``q, k, v = qkv(norm(x))`` (one fused linear, the same as three 1x1 convs), softmax attention
    scaled by ``C ** -0.5`` (``scaled_dot_product_attention``), then ``x + proj_out(attn)``.
    ``proj_out`` starts at zero.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = nn.Linear(channels, channels)
        init_ddpm_(self)
        with torch.no_grad():  # DDPM's q, k, v are three [C, C] layers: fan_avg per layer
            for w in self.qkv.weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(w)
        zero_(self.proj_out)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``[N, C, H, W]`` -> ``[N, C, H, W]``."""
        n, c, height, width = x.shape
        h = self.norm(x).reshape(n, c, height * width).transpose(1, 2)  # [N, HW, C]
        q, k, v = self.qkv(h).unsqueeze(1).chunk(3, dim=-1)  # 3 x [N, 1, HW, C]
        h = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # [N, HW, C]
        h = self.proj_out(h).transpose(1, 2).reshape(n, c, height, width)
        return x + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv halving ``H, W``; pads one row/column at the bottom/right first, like
    TF's ``SAME`` padding that DDPM used (``[N, C, H, W] -> [N, C, H/2, W/2]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _conv3x3(channels, channels, stride=2, padding=0)
        init_ddpm_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv (``[N, C, H, W] -> [N, C, 2H, 2W]``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = _conv3x3(channels, channels)
        init_ddpm_(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
