"""Linear measurement operators for restoration: y = A(x₀) (+ noise).

Notation (x: [N, C, H, W] images, or [N, ...] any samples; y the measurement):

    A       the forward operator, x ↦ y
    A⁺      its Moore–Penrose pseudo-inverse, y ↦ the minimum-norm x with A·x = y
    A⁺A     the projection onto the row space of A; I - A⁺A the projection onto its null space

DDNM (Wang et al. 2023, eq. 8) keeps the part of a prediction x̂₀ that A cannot see and takes the
rest from y: x̂₀ ← A⁺y + (I - A⁺A)·x̂₀, so A·x̂₀ = y exactly when A A⁺ A = A. DPS (Chung et al.
2023) needs only a differentiable A.

An operator is any object with ``A(x)``, ``description`` (one line for people) and, where it
exists, ``A_pinv(y)``; optionally ``project(x, y)`` (the DDNM projection, when it can be computed
more exactly than from A and A⁺) and ``check(shape)`` (a ValueError when the operator does not
apply to samples of that shape [N, ...]). :func:`parse_operator` reads the command line's names.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..checks import ParameterError, is_int, number

OPERATOR_NAMES = ("downsample:K", "grayscale", "blur:S")
BLUR_RTOL = 1e-4


def project(operator, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """DDNM's range–null-space step x ← A⁺y + (I - A⁺A)·x = x + A⁺(y - A·x) (Wang et al. 2023,
    eq. 8): ``operator.project`` where it exists, else from ``A`` and ``A_pinv``. x: [N, ...]."""
    if hasattr(operator, "project"):
        return operator.project(x, y)
    return x + operator.A_pinv(y - operator.A(x))


def check_operator(operator, shape, *, pinv: bool = False) -> None:
    """An operator usable on samples of ``shape`` [N, ...]: it has ``A`` (and ``A_pinv`` when
    ``pinv``), and its own ``check(shape)`` passes."""
    if not callable(getattr(operator, "A", None)):
        raise ParameterError("`operator` must have a method A(x) (the measurement), e.g. ddkit.edit.operators.Mask")
    if pinv and not callable(getattr(operator, "A_pinv", None)):
        what = getattr(operator, "description", type(operator).__name__)
        raise ParameterError(
            f"method ddnm needs an `operator` with a pseudo-inverse A_pinv; {what} has none (method dps needs only A)"
        )
    if callable(getattr(operator, "check", None)):
        operator.check(tuple(shape))


class Mask:
    """Inpainting as a measurement: A(x) = m ⊙ x, keeping the pixels where the mask m is 1 (known)
    and zeroing the rest; A⁺ = A (a projection), and DDNM's step puts y into the known pixels.

    mask: bool or 0/1 tensor that broadcasts against the samples, e.g. [N or 1, 1 or C, H, W]."""

    def __init__(self, mask: torch.Tensor):
        mask = torch.as_tensor(mask)
        if mask.dtype != torch.bool:
            if mask.is_floating_point() and not torch.isin(mask, torch.tensor([0.0, 1.0], dtype=mask.dtype)).all():
                raise ParameterError("`mask` must hold only 0 and 1 (1 = known)")
            mask = mask != 0
        self.mask = mask
        known = mask.float().mean().item()
        self.description = f"mask ({100 * known:.0f}% of values known)"

    def _m(self, x: torch.Tensor) -> torch.Tensor:
        return self.mask.to(x.device)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(self._m(x), x, torch.zeros((), dtype=x.dtype, device=x.device))

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return self.A(y)

    def project(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """y in the known values (exactly), x elsewhere."""
        return torch.where(self._m(x), y, x)

    def check(self, shape) -> None:
        try:
            torch.broadcast_shapes(tuple(self.mask.shape), tuple(shape))
        except RuntimeError:
            raise ParameterError(
                f"`mask` of shape {list(self.mask.shape)} does not fit samples of shape {list(shape)}"
            ) from None


class Downsample:
    """Average pooling over k×k blocks (super-resolution ×k): A: [N, C, H, W] → [N, C, H/k, W/k].
    A Aᵀ = I/k², so A⁺ = k²·Aᵀ repeats each value over its block (nearest-neighbour upsampling)."""

    def __init__(self, k: int):
        if not is_int(k) or k < 1:
            raise ParameterError(f"`operator` downsample factor must be a positive integer, got {k!r}")
        self.k = int(k)
        self.description = f"average pooling {self.k}×{self.k} (×{self.k} super-resolution)"

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.k)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y.repeat_interleave(self.k, dim=-2).repeat_interleave(self.k, dim=-1)

    def check(self, shape) -> None:
        if len(shape) != 4:
            raise ParameterError(f"`operator` downsample works on images [N, C, H, W], got shape {list(shape)}")
        h, w = shape[-2:]
        if h % self.k or w % self.k:
            raise ParameterError(f"`operator` downsample factor {self.k} does not divide the image size {h}×{w}")


class Grayscale:
    """Colourisation: A(x) = the mean of the R, G, B channels, [N, 3, H, W] → [N, 1, H, W]
    (DDNM's colourisation operator). A⁺ repeats the grey value in all three channels."""

    description = "grey = mean of R, G and B (colourisation)"

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        return y.expand(-1, 3, *y.shape[2:])

    def check(self, shape) -> None:
        if len(shape) != 4 or shape[1] != 3:
            raise ParameterError(
                f"`operator` grayscale needs RGB images [N, 3, H, W] (colourisation), got shape {list(shape)}"
            )


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    """The normalised 1-D Gaussian kernel float64 [size] with std ``sigma`` (size default
    2⌈3σ⌉ + 1)."""
    sigma = number("sigma", sigma, low=0.0, low_open=True)
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
    if not is_int(size) or size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd integer, got {size!r}")
    r = torch.arange(size, dtype=torch.float64) - size // 2
    k = torch.exp(-(r**2) / (2 * sigma**2))
    return k / k.sum()


class Blur:
    """Convolution with a kernel, zero padding, same size (deblurring): [N, C, H, W] → [N, C, H, W].

    kernel: a number σ (a Gaussian blur, :func:`gaussian_kernel`), a 1-D kernel [k] applied along
    both axes, or a 2-D kernel [k, k] (k odd). A separable kernel (1-D, or 2-D of rank 1) acts as
    X ↦ B_H X B_Wᵀ with 1-D convolution matrices B, whose pseudo-inverse is X ↦ B_H⁺ Y B_W⁺ᵀ
    ((B ⊗ C)⁺ = B⁺ ⊗ C⁺); another kernel builds the (HW)×(HW) matrix, up to 64×64 images.
    Singular values below ``rtol``·σ_max count as zero in A⁺ (a blur's smallest ones are tiny),
    so A·A⁺·A = A holds up to that truncation."""

    def __init__(self, kernel, *, rtol: float = BLUR_RTOL):
        if isinstance(kernel, (int, float)) and not isinstance(kernel, bool):
            sigma = float(kernel)
            if not (math.isfinite(sigma) and sigma > 0):
                raise ParameterError(f"`operator` blur needs a positive σ, got {kernel!r}")
            kernel, self.description = gaussian_kernel(sigma), f"Gaussian blur (σ = {sigma:g} pixels)"
        else:
            kernel = torch.as_tensor(kernel, dtype=torch.float64)
            self.description = f"blur with a {'×'.join(map(str, kernel.shape))} kernel"
        if kernel.ndim not in (1, 2) or any(n % 2 == 0 for n in kernel.shape) or len(set(kernel.shape)) != 1:
            raise ParameterError(f"`operator` blur kernel must be [k] or [k, k] with k odd, got {list(kernel.shape)}")
        self.rtol = number("rtol", rtol, low=0.0, high=1.0, low_open=True)
        self.kernel2d = kernel if kernel.ndim == 2 else torch.outer(kernel, kernel)
        self.factors = (kernel, kernel) if kernel.ndim == 1 else _rank_one(kernel)
        self._pinv: dict = {}

    def A(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        k = self.kernel2d.to(device=x.device, dtype=x.dtype)
        weight = k.flip(0, 1).expand(c, 1, *k.shape)  # conv2d correlates: flip for a convolution
        return F.conv2d(x, weight, padding=k.shape[-1] // 2, groups=c)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        h, w = y.shape[-2:]
        key = (h, w)
        if key not in self._pinv:
            self._pinv[key] = self._pinv_matrices(h, w)
        mats = self._pinv[key]
        y64 = y.to(torch.float64)
        if len(mats) == 2:  # separable: B_H⁺ Y B_W⁺ᵀ
            out = mats[0].to(y.device) @ y64 @ mats[1].to(y.device).T
        else:
            out = (y64.reshape(*y.shape[:-2], h * w) @ mats[0].to(y.device).T).reshape(y.shape)
        return out.to(y.dtype)

    def _pinv_matrices(self, h: int, w: int) -> tuple[torch.Tensor, ...]:
        if self.factors is not None:
            return tuple(torch.linalg.pinv(_conv_matrix(f, n), rtol=self.rtol) for f, n in zip(self.factors, (h, w)))
        if h * w > 4096:
            raise ParameterError(
                f"`operator` {self.description} has no pseudo-inverse here for {h}×{w} images (a non-separable "
                "kernel needs the (HW)² matrix; up to 64×64): use method dps, or a separable kernel"
            )
        basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
        matrix = self.A(basis).reshape(h * w, h * w).T  # column j = A(e_j)
        return (torch.linalg.pinv(matrix, rtol=self.rtol),)

    def check(self, shape) -> None:
        if len(shape) != 4:
            raise ParameterError(f"`operator` blur works on images [N, C, H, W], got shape {list(shape)}")


def _rank_one(kernel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(u, v) with kernel = u vᵀ when the 2-D kernel has rank 1, else None."""
    U, S, Vh = torch.linalg.svd(kernel)
    if S.numel() > 1 and S[1] > 1e-12 * S[0]:
        return None
    return U[:, 0] * S[0].sqrt(), Vh[0] * S[0].sqrt()


def _conv_matrix(kernel: torch.Tensor, n: int) -> torch.Tensor:
    """The [n, n] matrix of 1-D convolution with ``kernel`` [k] (k odd), zero padding, same size:
    B[i, j] = kernel[i - j + k//2]."""
    r = kernel.numel() // 2
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    idx = i - j + r
    inside = (idx >= 0) & (idx < kernel.numel())
    return torch.where(inside, kernel[idx.clamp(0, kernel.numel() - 1)], torch.zeros((), dtype=kernel.dtype))


class Linear:
    """Any linear map of the flattened sample as a matrix: A(x) = M·vec(x), x: [N, ...] with D values
    → y: [N, M]; A⁺ = M⁺ (reshaped to ``shape`` [...] of one sample when given, else [N, D]).

    matrix: [M, D]. For points, or any operator small enough to write down."""

    def __init__(self, matrix: torch.Tensor, shape=None, *, rtol: float = 1e-10):
        matrix = torch.as_tensor(matrix, dtype=torch.float64)
        if matrix.ndim != 2:
            raise ParameterError(f"`operator` matrix must be [M, D], got shape {list(matrix.shape)}")
        self.matrix, self.shape = matrix, None if shape is None else tuple(shape)
        self.pinv = torch.linalg.pinv(matrix, rtol=rtol)
        self.description = f"linear map {matrix.shape[0]}×{matrix.shape[1]}"

    def A(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        return (flat.to(torch.float64) @ self.matrix.to(x.device).T).to(x.dtype)

    def A_pinv(self, y: torch.Tensor) -> torch.Tensor:
        out = (y.to(torch.float64) @ self.pinv.to(y.device).T).to(y.dtype)
        return out if self.shape is None else out.reshape(y.shape[0], *self.shape)

    def check(self, shape) -> None:
        d = math.prod(shape[1:])
        if d != self.matrix.shape[1]:
            raise ParameterError(
                f"`operator` matrix takes {self.matrix.shape[1]} values per sample, samples have {d} ({list(shape)})"
            )


def parse_operator(spec: str):
    """The operator a name stands for: ``downsample:K`` (:class:`Downsample`), ``grayscale``
    (:class:`Grayscale`) or ``blur:S`` (:class:`Blur`, Gaussian with σ = S pixels)."""
    if not isinstance(spec, str):
        raise ParameterError(f"`operator` must be one of {', '.join(OPERATOR_NAMES)}, got {spec!r}")
    name, _, arg = spec.partition(":")
    if name == "grayscale" and not arg:
        return Grayscale()
    if name == "downsample" and arg:
        try:
            k = int(arg)
        except ValueError:
            k = None
        if k is None or k < 1:
            raise ParameterError(f"`operator` downsample:K needs a positive integer K, got {arg!r}")
        return Downsample(k)
    if name == "blur" and arg:
        try:
            s = float(arg)
        except ValueError:
            s = math.nan
        if not (math.isfinite(s) and s > 0):
            raise ParameterError(f"`operator` blur:S needs a positive σ S (pixels), got {arg!r}")
        return Blur(s)
    raise ParameterError(f"`operator` must be one of {', '.join(OPERATOR_NAMES)}, got {spec!r}")


__all__ = [
    "Mask",
    "Downsample",
    "Grayscale",
    "Blur",
    "Linear",
    "gaussian_kernel",
    "parse_operator",
    "project",
    "check_operator",
    "OPERATOR_NAMES",
]
