"""Splits of a data set: the seeded hold-out of a folder (``--holdout``), and the data a run's
configuration names (:func:`load_run_data`), one part at a time. The digits' own fixed train/test
split is part of that data set (:func:`ddkit.data.datasets.digits_split_indices`).

Every split here is :func:`holdout_split`: a seeded permutation, the first part held out.
"""

from __future__ import annotations

import numpy as np
import torch

from .datasets import Dataset, load_data

HOLDOUT_PARTS = ("train", "heldout")


def holdout_split(num: int, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, heldout) row indices, sorted and disjoint, of a data set of ``num`` examples:
    ``max(1, round(fraction · num))`` rows chosen by ``numpy.random.default_rng(seed).permutation``
    are held out (none when fraction is 0). The split depends only on (num, fraction, seed)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction}")
    n_held = 0 if fraction == 0 else max(1, round(fraction * num))
    if n_held >= num:
        raise ValueError(f"holdout {fraction} of {num} images leaves none to train on")
    perm = np.random.default_rng(seed).permutation(num)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def take(data: Dataset, idx: np.ndarray, source: str) -> Dataset:
    """The rows ``idx`` of ``data`` as a new Dataset named ``source``."""
    idx = torch.from_numpy(np.asarray(idx, dtype=np.int64))
    y = None if data.y is None else data.y[idx]
    return Dataset(data.x[idx].contiguous(), y, data.num_classes, data.class_names, data.kind, source)


def split_holdout(data: Dataset, fraction: float, seed: int, part: str) -> Dataset:
    """The ``part`` ("train" or "heldout") of ``data`` under ``holdout_split(len(data), fraction, seed)``."""
    if part not in HOLDOUT_PARTS:
        raise ValueError(f"part must be one of {', '.join(HOLDOUT_PARTS)}, got {part!r}")
    if part == "heldout" and fraction == 0:
        raise ValueError(f"{data.source} has no held-out part (trained with holdout 0)")
    idx = holdout_split(len(data), fraction, seed)[part == "heldout"]
    return take(data, idx, f"{data.source} ({part}, holdout {fraction:g}, seed {seed})")


def load_run_data(d, seed: int, part: str = "train") -> Dataset:
    """The data set a run's data configuration ``d`` (a :class:`~ddkit.training.config.DataConfig`)
    names; ``seed`` draws the toy sets. With ``d.holdout`` > 0, ``part`` "train" (what the trainer
    sees) or "heldout" (kept for evaluation; :func:`split_holdout`)."""
    data = load_data(d.source, image_size=d.image_size, channels=d.channels, seed=seed, toy_size=d.toy_size)
    if d.holdout == 0 and part == "train":
        return data
    return split_holdout(data, d.holdout, d.holdout_seed, part)
