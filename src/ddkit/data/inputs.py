"""Images and masks a user gives to ``ddkit edit``, read as the run's data were converted and checked
against the run's images before any work.

    images  a PNG (or another image file), a folder of them (sorted by name), or an NPZ with
            ``images`` uint8 [N, H, W, C]  →  x: [N, C, H, W] float32, pixel u ↦ u/127.5 - 1
    masks   a PNG (one channel; non-zero = known), an NPZ with ``mask`` uint8/bool [N or 1, H, W]
            (non-zero = known), or a built-in mask by name (:data:`ddkit.edit.MASK_PRESETS`)
            →  bool [N or 1, 1, H, W], True = known

Sizes and channel counts must be the run's: an image is never resized here (training would have
resized a folder's images; an edit's input and output are compared pixel for pixel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..edit.masks import check_preset, mask_preset
from ..rng import SampleGenerators
from .datasets import IMAGE_EXTENSIONS, DataError, _to_mode, open_image

GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")
MASK_STREAM = 1  # the per-sample random stream of random:P masks (stream 0 is the edit's noise)


def _channels(image: Image.Image) -> int:
    return 1 if image.mode in GREY_MODES else 3


def _check_size(what: str, path, height: int, width: int, image_size: int) -> None:
    if (height, width) != (image_size, image_size):
        raise DataError(
            f"{what} {path} is {width}×{height} but the run's images are {image_size}×{image_size} "
            "(resize it first: edits compare pixels with the input)"
        )


def _read_image(path: Path, image_size: int, channels: int, what: str) -> np.ndarray:
    image = open_image(path, what)
    _check_size(what, path, image.height, image.width, image_size)
    c = _channels(image)
    if c != channels:
        raise DataError(
            f"{what} {path} has {c} channel{'s' if c > 1 else ''} ({image.mode}) but the run's images have {channels}"
        )
    return np.array(_to_mode(image, "L" if channels == 1 else "RGB"), dtype=np.uint8).reshape(
        image_size, image_size, channels
    )


def _npz_array(path: Path, key: str, what: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if key not in z.files:
                raise DataError(f"{what} {path} has no '{key}' array (it has: {', '.join(z.files) or 'nothing'})")
            return z[key]
    except (OSError, EOFError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"cannot read {what} {path} as an NPZ: {e}") from None


def _image_files(folder: Path, what: str) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not files:
        raise DataError(f"{what} folder {folder} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def load_images(path, *, image_size: int, channels: int, what: str = "input") -> torch.Tensor:
    """The images at ``path`` (a PNG or other image file, a folder of them, or an NPZ with ``images``
    uint8 [N, H, W, C]; [N, H, W] for grey) as x: [N, channels, image_size, image_size] float32 in
    [-1, 1] (u/127.5 - 1, as the run's data). A DataError (one line, naming ``what`` and the file)
    when a size or channel count is not the run's."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")
    if path.is_dir():
        arrays = np.stack([_read_image(f, image_size, channels, what) for f in _image_files(path, what)])
    elif path.suffix.lower() == ".npz":
        arrays = _npz_array(path, "images", what)
        if arrays.dtype != np.uint8:
            raise DataError(f"{what} {path}: 'images' must be uint8 [N, H, W, C], got dtype {arrays.dtype}")
        if arrays.ndim == 3:
            arrays = arrays[..., None]
        if arrays.ndim != 4 or arrays.shape[0] < 1:
            raise DataError(f"{what} {path}: 'images' must be [N, H, W, C] with N >= 1, got {list(arrays.shape)}")
        _check_size(what, path, arrays.shape[1], arrays.shape[2], image_size)
        if arrays.shape[3] != channels:
            raise DataError(f"{what} {path} has {arrays.shape[3]} channels but the run's images have {channels}")
    else:
        arrays = _read_image(path, image_size, channels, what)[None]
    x = torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).to(torch.float32)
    return x / 127.5 - 1.0


def load_mask(path=None, preset: str | None = None, *, num: int, image_size: int, seed: int = 0) -> torch.Tensor:
    """The mask for ``num`` images of the run's size: from ``path`` (a one-channel PNG, or an NPZ
    with ``mask`` uint8/bool [N or 1, H, W]; non-zero = known) or the built-in ``preset``
    (``random:P`` masks are drawn per image from (``seed``, image index), so an image's mask never
    depends on the others). bool [N or 1, 1, H, W], True = known."""
    if (path is None) == (preset is None):
        raise ValueError("give a mask file or a mask preset (one of them)")
    if preset is not None:
        check_preset(preset)
        gens = SampleGenerators(seed, range(num), stream=MASK_STREAM) if preset.startswith("random:") else None
        return mask_preset(preset, num, image_size, image_size, generator=gens)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"mask {path} does not exist")
    if path.suffix.lower() == ".npz":
        m = _npz_array(path, "mask", "mask")
        if m.dtype not in (np.uint8, np.bool_):
            raise DataError(f"mask {path}: 'mask' must be uint8 or bool [N or 1, H, W], got dtype {m.dtype}")
        if m.ndim == 2:
            m = m[None]
        if m.ndim != 3:
            raise DataError(f"mask {path}: 'mask' must be [N or 1, H, W], got {list(m.shape)}")
        _check_size("mask", path, m.shape[1], m.shape[2], image_size)
        if m.shape[0] not in (1, num):
            raise DataError(f"mask {path} has {m.shape[0]} masks for {num} images (give 1 or {num})")
    else:
        image = open_image(path, "mask")
        _check_size("mask", path, image.height, image.width, image_size)
        if _channels(image) != 1:
            raise DataError(f"mask {path} has 3 channels ({image.mode}); a mask has one (non-zero = known)")
        m = np.array(_to_mode(image, "L"))[None]
    return torch.from_numpy(np.ascontiguousarray(m) != 0)[:, None]
