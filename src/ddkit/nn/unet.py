"""DDPM's UNet ε-predictor (Ho et al. 2020, TF ``diffusion_utils/unet.py``, ``unet.model``).

A PixelCNN++-style UNet: ``L = len(channel_mult)`` levels at resolutions
``image_size / 2**i``; each level has ``num_res_blocks`` residual blocks on the way down and
``num_res_blocks + 1`` on the way up (consuming the skip connections), self-attention after every
residual block at a resolution in ``attn_resolutions``, and a ResBlock-Attention-ResBlock middle.
With the CIFAR-10 configuration, ``UNet(32, 3)``, it has DDPM's 35.7M parameters (35,746,307,
the same as diffusers' ``UNet2DModel`` for ``google/ddpm-cifar10-32``).

Shapes: ``N`` batch, ``C`` = ``in_channels``, ``S`` = ``image_size``, ``ch`` = ``base_channels``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import invalid
from .embeddings import (
    add_augment_labels,
    augment_embedding,
    check_augment_dim,
    check_images,
    labels_or_null,
    timestep_embedding,
)
from .layers import (
    AttentionBlock,
    Downsample,
    ResBlock,
    Upsample,
    group_norm,
    init_ddpm_,
    positive_int,
    zero_,
)

__all__ = ["UNet", "UNetConfig"]


def _int_tuple(name: str, value: object, *, allow_empty: bool) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be a tuple of positive ints, got {value!r}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(positive_int(f"{name} entries", v) for v in value)


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a :class:`UNet`; the same fields and defaults as its arguments.

    Lists given for ``channel_mult`` / ``attn_resolutions`` are stored as tuples. Raises
    ValueError for invalid values (see :meth:`resolutions` for the reachable resolutions).
    """

    image_size: int
    in_channels: int
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    dropout: float = 0.1
    num_classes: int | None = None
    augment_dim: int = 0

    def __post_init__(self) -> None:
        positive_int("image_size", self.image_size)
        positive_int("in_channels", self.in_channels)
        positive_int("base_channels", self.base_channels)
        positive_int("num_res_blocks", self.num_res_blocks)
        mult = _int_tuple("channel_mult", self.channel_mult, allow_empty=False)
        attn = _int_tuple("attn_resolutions", self.attn_resolutions, allow_empty=True)
        object.__setattr__(self, "channel_mult", mult)
        object.__setattr__(self, "attn_resolutions", attn)
        factor = 2 ** (len(mult) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size must be divisible by 2**(len(channel_mult) - 1) = {factor} "
                f"(len(channel_mult) = {len(mult)}), got {self.image_size}"
            )
        bad = [r for r in attn if r not in self.resolutions]
        if bad:
            raise ValueError(f"attn_resolutions must be among the reachable resolutions {self.resolutions}, got {bad}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise invalid("dropout", f"must be a number in [0, 1), got {self.dropout!r}")
        if self.num_classes is not None:
            positive_int("num_classes", self.num_classes)
        check_augment_dim(self.augment_dim)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Resolution of each level: ``(S, S/2, ..., S/2**(L-1))``."""
        return tuple(self.image_size // 2**i for i in range(len(self.channel_mult)))


class _ResAttn(nn.Module):
    """A ResBlock, followed by self-attention when ``attn``."""

    def __init__(self, in_ch: int, out_ch: int, emb_ch: int, dropout: float, attn: bool):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_ch, dropout)
        self.attn = AttentionBlock(out_ch) if attn else None

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.res(x, emb)
        return h if self.attn is None else self.attn(h)


class _Level(nn.Module):
    """One resolution of the down or up path: blocks, then an optional resampler."""

    def __init__(self, blocks: list[_ResAttn], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


def time_embedding_mlp(ch: int, emb_ch: int) -> nn.Sequential:
    """Linear(ch → emb_ch), SiLU, Linear(emb_ch → emb_ch) applied to the sinusoidal embedding."""
    return init_ddpm_(nn.Sequential(nn.Linear(ch, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch)))


def build_down_path(cfg: UNetConfig, emb_ch: int) -> tuple[nn.ModuleList, list[int]]:
    """The UNet's down path (one :class:`_Level` per resolution) and the width of every skip
    connection it pushes, in push order. Shared by :class:`UNet` and the noisy classifier."""
    width = cfg.base_channels
    skips = [width]
    down = nn.ModuleList()
    for i, (mult, res) in enumerate(zip(cfg.channel_mult, cfg.resolutions)):
        blocks = []
        for _ in range(cfg.num_res_blocks):
            out = cfg.base_channels * mult
            attn = res in cfg.attn_resolutions
            blocks.append(_ResAttn(width, out, emb_ch, cfg.dropout, attn))
            width = out
            skips.append(width)
        last = i == len(cfg.channel_mult) - 1
        down.append(_Level(blocks, None if last else Downsample(width)))
        if not last:
            skips.append(width)
    return down, skips


def build_middle(width: int, emb_ch: int, dropout: float) -> nn.ModuleList:
    """The middle block: ResBlock, self-attention, ResBlock."""
    return nn.ModuleList(
        [_ResAttn(width, width, emb_ch, dropout, True), _ResAttn(width, width, emb_ch, dropout, False)]
    )


def run_down_path(down: nn.ModuleList, h: Tensor, emb: Tensor) -> list[Tensor]:
    """Every activation of the down path, in order (the skip connections); the last is the
    input of the middle block. h: ``[N, ch, S, S]`` after ``conv_in``; emb: ``[N, 4ch]`` (SiLU'd)."""
    hs = [h]
    for level in down:
        for block in level.blocks:
            hs.append(block(hs[-1], emb))
        if level.resample is not None:
            hs.append(level.resample(hs[-1]))
    return hs


class UNet(nn.Module):
    """DDPM's UNet predicting ε from ``(x_t, t)`` and, optionally, a class label.

    Args:
        image_size: side ``S`` of the square inputs; divisible by ``2**(len(channel_mult) - 1)``.
        in_channels: image channels ``C`` (also the output channels).
        base_channels: width ``ch`` of level 0; level ``i`` has ``ch * channel_mult[i]``.
        channel_mult: width multiplier per level.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: resolutions (among ``S / 2**i``) that get self-attention.
        dropout: dropout rate inside the residual blocks.
        num_classes: when set, a label embedding with ``num_classes + 1`` rows is added to the
            time embedding; row ``num_classes`` is the null label (classifier-free guidance).
        augment_dim: when > 0, the width of the augmentation labels (non-leaking augmentation,
            EDM §5): a bias-free linear layer, initialised to zero, adds them to the sinusoidal time
            embedding (before its MLP, as EDM does); labels left out count as zero.

    GroupNorm uses the largest divisor of the width that is <= min(32, width // 2) as its group
    count: 32 for the paper's widths, never one channel per group for tiny models (see
    :func:`ddkit.nn.layers.num_groups`).
    """

    def __init__(
        self,
        image_size: int,
        in_channels: int,
        base_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        dropout: float = 0.1,
        num_classes: int | None = None,
        augment_dim: int = 0,
    ):
        super().__init__()
        cfg = UNetConfig(
            image_size, in_channels, base_channels, channel_mult, num_res_blocks,
            attn_resolutions, dropout, num_classes, augment_dim,
        )  # fmt: skip
        self.config = cfg
        ch, emb_ch = cfg.base_channels, 4 * cfg.base_channels
        self.time_embed = time_embedding_mlp(ch, emb_ch)
        self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_ch) if cfg.num_classes is not None else None
        self.conv_in = init_ddpm_(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))
        self.down, skips = build_down_path(cfg, emb_ch)
        self.mid = build_middle(ch * cfg.channel_mult[-1], emb_ch, cfg.dropout)
        self._build_up(cfg, emb_ch, skips)
        self.out_norm = group_norm(ch)
        self.out_conv = zero_(nn.Conv2d(ch, cfg.in_channels, 3, padding=1))
        # last, so that every other weight is drawn as without it (the same seed, the same network)
        self.augment_embed = augment_embedding(cfg.augment_dim, ch)

    def _build_up(self, cfg: UNetConfig, emb_ch: int, skips: list[int]) -> None:
        """Create ``self.up`` (deepest level first), consuming ``skips`` from the end."""
        skips = list(skips)
        width = cfg.base_channels * cfg.channel_mult[-1]
        self.up = nn.ModuleList()
        for i in reversed(range(len(cfg.channel_mult))):
            out = cfg.base_channels * cfg.channel_mult[i]
            attn = cfg.resolutions[i] in cfg.attn_resolutions
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(_ResAttn(width + skips.pop(), out, emb_ch, cfg.dropout, attn))
                width = out
            self.up.append(_Level(blocks, Upsample(width) if i > 0 else None))

    @classmethod
    def from_config(cls, cfg: UNetConfig) -> UNet:
        """Build a UNet from a :class:`UNetConfig`."""
        if not isinstance(cfg, UNetConfig):
            raise TypeError(f"cfg must be a UNetConfig, got {type(cfg).__name__}")
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, *, augment_labels: Tensor | None = None) -> Tensor:
        """Predict ε.

        Args:
            x: ``[N, C, S, S]`` noisy images x_t.
            t: ``[N]`` 0-based training timesteps (LongTensor; used as float; fractions allowed).
            y: ``[N]`` labels in ``[0, num_classes]`` (``num_classes`` = null label) or None;
                None on a class-conditional model means the null label for every sample.
            augment_labels: ``[N, augment_dim]`` augmentation labels (training with
                augmentation), or None: zero labels, an image without augmentation.

        Returns:
            ``[N, C, S, S]`` ε̂.
        """
        check_images(x, t, self.config)
        y = labels_or_null(y, t, self.config.num_classes)
        emb = timestep_embedding(t, self.config.base_channels).to(x.dtype)
        emb = self.time_embed(add_augment_labels(emb, self.augment_embed, augment_labels))
        if self.label_embed is not None:
            emb = emb + self.label_embed(y)
        emb = F.silu(emb)  # [N, 4ch]; every ResBlock starts with SiLU(emb), computed once here
        hs = run_down_path(self.down, self.conv_in(x), emb)
        h = hs[-1]
        for block in self.mid:
            h = block(h, emb)
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), emb)
            if level.resample is not None:
                h = level.resample(h)
        return self.out_conv(F.silu(self.out_norm(h)))
