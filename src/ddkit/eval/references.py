"""Reference images for the metrics: a split name, a folder, an NPZ or an array → uint8 [M, H, W, C];
and which reference goes with a run (:func:`run_reference`): the part of the data it never trained on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checks import ParameterError
from ..data import DIGITS_SPLITS, FASHION_SPLITS, load_data, load_run_data
from ..data.images import to_uint8
from .features import check_images

__all__ = [
    "load_reference",
    "load_npz_images",
    "Reference",
    "run_reference",
    "grey_levels",
    "NAMED_SPLITS",
    "TEST_SPLIT",
    "TRAIN_SPLIT",
]

NAMED_SPLITS = DIGITS_SPLITS + FASHION_SPLITS
# which named references contain which others' images (fashion-mnist is its training split)
_CONTAINS = {
    "digits": set(DIGITS_SPLITS),
    "digits:train": {"digits", "digits:train"},
    "digits:test": {"digits", "digits:test"},
    "fashion-mnist": {"fashion-mnist", "fashion-mnist:train"},
    "fashion-mnist:train": {"fashion-mnist", "fashion-mnist:train"},
    "fashion-mnist:test": {"fashion-mnist:test"},
}
# the held-out reference of a run trained on a named split, and the training split of a test split
TEST_SPLIT = {
    "digits:train": "digits:test",
    "fashion-mnist": "fashion-mnist:test",
    "fashion-mnist:train": "fashion-mnist:test",
}
TRAIN_SPLIT = {"digits:test": "digits:train", "fashion-mnist:test": "fashion-mnist:train"}


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


def load_reference(reference, *, image_size: int | None = None, channels: int | None = None) -> tuple[np.ndarray, str]:
    """(images uint8 [M, H, W, C], name). reference: a name of :data:`NAMED_SPLITS` ("digits:test",
    "fashion-mnist:test", …), a folder of images (loaded as ``load_data`` does, at image_size/channels), an .npz with an
    ``images`` array, or a uint8 array itself (name "array")."""
    if not isinstance(reference, (str, Path)):
        return check_images(reference, "reference images"), "array"
    ref = str(reference)
    if ref.endswith(".npz"):
        return load_npz_images(ref, "reference images"), ref
    if ref.startswith("toy:"):
        raise ValueError(f"reference {ref!r} is 2-D point data; the metrics compare images")
    if ref not in NAMED_SPLITS and not Path(ref).expanduser().is_dir():
        raise ValueError(
            f"reference must be one of {', '.join(NAMED_SPLITS)}, a folder of images or an .npz file, got {ref!r}"
        )
    data = load_data(ref, image_size=image_size, channels=channels)
    return to_uint8(data.x), ref


@dataclass
class Reference:
    """Real images to compare a run's samples with: uint8 ``images`` [M, H, W, C] and ``x`` float
    [M, C, H, W] in [-1, 1]; ``levels``: their grey levels (for bits/dim); ``trained_on``: whether the
    run saw these images in training (scores against them reward copying)."""

    name: str
    images: np.ndarray
    x: torch.Tensor
    levels: int
    trained_on: bool


def grey_levels(name: str, image_size: int | None) -> int:
    """Grey levels of reference pixels: 17 for the digits at their own 8×8, else 256."""
    return 17 if name in DIGITS_SPLITS and image_size in (None, 8) else 256


def run_reference(config, reference: str | None = None, *, run_name: str = "the run") -> Reference:
    """The reference for a run (its ``config``, a RunConfig): ``reference`` (a named split, a
    folder or an .npz) or, by default, the run's held-out part — digits:test for a digits:train run,
    fashion-mnist:test for a fashion-mnist(:train) run, the ``holdout`` part of a folder run. A run
    with no held-out part needs ``reference``."""
    d = config.data
    if reference is None:
        if d.source in TEST_SPLIT:
            name = TEST_SPLIT[d.source]
            data = load_data(name, image_size=d.image_size, channels=d.channels)
        elif d.holdout > 0:
            name, data = f"{d.source} held-out part ({d.holdout:g})", load_run_data(d, config.train.seed, "heldout")
        else:
            raise ParameterError(
                f"{run_name} trained on all of {d.source!r}, so it has no held-out part; pass "
                "`reference` (scores against the training data reward copying it)"
            )
        return Reference(name, to_uint8(data.x), data.x, grey_levels(name, d.image_size), False)
    ref = str(reference)
    if ref.endswith(".npz"):
        images = load_npz_images(ref, "reference images")
        x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 127.5 - 1.0
        return Reference(ref, images, x.float(), 256, False)
    if ref not in NAMED_SPLITS and not Path(ref).is_dir():
        raise ParameterError(
            f"`reference` must be one of {', '.join(NAMED_SPLITS)}, a folder or an .npz file, got {ref!r}"
        )
    data = load_data(ref, image_size=d.image_size, channels=d.channels)
    if ref in NAMED_SPLITS:
        trained_on = d.source in _CONTAINS[ref]
    else:
        trained_on = Path(d.source).expanduser().resolve() == Path(ref).expanduser().resolve()
    return Reference(ref, to_uint8(data.x), data.x, grey_levels(ref, d.image_size), trained_on)
