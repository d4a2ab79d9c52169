"""Data sets: the built-in 8×8 digits (with their fixed train/test split), Fashion-MNIST
(:mod:`.fashion_mnist`), 2-D toy sets and folders of images.

Every data set is loaded whole into memory as one ``Dataset``; the trainer indexes the tensors.

    images  x: [N, C, H, W] float32 in [-1, 1]  (pixel u ∈ 0..255 maps to u / 127.5 − 1)
    points  x: [N, 2] float32
    labels  y: [N] int64 in 0..K−1, or None
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..checks import integer, is_int
from .fashion_mnist import FASHION_CLASSES, FASHION_SIZE, FASHION_SPLITS, fashion_part, read_fashion
from .toy import make_toy, toy_num_classes

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
DEFAULT_FOLDER_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 4096  # larger is a typo: one 4096² RGB image is already 200 MB as float32
DIGITS_SIZE = 8
DIGITS_SPLITS = ("digits", "digits:train", "digits:test")
DIGITS_TEST_PER_CLASS = 50
DIGITS_SPLIT_SEED = 20201219  # fixed forever: changing it changes every held-out score


class DataError(ValueError):
    """Bad data on disk; the message is one line and names the offending file or folder."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set held in memory.

    x: [N, C, H, W] float32 in [-1, 1] (kind "image") or [N, 2] float32 (kind "points").
    y: [N] int64 labels in 0..num_classes−1, or None for unlabelled data.
    class_names: one name per class (empty when unlabelled). source: where it came from.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    num_classes: int | None
    class_names: tuple[str, ...]
    kind: str
    source: str

    def __post_init__(self) -> None:
        if self.kind not in ("image", "points"):
            raise ValueError(f"kind must be 'image' or 'points', got {self.kind!r}")
        if self.kind == "image" and self.x.ndim != 4:
            raise ValueError(f"image data must be [N, C, H, W], got {list(self.x.shape)}")
        if self.kind == "points" and self.x.ndim != 2:
            raise ValueError(f"point data must be [N, D], got {list(self.x.shape)}")
        if self.y is not None and self.y.shape != (self.x.shape[0],):
            raise ValueError(f"y must have shape [{self.x.shape[0]}], got {list(self.y.shape)}")
        if (self.y is None) != (self.num_classes is None):
            raise ValueError("y and num_classes must both be set or both be None")
        if self.num_classes is not None and len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for {self.num_classes} classes")

    def __len__(self) -> int:
        return self.x.shape[0]


def load_data(
    source: str = "digits",
    *,
    image_size: int | None = None,
    channels: int | None = None,
    seed: int = 0,
    toy_size: int = 20000,
) -> Dataset:
    """Load a data set by name or path.

    source:
      "digits:train", "digits:test"
                   the fixed split of the digits (``digits_split_indices``): 500 test
                   digits (50 per class) and the other 1,297 for training.
      "digits"     scikit-learn's 1,797 8×8 digits (17 grey levels v ∈ 0..16 → v/16·2 − 1),
                   labels 0–9; channels 1 (default) or 3 (grey repeated); image_size
                   default 8, another size resamples with torch bicubic interpolation
                   (antialiased) and clamps to [-1, 1].
      "fashion-mnist", "fashion-mnist:train", "fashion-mnist:test"
                   Fashion-MNIST's 60,000 training or 10,000 test images (``load_fashion_mnist``),
                   28×28 grey, labels 0–9 with the class names; channels 1 (default) or 3,
                   image_size default 28.
      "toy:NAME"   ``make_toy(NAME, toy_size)`` seeded with ``seed``; kind "points";
                   image_size and channels must be None.
      a folder     images (png/jpg/jpeg/webp/bmp, any case, searched recursively); see
                   ``load_image_folder``. channels default 3, image_size default 32.
    Raises ValueError for bad arguments and DataError for bad data on disk.
    """
    if image_size is not None and (not is_int(image_size) or not 1 <= image_size <= MAX_IMAGE_SIZE):
        raise ValueError(
            f"image_size must be >= 1, got {image_size!r}"
            if isinstance(image_size, int) and image_size < 1
            else f"image_size must be an integer in [1, {MAX_IMAGE_SIZE}], got {image_size!r}"
        )
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if not isinstance(source, str) or not source:
        raise ValueError(f"data source must be a non-empty string, got {source!r}")
    if source in DIGITS_SPLITS:
        data = load_digits(image_size=image_size or DIGITS_SIZE, channels=channels or 1)
        return data if source == "digits" else digits_split(data, source.split(":")[1])
    if source in FASHION_SPLITS:
        return load_fashion_mnist(source, image_size=image_size or FASHION_SIZE, channels=channels or 1)
    if source.startswith("toy:"):
        if image_size is not None or channels is not None:
            raise ValueError(f"image_size and channels must be None for toy data {source!r}")
        integer("toy_size", toy_size, low=1, high=10_000_000)
        generator = torch.Generator().manual_seed(seed)
        name = source[len("toy:") :]
        x, y = make_toy(name, toy_size, generator=generator)
        num_classes = toy_num_classes(name)
        names = () if y is None else tuple(str(k) for k in range(num_classes))
        return Dataset(x, y, num_classes, names, "points", source)
    return load_image_folder(source, image_size=image_size or DEFAULT_FOLDER_IMAGE_SIZE, channels=channels or 3)


def load_digits(*, image_size: int = DIGITS_SIZE, channels: int = 1) -> Dataset:
    """scikit-learn's built-in digits as x: [1797, channels, image_size, image_size]."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images).to(torch.float32)[:, None] / 16 * 2 - 1  # [N, 1, 8, 8]
    x = _resize(x, image_size).repeat(1, channels, 1, 1).contiguous()
    y = torch.from_numpy(bunch.target).to(torch.int64)
    names = tuple(str(k) for k in range(10))
    return Dataset(x, y, 10, names, "image", "digits")


def _resize(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Square images x [N, C, s, s] in [-1, 1] at image_size (bicubic, antialiased when shrinking), clamped."""
    if image_size == x.shape[-1]:
        return x
    y = F.interpolate(
        x, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=image_size < x.shape[-1]
    )
    return y.clamp(-1.0, 1.0)


def load_fashion_mnist(
    source: str = "fashion-mnist:train", *, image_size: int = FASHION_SIZE, channels: int = 1, folder=None
) -> Dataset:
    """Fashion-MNIST's training (``source`` "fashion-mnist" or "fashion-mnist:train") or test
    ("fashion-mnist:test") images as x: [N, channels, image_size, image_size], pixel u → u/127.5 − 1,
    with their labels and :data:`~.fashion_mnist.FASHION_CLASSES`. ``folder``: where the idx files
    are (default :func:`~.fashion_mnist.fashion_dir`)."""
    images, labels = read_fashion(fashion_part(source), folder)
    x = torch.from_numpy(images).to(torch.float32)[:, None] / 127.5 - 1  # [N, 1, 28, 28]
    x = _resize(x, image_size).repeat(1, channels, 1, 1).contiguous()
    return Dataset(x, torch.from_numpy(labels), len(FASHION_CLASSES), FASHION_CLASSES, "image", source)


def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices into scikit-learn's 1,797 digits, sorted, disjoint, drawn once:
    for each class 0–9, 50 rows chosen by ``numpy.random.default_rng(DIGITS_SPLIT_SEED)``
    (classes in order) go to the test split; the remaining 1,297 are the training split."""
    from sklearn.datasets import load_digits as sk_load_digits

    target = sk_load_digits().target
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test = np.concatenate(
        [rng.choice(np.flatnonzero(target == k), DIGITS_TEST_PER_CLASS, replace=False) for k in range(10)]
    )
    test = np.sort(test)
    train = np.setdiff1d(np.arange(len(target)), test)
    return train, test


def digits_split(data: Dataset, part: str) -> Dataset:
    """The ``part`` ("train" or "test") rows of the full digits ``data``."""
    train, test = digits_split_indices()
    return take(data, {"train": train, "test": test}[part], f"digits:{part}")


def take(data: Dataset, idx: np.ndarray, source: str) -> Dataset:
    """The rows ``idx`` of ``data`` as a new Dataset named ``source``."""
    idx = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    y = None if data.y is None else data.y[idx]
    return Dataset(data.x[idx].contiguous(), y, data.num_classes, data.class_names, data.kind, source)


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _find_images(folder: Path) -> list[Path]:
    """All image files under folder, sorted, skipping hidden files and folders."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in files if _is_image(Path(f)))
    return sorted(found)


def _list_folder(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...]]:
    """Image paths, per-image labels (None when unlabelled) and class names."""
    if not folder.exists():
        raise DataError(f"data path does not exist: {folder}")
    if not folder.is_dir():
        raise DataError(f"data path is not a directory (nor 'digits' or 'toy:NAME'): {folder}")
    files = _find_images(folder)
    if not files:
        raise DataError(f"no images found in {folder} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)})")
    parts = [f.relative_to(folder).parts for f in files]
    in_root = [f for f, p in zip(files, parts) if len(p) == 1]
    if len(in_root) == len(files):
        return files, None, ()
    if in_root:
        raise DataError(
            f"{folder} has class sub-folders but also images directly in it, "
            f"e.g. {in_root[0]}; move them into a sub-folder"
        )
    class_names = tuple(sorted({p[0] for p in parts}))
    index = {name: k for k, name in enumerate(class_names)}
    return files, [index[p[0]] for p in parts], class_names


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert to "L" or "RGB". 16- and 32-bit grey images (I;16, I) are scaled to 8 bits first
    (Pillow's own conversion clips them at 255, which turns most of them white). Alpha is dropped
    (as Pillow's ``convert`` and torchvision do): the stored colour of each pixel is kept."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        deep = np.asarray(image).astype(np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(deep.max()), 1.0)
        image = Image.fromarray(np.clip(np.round(deep / top * 255.0), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(
            np.clip(np.round(np.nan_to_num(np.asarray(image)) * 255.0), 0, 255).astype(np.uint8), "L"
        )
    return image.convert(mode)


def open_image(path: Path, what: str, mode: str | None = None) -> Image.Image:
    """The image file ``path`` with its EXIF orientation applied (and converted to ``mode``, "L" or
    "RGB", by :func:`_to_mode`); a one-line DataError naming ``what`` and the file when it cannot be
    read."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return image if mode is None else _to_mode(image, mode)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        raise DataError(f"cannot read {what} {path}: {type(error).__name__}: {error}") from None


def load_image(path: Path | str, *, image_size: int, channels: int) -> np.ndarray:
    """One image as uint8 [image_size, image_size, channels].

    Applies the EXIF orientation, converts to "L" (channels 1) or "RGB" (channels 3),
    resizes (bicubic) so that the short side is image_size and centre-crops the long side
    (the crop starts at (long − image_size) // 2).
    """
    image = open_image(Path(path), "image", "L" if channels == 1 else "RGB")
    width, height = image.size
    if min(width, height) != image_size:
        ratio = image_size / min(width, height)
        new_size = (max(image_size, round(width * ratio)), max(image_size, round(height * ratio)))
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        width, height = new_size
    left, top = (width - image_size) // 2, (height - image_size) // 2
    image = image.crop((left, top, left + image_size, top + image_size))
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(image_size, image_size, channels)


def load_image_folder(path: Path | str, *, image_size: int = DEFAULT_FOLDER_IMAGE_SIZE, channels: int = 3) -> Dataset:
    """A folder of images as x: [N, channels, image_size, image_size] in [-1, 1].

    If the images lie in sub-folders, each top-level sub-folder is a class (sorted names →
    labels 0..K−1) and images directly in the folder are a DataError; if all images lie
    directly in the folder the data set is unlabelled (y None). Hidden files and folders
    (names starting with ".") are skipped. Pixel u ∈ 0..255 maps to u / 127.5 − 1.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    folder = Path(path).expanduser()
    files, labels, class_names = _list_folder(folder)
    pixels = np.empty((len(files), image_size, image_size, channels), dtype=np.uint8)

    def load_into(i: int) -> None:
        pixels[i] = load_image(files[i], image_size=image_size, channels=channels)

    # Pillow releases the GIL while decoding and resizing, so threads help.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(load_into, range(len(files))))
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1
    y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    num_classes = None if labels is None else len(class_names)
    return Dataset(x.contiguous(), y, num_classes, class_names, "image", str(folder))
