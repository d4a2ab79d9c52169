"""ε-prediction networks: DDPM's UNet for images, a residual MLP for toy data.

Every network is ``model(x_t, t, y=None) -> ε̂`` with ``t`` a LongTensor ``[N]`` of 0-based
training timesteps, and is built from a frozen config dataclass that round-trips through a
JSON-able dict (``{"kind": "unet" | "mlp", ...fields}``) for checkpoints' ``config.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from torch import nn

from .classifier import ClassifierConfig, NoisyClassifier
from .defaults import default_model_config
from .embeddings import timestep_embedding
from .mlp import MLPConfig, MLPDenoiser
from .unet import UNet, UNetConfig

__all__ = [
    "ClassifierConfig",
    "NoisyClassifier",
    "MLPConfig",
    "MLPDenoiser",
    "ModelConfig",
    "UNet",
    "UNetConfig",
    "build_model",
    "config_from_dict",
    "config_to_dict",
    "default_model_config",
    "timestep_embedding",
]

ModelConfig = UNetConfig | MLPConfig | ClassifierConfig

# kind -> (config class, model class); read-only table, never mutated.
_KINDS: dict[str, tuple[type, type]] = {
    "unet": (UNetConfig, UNet),
    "mlp": (MLPConfig, MLPDenoiser),
    "classifier": (ClassifierConfig, NoisyClassifier),
}


def _kind_of(cfg: object) -> str:
    for kind, (cfg_cls, _) in _KINDS.items():
        if type(cfg) is cfg_cls:
            return kind
    names = ", ".join(c.__name__ for c, _ in _KINDS.values())
    raise ValueError(f"cfg must be one of {names}, got {type(cfg).__name__}")


def build_model(cfg: ModelConfig) -> nn.Module:
    """Build the network that ``cfg`` (a UNetConfig or MLPConfig) describes, freshly initialised."""
    return _KINDS[_kind_of(cfg)][1].from_config(cfg)


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """``{"kind": "unet" | "mlp", **fields}`` with tuples as lists: ready for ``json.dump``."""
    out: dict[str, Any] = {"kind": _kind_of(cfg)}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def config_from_dict(d: Mapping[str, Any]) -> ModelConfig:
    """Inverse of :func:`config_to_dict` (lists become tuples again).

    Raises ValueError for a missing or unknown ``"kind"``, unknown fields, missing required
    fields, or invalid values, naming what is allowed.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"config must be a dict, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"config 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    cfg_cls = _KINDS[kind][0]
    fields = dataclasses.fields(cfg_cls)
    allowed = [f.name for f in fields]
    unknown = sorted(set(d) - set(allowed) - {"kind"})
    if unknown:
        raise ValueError(f"unknown {kind} config field(s) {unknown}; allowed fields: {allowed}")
    missing = [f.name for f in fields if f.name not in d and f.default is dataclasses.MISSING]
    if missing:
        raise ValueError(f"{kind} config is missing required field(s) {missing}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "kind"}
    return cfg_cls(**kwargs)
