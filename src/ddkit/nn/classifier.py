"""A noise-conditional classifier p_φ(y | x_t, t) for classifier guidance (Dhariwal & Nichol 2021,
§4 and Appendix: "the downsampling trunk of the UNet model with an attention pool at the 8×8 layer").

The encoder half of DDPM's UNet — ``conv_in``, the down path and the middle block, every residual
block fed the sinusoidal time embedding — built from the UNet's own pieces
(:func:`~ddkit.nn.unet.build_down_path`, :func:`~ddkit.nn.unet.build_middle`), followed by
GroupNorm, SiLU, global average pooling and a linear head: ``classifier(x_t, t) -> logits [N, K]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import check_images, timestep_embedding
from .layers import group_norm, init_ddpm_, positive_int
from .unet import UNetConfig, build_down_path, build_middle, run_down_path, time_embedding_mlp

__all__ = ["ClassifierConfig", "NoisyClassifier"]


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that defines a :class:`NoisyClassifier`. The trunk's fields mean what they mean
    in :class:`~ddkit.nn.UNetConfig`; ``num_classes`` is K, the number of logits."""

    image_size: int
    in_channels: int
    num_classes: int
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (4,)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        positive_int("num_classes", self.num_classes)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for a classifier, got {self.num_classes}")
        trunk = self.trunk()  # validates the trunk's fields, and normalises lists to tuples
        object.__setattr__(self, "channel_mult", trunk.channel_mult)
        object.__setattr__(self, "attn_resolutions", trunk.attn_resolutions)

    def trunk(self) -> UNetConfig:
        """The UNet whose encoder half this classifier is (unconditional: no label embedding)."""
        return UNetConfig(
            self.image_size,
            self.in_channels,
            self.base_channels,
            self.channel_mult,
            self.num_res_blocks,
            self.attn_resolutions,
            self.dropout,
            None,
        )


class NoisyClassifier(nn.Module):
    """``classifier(x_t, t) -> logits [N, K]`` for noisy images x_t ``[N, C, S, S]`` and 0-based
    timesteps t ``[N]``. ``num_classes`` is K (guidance wrappers read it to check labels)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        if not isinstance(config, ClassifierConfig):
            raise TypeError(f"config must be a ClassifierConfig, got {type(config).__name__}")
        self.config = config
        trunk = config.trunk()
        ch, emb_ch = trunk.base_channels, 4 * trunk.base_channels
        self.time_embed = time_embedding_mlp(ch, emb_ch)
        self.conv_in = init_ddpm_(nn.Conv2d(trunk.in_channels, ch, 3, padding=1))
        self.down, _ = build_down_path(trunk, emb_ch)
        width = ch * trunk.channel_mult[-1]
        self.mid = build_middle(width, emb_ch, trunk.dropout)
        self.out_norm = group_norm(width)
        self.head = init_ddpm_(nn.Linear(width, config.num_classes))

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @classmethod
    def from_config(cls, cfg: ClassifierConfig) -> NoisyClassifier:
        return cls(cfg)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """x: ``[N, C, S, S]``; t: ``[N]`` 0-based timesteps. Returns logits ``[N, K]``.
        (``y`` is accepted for the shared network signature and must be None.)"""
        check_images(x, t, self.config)
        if y is not None:
            raise ValueError("a classifier takes no labels (y must be None)")
        emb = F.silu(self.time_embed(timestep_embedding(t, self.config.base_channels).to(x.dtype)))
        h = run_down_path(self.down, self.conv_in(x), emb)[-1]
        for block in self.mid:
            h = block(h, emb)
        h = F.silu(self.out_norm(h)).mean(dim=(2, 3))  # [N, width]
        return self.head(h)
