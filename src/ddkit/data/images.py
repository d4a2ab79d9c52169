"""Image output: uint8 conversion and sample grids, as PNG via Pillow (figures, such as the scatter
of 2-D samples and the loss curve, are drawn with matplotlib in :mod:`ddkit.plots`).

    images  x: [N, C, H, W] float in [-1, 1]  →  to_uint8  →  [N, H, W, C] uint8 (0–255)
    grid    [H', W', C] uint8, H' = rows·(H·scale + padding) + padding

Every PNG is written atomically: to a temporary name in the same folder, then os.replace.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

MIN_TILE_PX = 32


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [-1, 1] → [N, H, W, C] uint8.

    u = floor((x + 1) · 127.5 + 0.5) clamped to 0..255 (round half up): −1 → 0, 0 → 128,
    1 → 255, and u / 127.5 − 1 maps back to u exactly. NaN becomes 0.
    """
    x = torch.as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a float tensor in [-1, 1], got {x.dtype}")
    u = torch.floor((x.detach().to("cpu", torch.float64) + 1) * 127.5 + 0.5)
    u = torch.nan_to_num(u, nan=0.0).clamp(0, 255).to(torch.uint8)
    return u.permute(0, 2, 3, 1).contiguous().numpy()


def _check_uint8_images(images: np.ndarray) -> np.ndarray:
    """Accept [N, H, W, C] (or [N, H, W] grey) uint8; return [N, H, W, C]."""
    if isinstance(images, torch.Tensor):
        if images.is_floating_point():
            raise ValueError(
                "images must be uint8 [N, H, W, C]; convert float tensors with ddkit.data.images.to_uint8 first"
            )
        images = images.cpu().numpy()
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[0] < 1 or images.shape[3] not in (1, 3):
        raise ValueError(f"images must have shape [N, H, W, C] with N >= 1 and C 1 or 3, got {list(images.shape)}")
    return images


def default_scale(height: int, width: int) -> int:
    """The smallest integer scale that makes a tile at least MIN_TILE_PX on its short side."""
    return max(1, math.ceil(MIN_TILE_PX / max(1, min(height, width))))


def make_grid(
    images: np.ndarray,
    nrow: int | None = None,
    padding: int = 1,
    scale: int | None = None,
    pad_value: int = 255,
) -> np.ndarray:
    """Tile uint8 images [N, H, W, C] into one image [H', W', C].

    nrow: images per row (default ceil(√N)); rows = ceil(N / nrow).
    scale: integer nearest-neighbour upscaling of each tile (default ``default_scale``, so
    8×8 digits become 32×32). padding: pixels of pad_value between tiles and around the
    border: H' = rows·(H·scale + padding) + padding, W' = nrow·(W·scale + padding) + padding.
    Empty cells in the last row are pad_value.
    """
    images = _check_uint8_images(images)
    n, h, w, c = images.shape
    nrow = math.ceil(math.sqrt(n)) if nrow is None else nrow
    scale = default_scale(h, w) if scale is None else scale
    if nrow < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value must be in [0, 255], got {pad_value}")
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    rows = math.ceil(n / nrow)
    grid = np.full((rows * (th + padding) + padding, nrow * (tw + padding) + padding, c), pad_value, dtype=np.uint8)
    for i in range(n):
        top = padding + (i // nrow) * (th + padding)
        left = padding + (i % nrow) * (tw + padding)
        grid[top : top + th, left : left + tw] = images[i]
    return grid


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write a Pillow image as PNG atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_grid(
    images: np.ndarray,
    path: str | os.PathLike,
    nrow: int | None = None,
    scale: int | None = None,
    padding: int = 1,
) -> Path:
    """Save uint8 images [N, H, W, C] as one PNG grid (mode "L" for C = 1, "RGB" for C = 3)."""
    grid = make_grid(images, nrow=nrow, padding=padding, scale=scale)
    if grid.shape[2] == 1:
        picture = Image.fromarray(np.ascontiguousarray(grid[:, :, 0]))  # mode "L"
    else:
        picture = Image.fromarray(grid)  # mode "RGB"
    return save_png(picture, path)
