"""A residual MLP ε-predictor for low-dimensional toy data (2-D mixtures, spirals, ...).

Shapes: ``N`` batch, ``D`` = ``dim`` data dimensions, ``H`` = ``hidden`` width.

``emb = silu(time_embed(sinusoid(t)) [+ label_embed(y)])``; ``h = in_proj(x)``; each of ``depth``
residual blocks does ``h += fc2(silu(fc1(silu(norm(h))) + emb_proj(emb)))``; the output is
``out_proj(silu(out_norm(h)))`` with ``out_proj`` starting at zero (the fresh model predicts ε = 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import check_timesteps, labels_or_null, timestep_embedding
from .layers import positive_int, zero_

__all__ = ["MLPConfig", "MLPDenoiser"]


@dataclass(frozen=True)
class MLPConfig:
    """Everything that defines an :class:`MLPDenoiser`; the same fields and defaults as its
    arguments. Raises ValueError for invalid values."""

    dim: int = 2
    hidden: int = 256
    depth: int = 4
    num_classes: int | None = None

    def __post_init__(self) -> None:
        positive_int("dim", self.dim)
        if positive_int("hidden", self.hidden) < 2:
            raise ValueError(f"hidden must be an int >= 2 (the time embedding's width), got {self.hidden}")
        positive_int("depth", self.depth)
        if self.num_classes is not None:
            positive_int("num_classes", self.num_classes)


class _Block(nn.Module):
    """Pre-norm residual block with an additive embedding: ``[N, H] -> [N, H]``."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb_proj = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h: ``[N, H]``; emb: ``[N, H]``, already through SiLU."""
        z = self.fc1(F.silu(self.norm(h))) + self.emb_proj(emb)
        return h + self.fc2(F.silu(z))


class MLPDenoiser(nn.Module):
    """Residual MLP predicting ε for ``[N, dim]`` data.

    Args:
        dim: data dimensions ``D``.
        hidden: width ``H`` (also the sinusoidal time embedding's width).
        depth: number of residual blocks.
        num_classes: when set, a label embedding with ``num_classes + 1`` rows is added to the
            time embedding; row ``num_classes`` is the null label (classifier-free guidance).
    """

    def __init__(self, dim: int = 2, hidden: int = 256, depth: int = 4, num_classes: int | None = None):
        super().__init__()
        self.config = MLPConfig(dim, hidden, depth, num_classes)  # validates the arguments
        self.time_embed = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label_embed = nn.Embedding(num_classes + 1, hidden) if num_classes is not None else None
        self.in_proj = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden) for _ in range(depth))
        self.out_norm = nn.LayerNorm(hidden)
        self.out_proj = zero_(nn.Linear(hidden, dim))

    @classmethod
    def from_config(cls, cfg: MLPConfig) -> MLPDenoiser:
        """Build an MLPDenoiser from an :class:`MLPConfig`."""
        if not isinstance(cfg, MLPConfig):
            raise TypeError(f"cfg must be an MLPConfig, got {type(cfg).__name__}")
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)})

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Predict ε.

        Args:
            x: ``[N, D]`` noisy points x_t.
            t: ``[N]`` 0-based training timesteps (LongTensor; used as float).
            y: ``[N]`` labels in ``[0, num_classes]`` (``num_classes`` = null label) or None;
                None on a class-conditional model means the null label for every sample.

        Returns:
            ``[N, D]`` ε̂.
        """
        if x.dim() != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x must have shape [N, {self.config.dim}], got {tuple(x.shape)}")
        check_timesteps(t, x.shape[0])
        y = labels_or_null(y, t, self.config.num_classes)
        emb = self.time_embed(timestep_embedding(t, self.config.hidden).to(x.dtype))
        if self.label_embed is not None:
            emb = emb + self.label_embed(y)
        emb = F.silu(emb)  # [N, H]
        h = self.in_proj(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out_proj(F.silu(self.out_norm(h)))
