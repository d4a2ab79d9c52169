"""Reference images for the metrics: a split name, a folder, an NPZ or an array → uint8 [M, H, W, C]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DIGITS_SPLITS, load_data
from .features import check_images

__all__ = ["load_reference", "load_npz_images"]


def load_npz_images(path: str | Path, what: str = "samples") -> np.ndarray:
    """The ``images`` array (uint8 [N, H, W, C], C = 1 or 3) of an NPZ such as ``ddkit sample`` writes."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "images" not in z.files:
                raise ValueError(f"{path} has no 'images' array (it has: {', '.join(z.files) or 'nothing'})")
            images = z["images"]
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read {path} as an NPZ: {e}") from None
    return check_images(images, f"{what} in {path}")


def load_reference(reference, *, image_size: int | None = None, channels: int | None = None
                   ) -> tuple[np.ndarray, str]:
    """(images uint8 [M, H, W, C], name). reference: "digits", "digits:train", "digits:test", a
    folder of images (loaded as ``load_data`` does, at image_size/channels), an .npz with an
    ``images`` array, or a uint8 array itself (name "array")."""
    from ..images import to_uint8

    if not isinstance(reference, (str, Path)):
        return check_images(reference, "reference images"), "array"
    ref = str(reference)
    if ref.endswith(".npz"):
        return load_npz_images(ref, "reference images"), ref
    if ref.startswith("toy:"):
        raise ValueError(f"reference {ref!r} is 2-D point data; the metrics compare images")
    if ref not in DIGITS_SPLITS and not Path(ref).expanduser().is_dir():
        raise ValueError(f"reference must be one of {', '.join(DIGITS_SPLITS)}, a folder of images or an .npz "
                         f"file, got {ref!r}")
    data = load_data(ref, image_size=image_size, channels=channels)
    return to_uint8(data.x), ref
