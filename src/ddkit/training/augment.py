"""Non-leaking augmentation (Karras et al. 2022, EDM §5 and Appendix; the geometric part of Karras
et al. 2020's ADA pipeline): each operation of ``ops`` transforms each image independently with
probability ``p``, and the parameters of the operations applied form an augmentation-label vector
(zero for an operation not applied), which the network is told (``augment_labels``). At sampling
the labels are zero, so the samples are images without augmentation.

Operations, in the order they are applied and their labels laid out (EDM's ranges):

    xflip      mirror left-right                                        label: 1 if mirrored
    translate  integer shifts tx, ty uniform in ±W/8, ±H/8 (rounded)    label: tx/(W/8), ty/(H/8)
    scale      isotropic, s = 2^(0.2·w), w ~ N(0, 1)                    label: w
    rotate     angle w uniform in [-π, π]                               label: cos w - 1, sin w
    aniso      s = 2^(0.2·w) along an axis at angle r, 1/s across it,   label: w·cos r, w·sin r
               w ~ N(0, 1), r uniform in [-π, π] with probability ½, else 0

xflip and translate move pixels (reflect at the borders); scale, rotate and aniso are one affine
resampling, EDM's: reflect-pad, upsample 2× with the sym6 wavelet filter, sample bilinearly
(``affine_grid``/``grid_sample``), low-pass and downsample 2×, crop. Every random number comes from
the caller's generator (the trainer's: exact resume keeps working).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import ParameterError
from ..data.datasets import DIGITS_SPLITS

OPS = ("xflip", "translate", "scale", "rotate", "aniso")
LABEL_WIDTH = {"xflip": 1, "translate": 2, "scale": 1, "rotate": 2, "aniso": 2}
# a mirrored digit is no digit; a folder of photographs mirrors well
DIGITS_OPS = tuple(op for op in OPS if op != "xflip")
FOLDER_OPS = OPS

# EDM's ranges (its AugmentPipe's defaults)
TRANSLATE_MAX = 0.125  # integer shifts up to this fraction of the image size
SCALE_STD = 0.2  # log2 of the isotropic scale
ROTATE_MAX = 1.0  # rotation angles up to this fraction of π
ANISO_STD = 0.2  # log2 of the anisotropic scale
ANISO_ROTATE_PROB = 0.5  # the anisotropy's axis is turned with this probability

# the sym6 wavelet's low-pass filter (Daubechies' least asymmetric, 6 vanishing moments): the
# interpolation filter of EDM's (and ADA's) geometric augmentation
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip


def check_ops(ops) -> tuple[str, ...]:
    """``ops`` (a sequence of names, or one comma-separated string) as a tuple in the canonical
    order :data:`OPS`; a :class:`ParameterError` names an unknown or repeated operation."""
    if isinstance(ops, str):
        ops = [op.strip() for op in ops.split(",")]
    if not isinstance(ops, (tuple, list)) or not ops or not all(isinstance(op, str) for op in ops):
        raise ParameterError(f"`augment_ops` must be a list of operations among {', '.join(OPS)}, got {ops!r}")
    unknown = [op for op in ops if op not in OPS]
    if unknown:
        raise ParameterError(f"`augment_ops`: unknown operation {unknown[0]!r}; allowed: {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise ParameterError(f"`augment_ops` names an operation twice: {', '.join(ops)}")
    return tuple(op for op in OPS if op in ops)


def default_ops(source: str) -> tuple[str, ...]:
    """The operations for data from ``source``: the digits every one but xflip, a folder all."""
    return DIGITS_OPS if source in DIGITS_SPLITS else FOLDER_OPS


def label_dim(ops) -> int:
    """The width of the augmentation-label vector of ``ops``."""
    return sum(LABEL_WIDTH[op] for op in check_ops(ops))


def check_probability(p) -> float:
    """``augment``: a probability in [0, 1) (at 1 no image would be seen as it is)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ParameterError(f"`augment` must be a probability in [0, 1), got {p!r}")
    return float(p)


# ---- 3×3 homogeneous matrices [N, 3, 3] (x right, y down, origin at the image centre) -----------
def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    """A batch of 3×3 matrices from rows of entries (floats or [N] tensors)."""
    n = like.shape[0]
    entries = [torch.as_tensor(v, dtype=like.dtype, device=like.device).expand(n) for row in rows for v in row]
    return torch.stack(entries, dim=1).reshape(n, 3, 3)


def _scale(sx, sy, like):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate(theta, like):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], like)


def _translate(tx, ty, like):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _reflect_index(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices reflected into [0, size-1] (reflect padding: the border pixel is not repeated)."""
    period = 2 * size - 2
    return size - 1 - (size - 1 - i.remainder(period)).abs()


def _translate_pixels(x: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] shifted by integer (tx, ty) [N] pixels (content moves right and down),
    the borders reflected."""
    n, c, h, w = x.shape
    cols = _reflect_index(torch.arange(w, device=x.device)[None, :] - tx[:, None], w)  # [N, W]
    rows = _reflect_index(torch.arange(h, device=x.device)[None, :] - ty[:, None], h)  # [N, H]
    x = torch.gather(x, 3, cols[:, None, None, :].expand(n, c, h, w))
    return torch.gather(x, 2, rows[:, None, :, None].expand(n, c, h, w))


def _filter(taps, x: torch.Tensor, dim: int, *, up: bool) -> torch.Tensor:
    """Along ``dim`` (2: rows, 3: columns) of x [N, C, H, W]: upsample 2× (zero-stuff, then the
    filter reversed) or low-pass with the filter and keep every second sample."""
    n, c = x.shape[:2]
    k = torch.tensor(taps[::-1] if up else taps, dtype=x.dtype, device=x.device)
    shape = (1, 1, len(taps), 1) if dim == 2 else (1, 1, 1, len(taps))
    weight = k.reshape(shape).expand(c, -1, -1, -1)
    if up:
        stuffed = torch.stack([x, torch.zeros_like(x)], dim=dim + 1).flatten(dim, dim + 1)
        stuffed = stuffed.narrow(dim, 0, stuffed.shape[dim] - 1)
        pad = (len(taps) + 1) // 2
        return F.conv2d(stuffed, weight, groups=c, padding=(pad, 0) if dim == 2 else (0, pad))
    pad = (len(taps) - 1) // 2
    stride = (2, 1) if dim == 2 else (1, 2)
    return F.conv2d(x, weight, groups=c, stride=stride, padding=(pad, 0) if dim == 2 else (0, pad))


def _resample(x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] transformed by the inverse affine maps g_inv [N, 3, 3] (output pixel → input
    pixel, centred coordinates), as EDM's (and ADA's) augmentation does it."""
    n, c, h, w = x.shape
    hz_pad = len(SYM6) // 4
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # how far outside the image the output's corners reach: reflect-pad that much (and the filter's reach)
    corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=x.dtype, device=x.device)
    cp = g_inv @ corners.t()  # [N, 3, 4]
    margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)  # [2, N·4]
    margin = torch.cat([-margin, margin]).max(dim=1).values  # [x0, y0, x1, y1]
    margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, dtype=x.dtype, device=x.device)
    margin = margin.clamp(min=0).minimum(torch.tensor([w - 1, h - 1] * 2, dtype=x.dtype, device=x.device))
    mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())
    x = F.pad(x, [mx0, mx1, my0, my1], mode="reflect")
    g_inv = _translate((mx0 - mx1) / 2, (my0 - my1) / 2, g_inv) @ g_inv
    # upsample 2× (the coordinates follow: pixel i of the input is pixel 2i of the upsampled image)
    x = _filter(SYM6, _filter(SYM6, x, 3, up=True), 2, up=True)
    g_inv = _scale(2, 2, g_inv) @ g_inv @ _scale(0.5, 0.5, g_inv)
    g_inv = _translate(-0.5, -0.5, g_inv) @ g_inv @ _translate(0.5, 0.5, g_inv)
    # sample: affine_grid's theta maps the output's normalised coordinates to the input's
    shape = [n, c, (h + hz_pad * 2) * 2, (w + hz_pad * 2) * 2]
    g_inv = _scale(2 / x.shape[3], 2 / x.shape[2], g_inv) @ g_inv @ _scale(shape[3] / 2, shape[2] / 2, g_inv)
    grid = F.affine_grid(g_inv[:, :2, :], shape, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # low-pass, downsample 2× and crop to the image
    x = _filter(SYM6, x, 3, up=False)[:, :, :, hz_pad:-hz_pad]
    return _filter(SYM6, x, 2, up=False)[:, :, hz_pad:-hz_pad, :]


def augment(
    x: torch.Tensor, p: float, ops, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each operation of ``ops`` applied to each image of x [N, C, H, W] independently with
    probability ``p``; returns (the images [N, C, H, W], their augmentation labels
    [N, :func:`label_dim`]). Every random number is drawn from ``generator`` on x's device, the
    same draws whatever ``p`` (but none at all when ``p`` is 0)."""
    ops = check_ops(ops)
    p = check_probability(p)
    if p == 0:
        return x, x.new_zeros(x.shape[0], label_dim(ops))
    with torch.autocast(x.device.type, enabled=False):  # data preparation: full precision under bf16/fp16
        return _augment(x, p, ops, generator)


def _augment(x: torch.Tensor, p: float, ops: tuple[str, ...], generator) -> tuple[torch.Tensor, torch.Tensor]:
    n, _, h, w = x.shape
    kw = dict(generator=generator, device=x.device, dtype=torch.float32)

    def applied() -> torch.Tensor:
        return torch.rand(n, **kw) < p

    labels, g_inv, moved = [], None, torch.zeros(n, dtype=torch.bool, device=x.device)
    for op in ops:
        if op == "xflip":
            flip = applied()
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            labels.append(flip.float()[:, None])
        elif op == "translate":
            on = applied()
            shift = (torch.rand(2, n, **kw) * 2 - 1) * on
            tx = (shift[0] * w * TRANSLATE_MAX).round().long()
            ty = (shift[1] * h * TRANSLATE_MAX).round().long()
            x = _translate_pixels(x, tx, ty)
            labels.append(torch.stack([tx / (w * TRANSLATE_MAX), ty / (h * TRANSLATE_MAX)], dim=1).float())
        else:
            on = applied()
            if op == "scale":
                wgt = torch.randn(n, **kw) * on
                s = torch.exp2(wgt * SCALE_STD)
                m = _scale(1 / s, 1 / s, wgt)
                labels.append(wgt[:, None])
            elif op == "rotate":
                wgt = (torch.rand(n, **kw) * 2 - 1) * (math.pi * ROTATE_MAX) * on
                m = _rotate(wgt, wgt)  # the inverse of a rotation by -w
                labels.append(torch.stack([wgt.cos() - 1, wgt.sin()], dim=1))
            else:  # aniso
                wgt = torch.randn(n, **kw) * on
                r = (torch.rand(n, **kw) * 2 - 1) * math.pi * (torch.rand(n, **kw) < ANISO_ROTATE_PROB)
                s = torch.exp2(wgt * ANISO_STD)
                m = _rotate(-r, wgt) @ _scale(1 / s, s, wgt) @ _rotate(r, wgt)
                labels.append(torch.stack([wgt * r.cos(), wgt * r.sin()], dim=1))
            g_inv = m if g_inv is None else g_inv @ m
            moved |= on
    if g_inv is not None and bool(moved.any()):
        idx = moved.nonzero().squeeze(1)
        x = x.clone()
        x[idx] = _resample(x[idx].float(), g_inv[idx].float()).to(x.dtype)
    return x, torch.cat(labels, dim=1)
