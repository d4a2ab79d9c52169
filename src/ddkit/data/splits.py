"""Splits of a data set: the seeded hold-out of a folder (``--holdout``), the validation part carved
out of the training data (``--val``), and the data a run's configuration names
(:func:`load_run_data`), one part at a time. The digits' own fixed train/test split is part of that
data set (:func:`ddkit.data.datasets.digits_split_indices`).

Every split here is :func:`holdout_split`: a seeded permutation, the first part held out.

    the data set            digits:train (1,297)   a folder (all its images)
    ├── heldout             (digits:test)          --holdout FRACTION, seed --holdout-seed
    └── the training data   all of it              the rest
        ├── val             --val N|FRACTION, seed --val-seed: evaluated during training
        └── train           the rest: what the trainer sees
"""

from __future__ import annotations

import numpy as np

from ..checks import ParameterError
from .datasets import Dataset, load_data, take

HOLDOUT_PARTS = ("train", "heldout")
RUN_PARTS = ("train", "val", "heldout")


def holdout_size(num: int, size: int | float) -> int:
    """How many of ``num`` examples a hold-out of ``size`` takes: an int ``size`` >= 1 is a count,
    a float in [0, 1) a fraction (``max(1, round(size · num))``, none for 0)."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool) and size >= 1:
        n_held = int(size)
    elif 0.0 <= size < 1.0:
        n_held = 0 if size == 0 else max(1, round(size * num))
    else:
        raise ValueError(f"holdout fraction must be in [0, 1) (or a count >= 1), got {size}")
    if n_held >= num:
        raise ValueError(f"holdout {size} of {num} images leaves none to train on")
    return n_held


def holdout_split(num: int, fraction: int | float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) row indices, sorted and disjoint, of a data set of ``num`` examples:
    :func:`holdout_size` rows (``fraction`` in [0, 1), or a count >= 1) chosen by
    ``numpy.random.default_rng(seed).permutation`` are held out (none when fraction is 0). The split
    depends only on (num, fraction, seed)."""
    n_held = holdout_size(num, fraction)
    perm = np.random.default_rng(seed).permutation(num)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def split_holdout(data: Dataset, fraction: float, seed: int, part: str) -> Dataset:
    """The ``part`` ("train" or "heldout") of ``data`` under ``holdout_split(len(data), fraction, seed)``."""
    if part not in HOLDOUT_PARTS:
        raise ValueError(f"part must be one of {', '.join(HOLDOUT_PARTS)}, got {part!r}")
    if part == "heldout" and fraction == 0:
        raise ValueError(f"{data.source} has no held-out part (trained with holdout 0)")
    idx = holdout_split(len(data), fraction, seed)[part == "heldout"]
    return take(data, idx, f"{data.source} ({part}, holdout {fraction:g}, seed {seed})")


def split_val(data: Dataset, val: int | float, seed: int, part: str) -> Dataset:
    """The ``part`` ("train" or "val") of the training data ``data`` when ``val`` (a count >= 1 or a
    fraction in (0, 1)) of it is the validation part, drawn by :func:`holdout_split` with ``seed``."""
    if part not in ("train", "val"):
        raise ValueError(f"part must be train or val, got {part!r}")
    try:
        train, held = holdout_split(len(data), val, seed)
    except ValueError:
        raise ParameterError(
            f"`val` {val} of the {len(data)} training images of {data.source} leaves none to train on"
        ) from None
    return take(data, held if part == "val" else train, f"{data.source} ({part}, val {val:g}, seed {seed})")


def load_run_data(d, seed: int, part: str = "train") -> Dataset:
    """The data set a run's data configuration ``d`` (a :class:`~ddkit.training.config.DataConfig`)
    names; ``seed`` draws the toy sets. ``part``:

    - "train": what the trainer sees (without the ``heldout`` part and without the ``val`` part);
    - "val": the validation part (``d.val`` > 0), carved out of the training data with ``d.val_seed``
      and evaluated during training;
    - "heldout": the ``d.holdout`` part of a folder, for evaluation after training (never seen
      during training nor model selection)."""
    if part not in RUN_PARTS:
        raise ValueError(f"part must be one of {', '.join(RUN_PARTS)}, got {part!r}")
    data = load_data(d.source, image_size=d.image_size, channels=d.channels, seed=seed, toy_size=d.toy_size)
    if part == "heldout":
        return split_holdout(data, d.holdout, d.holdout_seed, "heldout")
    if d.holdout > 0:
        data = split_holdout(data, d.holdout, d.holdout_seed, "train")
    val = getattr(d, "val", 0)
    if val == 0:
        if part == "val":
            raise ValueError(f"{d.source} has no validation part (trained without val)")
        return data
    return split_val(data, val, getattr(d, "val_seed", 0), part)
