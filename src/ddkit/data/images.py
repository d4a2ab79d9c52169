"""Image output: uint8 conversion, grids, point plots and loss curves, all as PNG via Pillow.

    images  x: [N, C, H, W] float in [-1, 1]  →  to_uint8  →  [N, H, W, C] uint8 (0–255)
    grid    [H', W', C] uint8, H' = rows·(H·scale + padding) + padding

Every PNG is written atomically: to a temporary name in the same folder, then os.replace.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

MIN_TILE_PX = 32
# Tableau-like palette for labelled point plots; cycled for more labels.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)


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


def _as_points(points: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(points, torch.Tensor):
        points = points.detach().to("cpu", torch.float64).numpy()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {list(points.shape)}")
    return points


def save_points_plot(
    points: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    size: int = 512,
    lim: float | None = None,
    labels: torch.Tensor | np.ndarray | None = None,
) -> Path:
    """Scatter plot of 2-D samples as a size×size PNG (RGB, white background).

    points: [N, 2]. The axes span [−lim, lim] in both coordinates (default: 1.05 × the
    largest finite |coordinate|, at least 1e-6); points outside, or non-finite, are not drawn.
    labels: optional [N] integers, each drawn in its palette colour. Grey axes cross at the
    origin; a black frame surrounds the plot.
    """
    points = _as_points(points)
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    finite = np.isfinite(points).all(axis=1)
    if lim is None:
        largest = np.abs(points[finite]).max() if finite.any() else 1.0
        lim = max(1.05 * float(largest), 1e-6)
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim}")
    colours = np.tile(np.array(PALETTE[0], dtype=np.uint8), (len(points), 1))
    if labels is not None:
        labels = np.asarray(torch.as_tensor(labels).cpu()).astype(np.int64).reshape(-1)
        if labels.shape != (len(points),):
            raise ValueError(f"labels must have shape [{len(points)}], got {list(labels.shape)}")
        colours = np.array(PALETTE, dtype=np.uint8)[labels % len(PALETTE)]

    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    centre = int(_to_pixel(np.zeros(1), lim, size)[0])
    canvas[:, centre] = canvas[size - 1 - centre, :] = 200  # grey axes through the origin
    px = _to_pixel(points[:, 0], lim, size)
    py = size - 1 - _to_pixel(points[:, 1], lim, size)
    dot = max(1, size // 256)  # a dot of dot×dot pixels
    keep = finite & (px >= 0) & (py >= 0) & (px <= size - dot) & (py <= size - dot)
    for dy in range(dot):
        for dx in range(dot):
            canvas[py[keep] + dy, px[keep] + dx] = colours[keep]
    picture = Image.fromarray(canvas)
    ImageDraw.Draw(picture).rectangle((0, 0, size - 1, size - 1), outline=(0, 0, 0))
    return save_png(picture, path)


def _to_pixel(values: np.ndarray, lim: float, size: int) -> np.ndarray:
    """Map [−lim, lim] onto pixel indices 0..size−1 (out-of-range values fall outside)."""
    with np.errstate(invalid="ignore"):
        scaled = np.floor((np.nan_to_num(values, nan=np.inf) + lim) / (2 * lim) * size)
    return np.clip(scaled, -1, size).astype(np.int64)


def smooth(values: np.ndarray, window: float) -> np.ndarray:
    """Debiased exponential moving average with time constant ``window`` samples."""
    beta = 1.0 - 1.0 / max(1.0, window)
    out = np.empty(len(values), dtype=np.float64)
    mean, weight = 0.0, 0.0
    for i, v in enumerate(values):
        mean = beta * mean + (1 - beta) * v
        weight = beta * weight + (1 - beta)
        out[i] = mean / weight
    return out


def save_loss_curve(
    steps: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    size: tuple[int, int] = (640, 360),
    log_y: bool = True,
) -> Path:
    """Line plot of training loss against step as a PNG of size (width, height).

    Draws the raw losses in light grey and a smoothed curve (EMA over ~2% of the points) in
    blue, with axes and min/max labels. The y axis is logarithmic when log_y and all
    finite losses are positive. Non-finite losses are skipped; with none left the plot says
    "no data".
    """
    steps = np.asarray(steps, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if steps.shape != losses.shape:
        raise ValueError(f"steps and losses must have the same length, got {len(steps)} and {len(losses)}")
    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"size must be at least (64, 64), got {size}")
    keep = np.isfinite(steps) & np.isfinite(losses)
    steps, losses = steps[keep], losses[keep]
    picture = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    left, right, top, bottom = 64, width - 12, 12, height - 28
    draw.rectangle((left, top, right, bottom), outline=(0, 0, 0))
    if len(losses) == 0:
        draw.text((left + 8, top + 8), "no data", fill=(0, 0, 0), font=font)
        return save_png(picture, path)

    log = log_y and bool((losses > 0).all())
    ys = np.log10(losses) if log else losses
    x_lo, x_hi = float(steps.min()), float(steps.max())
    y_lo, y_hi = float(ys.min()), float(ys.max())
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def xy(sx: np.ndarray, sy: np.ndarray) -> list[tuple[float, float]]:
        px = left + (sx - x_lo) / x_span * (right - left)
        py = bottom - (sy - y_lo) / y_span * (bottom - top)
        return list(zip(px.tolist(), py.tolist()))

    order = np.argsort(steps, kind="stable")
    steps, ys = steps[order], ys[order]
    if len(ys) > 1:
        draw.line(xy(steps, ys), fill=(200, 200, 200), width=1)
        draw.line(xy(steps, smooth(ys, len(ys) / 50)), fill=(31, 119, 180), width=2)
    else:
        ((px, py),) = xy(steps, ys)
        draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=(31, 119, 180))
    lo_text, hi_text = f"{losses.min():.4g}", f"{losses.max():.4g}"
    draw.text((4, bottom - 10), lo_text, fill=(0, 0, 0), font=font)
    draw.text((4, top), hi_text, fill=(0, 0, 0), font=font)
    draw.text((left, bottom + 6), f"{x_lo:g}", fill=(0, 0, 0), font=font)
    x_text = f"step {x_hi:g}" + ("   (log y)" if log else "")
    text_width = draw.textlength(x_text, font=font)
    draw.text((right - text_width, bottom + 6), x_text, fill=(0, 0, 0), font=font)
    return save_png(picture, path)
