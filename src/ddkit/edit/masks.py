"""Inpainting masks: 1 (True) where a value is known, 0 where the model fills it in.

    mask  bool [N or 1, 1 or C, H, W] for images x: [N, C, H, W]; any shape that broadcasts
          against the samples [N, ...] otherwise (e.g. [1, D] for points)

The built-in masks are named by the region they fill (:data:`MASK_PRESETS`): ``lower-half``
fills the lower half and keeps the upper half exactly.
"""

from __future__ import annotations

import torch

from ..checks import ParameterError, is_int
from ..rng import Generator, randn

MASK_PRESETS = ("lower-half", "upper-half", "left-half", "right-half", "center", "random:P")


def _random_share(name: str) -> float:
    try:
        p = float(name.split(":", 1)[1])
    except ValueError:
        p = -1.0
    if not 0.0 < p < 1.0:
        raise ParameterError(f"`mask_preset` random:P needs a share P in (0, 1) of the pixels to fill, got {name!r}")
    return p


def check_preset(name: str) -> str:
    """``name`` if it names a built-in mask (:data:`MASK_PRESETS`; ``random:P`` with 0 < P < 1)."""
    if isinstance(name, str) and name.startswith("random:"):
        _random_share(name)
        return name
    if name not in MASK_PRESETS[:-1]:
        raise ParameterError(f"`mask_preset` must be one of {', '.join(MASK_PRESETS)}, got {name!r}")
    return name


def mask_preset(name: str, num: int, height: int, width: int, *, generator: Generator = None) -> torch.Tensor:
    """The built-in mask ``name`` for ``num`` images of height × width: bool [num, 1, H, W], True = known.

    ``lower-half`` fills rows H//2 … H-1 (keeps the upper half), ``upper-half`` rows 0 … ⌈H/2⌉-1,
    ``left-half``/``right-half`` the same for columns, ``center`` the central block of half the
    height and width; ``random:P`` fills round(P·H·W) pixels (at least one, never all) chosen for
    each image from ``generator`` (per-sample generators: image i's mask depends on its own)."""
    check_preset(name)
    for label, v in (("num", num), ("height", height), ("width", width)):
        if not is_int(v) or v < 1:
            raise ValueError(f"{label} must be a positive integer, got {v!r}")
    fill = torch.zeros(height, width, dtype=torch.bool)
    if name == "lower-half":
        fill[height // 2 :] = True
    elif name == "upper-half":
        fill[: height - height // 2] = True
    elif name == "left-half":
        fill[:, : width - width // 2] = True
    elif name == "right-half":
        fill[:, width // 2 :] = True
    elif name == "center":
        fill[height // 4 : height - height // 4, width // 4 : width - width // 4] = True
    else:
        n_fill = min(max(round(_random_share(name) * height * width), 1), height * width - 1)
        scores = randn((num, height * width), generator, dtype=torch.float32)
        order = scores.argsort(dim=1)[:, :n_fill]
        filled = torch.zeros(num, height * width, dtype=torch.bool).scatter_(1, order, True)
        return (~filled).reshape(num, 1, height, width)
    return (~fill).expand(num, 1, height, width).clone()


def check_mask(mask, shape) -> torch.Tensor:
    """A mask for samples of ``shape`` [N, ...] as a bool tensor that broadcasts against them.

    Accepts bool, integer or float 0/1 values (1 = known); for images [N, C, H, W] also [N or 1,
    H, W] and [H, W]. Each sample must have something known and something to fill (a mask of all
    ones or all zeros is an error, naming the sample)."""
    shape = tuple(shape)
    mask = torch.as_tensor(mask)
    if mask.is_complex():
        raise ParameterError(f"`mask` must hold 0 and 1 (1 = known), got dtype {mask.dtype}")
    if mask.dtype != torch.bool:
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ParameterError("`mask` must hold only 0 and 1 (1 = known)")
        mask = mask != 0
    if len(shape) == 4 and mask.ndim in (2, 3):
        mask = mask.reshape(1, 1, *mask.shape) if mask.ndim == 2 else mask.unsqueeze(1)
    try:
        full = torch.broadcast_shapes(tuple(mask.shape), shape)
    except RuntimeError:
        full = None
    if full != shape or mask.ndim != len(shape):
        raise ParameterError(
            f"`mask` of shape {list(mask.shape)} does not fit samples of shape {list(shape)} "
            "(images: [N or 1, 1 or C, H, W], [N or 1, H, W] or [H, W])"
        )
    known = mask.expand(shape).reshape(shape[0], -1)
    for what, bad in (("all ones: nothing to fill", known.all(1)), ("all zeros: nothing is known", ~known.any(1))):
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            which = "the mask" if mask.shape[0] == 1 else f"mask {i} (of {shape[0]})"
            raise ParameterError(f"`mask`: {which} is {what}")
    return mask
