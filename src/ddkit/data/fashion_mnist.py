"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28×28 grey images of clothing in ten
balanced classes, read from the original idx files (gzip-compressed or not).

    fashion-mnist, fashion-mnist:train   the 60,000 training images (train-*-ubyte)
    fashion-mnist:test                   the 10,000 test images (t10k-*-ubyte)

The folder is ``DDKIT_FASHION_MNIST_DIR`` or, by default, where the Debian package
``dataset-fashion-mnist`` installs the files (:data:`DEFAULT_DIR`).

The idx format (LeCun et al.): a big-endian header, magic ``0x00 0x00 0x08 ndim`` (0x08: unsigned
bytes), then ``ndim`` uint32 sizes, then the bytes in row-major order. Images have ndim 3
([N, 28, 28]), labels ndim 1 ([N]).

:func:`check_fashion_files` uses only the standard library (no numpy, no torch), so a missing
file is reported before any heavy work.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

FASHION_SPLITS = ("fashion-mnist", "fashion-mnist:train", "fashion-mnist:test")
FASHION_SIZE = 28
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_DIR = "DDKIT_FASHION_MNIST_DIR"
INSTALL_HINT = f"install it with `apt-get install dataset-fashion-mnist`, or set {ENV_DIR} to a folder with the files"
_PREFIX = {"train": "train", "test": "t10k"}
_IDX_UBYTE = 0x08


def fashion_dir(env: dict | None = None) -> Path:
    """The Fashion-MNIST folder: ``env[DDKIT_FASHION_MNIST_DIR]`` (``env``: default ``os.environ``)
    or :data:`DEFAULT_DIR`."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_DIR) or DEFAULT_DIR).expanduser()


def fashion_part(source: str) -> str:
    """ "train" or "test" for a name of :data:`FASHION_SPLITS`."""
    if source not in FASHION_SPLITS:
        raise ValueError(f"not a Fashion-MNIST split: {source!r}; choose one of {', '.join(FASHION_SPLITS)}")
    return "test" if source == "fashion-mnist:test" else "train"


def _find(folder: Path, stem: str) -> Path | None:
    """``stem`` or ``stem.gz`` in folder (the uncompressed file first), or None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def fashion_files(part: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(images, labels) files of ``part`` ("train" or "test"); a one-line DataError naming the
    folder or file and the install command when one is missing."""
    from .datasets import DataError

    folder = fashion_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        raise DataError(f"Fashion-MNIST not found: no folder {folder}; {INSTALL_HINT}")
    found = []
    for kind in ("images-idx3", "labels-idx1"):
        stem = f"{_PREFIX[part]}-{kind}-ubyte"
        path = _find(folder, stem)
        if path is None:
            raise DataError(f"Fashion-MNIST not found: no {stem}(.gz) in {folder}; {INSTALL_HINT}")
        found.append(path)
    return found[0], found[1]


def check_fashion_files(source: str) -> None:
    """Raise a one-line DataError if a file that ``source`` (one of :data:`FASHION_SPLITS`) needs
    is missing. Standard library only: cheap enough to run before anything else."""
    fashion_files(fashion_part(source))


def _read(path: Path) -> bytes:
    from .datasets import DataError

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {type(e).__name__}: {e}") from None


def read_idx(path: Path | str, ndim: int):
    """The uint8 array ([N] for ndim 1, [N, H, W] for ndim 3) stored in the idx file ``path``
    (gzip if its name ends in .gz). A one-line DataError naming the file for a wrong magic number,
    a wrong number of dimensions, or a file shorter or longer than its header says."""
    import numpy as np

    from .datasets import DataError

    path = Path(path)
    raw = _read(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataError(f"{path} is not an idx file of unsigned bytes (magic {raw[:4].hex() or 'missing'})")
    if raw[3] != ndim:
        raise DataError(f"{path} has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: {len(raw)} bytes, shorter than its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != size:
        what = "truncated" if len(raw) - header < size else "longer than its header says"
        raise DataError(f"{path} is {what}: {len(raw) - header} data bytes for shape {list(shape)} ({size} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_fashion(part: str, folder: Path | None = None):
    """(images uint8 [N, 28, 28], labels uint8 [N]) of ``part`` ("train" or "test"), checked: the
    counts of images and labels agree, images are 28×28, labels are in 0..9."""
    import numpy as np

    from .datasets import DataError

    images_path, labels_path = fashion_files(part, folder)
    images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{labels_path} has {labels.shape[0]} labels but {images_path} has {images.shape[0]} images")
    if images.shape[1:] != (FASHION_SIZE, FASHION_SIZE):
        raise DataError(f"{images_path} holds {images.shape[1]}×{images.shape[2]} images, expected 28×28")
    if labels.size and int(labels.max()) >= len(FASHION_CLASSES):
        raise DataError(f"{labels_path} has label {int(labels.max())}; Fashion-MNIST's are 0..9")
    return images.copy(), labels.astype(np.int64)
