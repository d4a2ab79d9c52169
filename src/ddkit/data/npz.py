"""NPZ files written as a stream: arrays whose shape is known up front are filled batch by batch,
so writing N samples needs memory for one batch, not for N. The result is an ordinary ``.npz``
(a zip of ``.npy`` files) that ``numpy.load`` reads. Written under a temporary name and renamed
into place, so a crash never leaves a half-written file at the final path.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ..checks import ParameterError


def npz_bytes(arrays: dict[str, tuple[tuple[int, ...], np.dtype]]) -> int:
    """About the size of an uncompressed NPZ holding arrays of these (shape, dtype): data plus headers."""
    total = 0
    for shape, dtype in arrays.values():
        total += int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize + 256
    return total + 1024


def savez_atomic(path: str | os.PathLike, **arrays) -> Path:
    """``numpy.savez(path, **arrays)`` under a temporary name of this process in the same folder, then
    renamed into place: never a half-written file at ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def check_room(path: str | os.PathLike, need: int, what: str) -> None:
    """Refuse, before any work, to write ``need`` bytes where the disk has less free (``what`` says
    what would be written, for the error: a :class:`~ddkit.checks.ParameterError`, so it may name
    parameters in backticks)."""
    folder = Path(path).parent
    free = shutil.disk_usage(folder if folder.is_dir() else Path.cwd()).free
    if need > free:
        raise ParameterError(f"{what} would take {_size(need)}, but {folder} has only {_size(free)} free")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


class NpzStream:
    """An NPZ written one array after another, each filled in row order by :meth:`write`.

    ``with NpzStream(path) as npz: npz.begin("images", (N, H, W, C), np.uint8); npz.write(batch) …``
    Rows must arrive in order and add up to the declared shape; :meth:`close` checks that the last
    array is complete and moves the file into place."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp")
        self._zip = zipfile.ZipFile(self.tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._entry = None
        self._left = 0
        self._name = ""
        self._dtype = None

    def begin(self, name: str, shape: tuple[int, ...], dtype) -> None:
        """Start the array ``name`` of ``shape`` and ``dtype``; rows follow with :meth:`write`."""
        self._finish()
        self._dtype = np.dtype(dtype)
        self._name, self._left = name, int(np.prod(shape, dtype=np.int64))
        self._row = int(np.prod(shape[1:], dtype=np.int64))
        self._entry = self._zip.open(f"{name}.npy", mode="w", force_zip64=True)
        header = {"descr": npy_format.dtype_to_descr(self._dtype), "fortran_order": False, "shape": tuple(shape)}
        npy_format.write_array_header_2_0(self._entry, header)

    def write(self, rows: np.ndarray) -> None:
        """The next rows [n, ...] of the current array (cast to its dtype)."""
        rows = np.ascontiguousarray(rows, dtype=self._dtype)
        if rows.size > self._left or (rows.ndim and rows.size != rows.shape[0] * self._row):
            raise ValueError(f"rows of shape {list(rows.shape)} do not fit the rest of {self._name!r}")
        self._entry.write(rows.tobytes())
        self._left -= rows.size

    def _finish(self) -> None:
        if self._entry is not None:
            if self._left:
                raise ValueError(f"array {self._name!r} is missing {self._left} values")
            self._entry.close()
            self._entry = None

    def close(self) -> Path:
        """Finish the last array and move the file into place."""
        self._finish()
        self._zip.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file (nothing reaches the final path)."""
        try:
            if self._entry is not None:
                self._entry.close()
            self._zip.close()
        except (OSError, ValueError):
            pass
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> NpzStream:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
