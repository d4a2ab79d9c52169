"""Evaluation during training on the validation part (``ddkit train --val N --eval-every K``).

Every ``eval_every`` steps the trainer hands the EMA network to :meth:`Validator.evaluate`, which
measures, against the ``val`` part of the training data (:func:`ddkit.data.load_run_data`, never
trained on; the test part is never touched):

    fid, kid, kid_std     ``eval_num`` samples (DPM-Solver++, 10 steps, clipped x̂₀, start noise
                          fixed by the run's seed) against the val images in a feature space: the
                          shipped digits (8×8) or Fashion-MNIST (28×28 grey) features, else Inception (``ddkit.eval``)
    closer_than_real      share of samples nearer a training image than the val images typically
                          are (``ddkit.eval.memorization``: fresh samples 0.5, copies near 1);
                          also nn_median, nn_median_real (pixel distances)
    loss_val, loss_train  the training objective's denoising loss on the val images (at most
                          LOSS_NUM) and on as many training images, with the same timesteps and
                          noise, one draw of t in each of 4 bands of t per image
                          (``loss_*_bands``); loss_gap = loss_val − loss_train
                          (a model that memorises denoises its training images better: the cheapest
                          memorisation signal)

Randomness: the samples' start noise comes from per-sample generators (``ddkit.rng``), the loss's t
and noise from a generator made afresh for each evaluation, and torch's global generator (which
dropout draws from) is restored afterwards, so a run's weights are the same with evaluation on or
off, and a resumed run evaluates exactly as an uninterrupted one. :class:`EvalState` (the best
score so far, evaluations since, whether the memorisation warning was given) travels in each
checkpoint's state.pt.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..checks import ParameterError
from ..data import Dataset, load_run_data
from ..data.images import to_uint8
from ..eval.features import default_features, get_features
from ..eval.fid import fid, min_samples_fid, reference_stats
from ..eval.kid import kid
from ..eval.memorization import nearest_distances
from ..generate import generate
from .config import DEFAULT_SELECT_CLOSER, RunConfig
from .objectives import t_bands

EVAL_SAMPLER = "dpm++"
EVAL_STEPS = 10
CLOSER_WARNING = 0.6  # closer_than_real above this: one warning line per run
# select → the record's key (lower is better); fid-fresh: fid among the evaluations whose closer_than_real
# is at most select_closer, else the lowest closer (:func:`selection_key`)
SELECT_KEYS = {"fid": "fid", "kid": "kid", "loss": "loss_val", "fid-fresh": "fid"}
FRESH_RULES = ("fid-fresh",)
_LOSS_BATCH = 512
LOSS_NUM = 512
"""The loss is measured on at most this many validation images (the first ones) and as many training
images: on Fashion-MNIST's 2,000 it was 80 % of an evaluation's CPU time (16,000 forwards, 168 s of
one thread, against 42 s for the 500 samples). The t and noise are the same at every evaluation, so
checkpoints are compared on the same draws."""
_EVAL_SEED_OFFSET = 104_729  # the loss's t and noise: a stream of their own, apart from the sample seeds


@dataclass
class EvalState:
    """What evaluation remembers between evaluations and across a resume (in state.pt)."""

    best_step: int | None = None
    best_score: float | None = None
    since_best: int = 0  # evaluations since the best one
    warned: bool = False  # the memorisation warning was given
    last_step: int | None = None  # the step of the latest evaluation
    best_tier: int = 0  # the best one's tier (:func:`selection_key`; 0 for fid, kid and loss)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> EvalState:
        known = {k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def update(self, step: int, score: float, tier: int = 0) -> bool:
        """Record an evaluation's (tier, score); True when it is the best so far: a lower tier, or the
        same tier and a strictly lower score (NaN never)."""
        self.last_step = step
        better = math.isfinite(score) and (self.best_score is None or (tier, score) < (self.best_tier, self.best_score))
        if better:
            self.best_step, self.best_score, self.best_tier, self.since_best = step, float(score), int(tier), 0
        else:
            self.since_best += 1
        return better


def feature_extractor(config: RunConfig, val: Dataset):
    """The feature space of the run's images (:func:`~ddkit.eval.features.default_features`: the
    digits features for 8×8, the Fashion-MNIST features for 28×28 grey, else Inception), or a
    one-line error before training when none fits (Inception needs its weights on disk)."""
    size = val.x.shape[-1]
    name = default_features((size, size, val.x.shape[1]))
    if name != "inception":
        return get_features(name)
    try:
        return get_features("inception")
    except ValueError as e:
        raise ParameterError(
            f"`val`: evaluating {size}×{size} images during training needs Inception features "
            f"(the shipped features are for 8×8 and 28×28 grey images): {e}"
        ) from None


def fid_scorer(config: RunConfig, ref: Dataset) -> tuple[Callable[[torch.Tensor], float], int]:
    """(``score(x) -> FID`` of samples x [N, C, H, W] in [-1, 1] against the images of ``ref`` in the
    run's feature space (:func:`feature_extractor`), the fewest samples FID needs there)."""
    features = feature_extractor(config, ref)
    stats = reference_stats(features, to_uint8(ref.x))
    score = lambda x: fid(np.asarray(features(to_uint8(x)), dtype=np.float64), stats)  # noqa: E731
    return score, min_samples_fid(stats.mu.shape[0])


class Validator:
    """Evaluates a run's EMA network on its validation part. Built before training (every check
    that can fail is made here: features, sizes); :meth:`evaluate` returns one record."""

    def __init__(self, config: RunConfig, train: Dataset, objective, device: torch.device):
        tc = config.train
        self.config, self.objective, self.device = config, objective, device
        self.schedule = config.diffusion.build()
        self.val = load_run_data(config.data, tc.seed, "val")
        if self.val.kind != "image":
            raise ParameterError(f"`val` is for images; {config.data.source} is 2-D points")
        self.features = feature_extractor(config, self.val)
        self.val_images = to_uint8(self.val.x)
        dim = np.asarray(self.features(self.val_images[:2])).shape[1]
        need = min_samples_fid(dim)
        if len(self.val_images) < need:
            raise ParameterError(
                f"`val` {config.data.val} gives {len(self.val_images)} validation images: too few for FID in the "
                f"{dim}-dimensional {self.features.name} feature space, which needs at least {need}"
            )
        if tc.eval_num < need:
            raise ParameterError(
                f"`eval_num` {tc.eval_num} is too few samples for FID in the {dim}-dimensional "
                f"{self.features.name} feature space, which needs at least {need}"
            )
        self.stats = reference_stats(self.features, self.val_images)
        # memorisation: distances to the training part; the val images' typical distance, once
        self.train_images = to_uint8(train.x)
        self.typical = float(np.median(nearest_distances(self.val_images, self.train_images)))
        # the loss: val images and as many training images (a fixed subset), same t and noise
        n = min(len(self.val.x), len(train.x), LOSS_NUM)
        pick = np.sort(np.random.default_rng(tc.seed + _EVAL_SEED_OFFSET).choice(len(train.x), n, replace=False))
        self.loss_sets = {
            "val": (self.val.x[:n], None if self.val.y is None else self.val.y[:n]),
            "train": (train.x[pick], None if train.y is None else train.y[pick]),
        }
        self.bands = t_bands(self.schedule.num_timesteps)

    # ---- the pieces ----------------------------------------------------------------------------
    def _samples(self, ema_model: nn.Module) -> np.ndarray:
        tc = self.config.train
        labels = None
        if tc.class_cond:
            labels = torch.arange(tc.eval_num) % self.config.model.num_classes
        # an objective may say how its model samples (a consistency student: one step from σ_max)
        how = getattr(self.objective, "eval_sampling", None)
        sampling = how() if how else {"sampler": EVAL_SAMPLER, "steps": min(EVAL_STEPS, self.schedule.num_timesteps)}
        x = generate(
            self.config.diffusion.eps_network(ema_model, self.schedule),
            self.schedule,
            tc.eval_num,
            **sampling,
            seed=tc.seed,
            labels=labels,
            clip_x0=(-1.0, 1.0),
            device=self.device,
        )
        return to_uint8(x)

    def _scores(self, samples: np.ndarray) -> dict:
        feats = np.asarray(self.features(samples), dtype=np.float64)
        k, k_std = kid(feats, self.stats.feats, seed=self.config.train.seed)
        d = nearest_distances(samples, self.train_images)
        return {
            "fid": fid(feats, self.stats),
            "kid": k,
            "kid_std": k_std,
            "closer_than_real": float((d < self.typical).mean()),
            "nn_median": float(np.median(d)),
            "nn_median_real": self.typical,
        }

    @torch.no_grad()
    def _losses(self, ema_model: nn.Module) -> dict:
        """The objective's per-sample loss on the val and train sets, per band of t: each image is
        noised once in each band, with t and noise shared by the two sets."""
        g = torch.Generator().manual_seed(self.config.train.seed + _EVAL_SEED_OFFSET)
        x_val = self.loss_sets["val"][0]
        draws = [
            (torch.randint(lo, hi, (len(x_val),), generator=g), torch.randn(x_val.shape, generator=g))
            for lo, hi in self.bands
        ]
        out: dict = {}
        for name, (x0, y) in self.loss_sets.items():
            x0 = x0.to(self.device)
            y = None if y is None else y.to(self.device)
            per_band = {}
            for (lo, hi), (t, noise) in zip(self.bands, draws):
                losses = [
                    self.objective.per_sample_loss(
                        ema_model,
                        x0[i : i + _LOSS_BATCH],
                        None if y is None else y[i : i + _LOSS_BATCH],
                        t[i : i + _LOSS_BATCH].to(self.device),
                        noise[i : i + _LOSS_BATCH].to(self.device),
                    )
                    for i in range(0, len(x0), _LOSS_BATCH)
                ]
                per_band[f"{lo}-{hi - 1}"] = float(torch.cat(losses).mean())
            out[f"loss_{name}_bands"] = per_band
            out[f"loss_{name}"] = float(np.mean(list(per_band.values())))
        out["loss_gap"] = out["loss_val"] - out["loss_train"]
        out["loss_gap_bands"] = {
            b: out["loss_val_bands"][b] - out["loss_train_bands"][b] for b in out["loss_val_bands"]
        }
        return out

    # ---- one evaluation --------------------------------------------------------------------------
    def evaluate(self, ema_model: nn.Module) -> dict:
        """The scores of the module docstring for ``ema_model`` (in eval mode), with ``seconds`` it took."""
        start = time.perf_counter()
        # torch's global generator (CPU, and the device's on CUDA) as it was, whatever runs inside
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            record = self._scores(self._samples(ema_model))
            record.update(self._losses(ema_model))
        record.update(num=self.config.train.eval_num, val_num=len(self.val_images))
        record["seconds"] = time.perf_counter() - start
        return record


def selection_key(record: dict, select: str, select_closer: float = DEFAULT_SELECT_CLOSER) -> tuple[int, float]:
    """How ``select`` ranks an evaluation ``record``: (tier, score), lower is better, compared as a
    pair. fid, kid, loss: (0, that score). fid-fresh: (0, fid) when closer_than_real <= ``select_closer``
    (fresh enough), else (1, closer_than_real): any fresh evaluation beats every copying one, and
    among copying ones the least copying wins (the fallback). The order is total, so the best of a
    run's evaluations is the same whether chosen online, step by step, or afterwards (:func:`pick`)."""
    if select not in SELECT_KEYS:
        raise ParameterError(f"`select` must be one of {', '.join(SELECT_KEYS)}, got {select!r}")
    if select in FRESH_RULES:
        closer = float(record["closer_than_real"])
        if not closer <= select_closer:
            return 1, closer
    return 0, float(record[SELECT_KEYS[select]])


def pick(records: list[dict], select: str, select_closer: float = DEFAULT_SELECT_CLOSER) -> int | None:
    """The index in ``records`` (evaluations in step order) that ``select`` chooses: the first of the
    lowest (tier, score), as :meth:`EvalState.update` keeps it; None when no score is finite."""
    state = EvalState()
    for i, r in enumerate(records):
        tier, score = selection_key(r, select, select_closer)
        state.update(i, score, tier)
    return state.best_step


def describe_choice(
    select: str, score: float, tier: int = 0, closer: float | None = None, select_closer: float | None = None
) -> str:
    """What chose a checkpoint, for one line: 'val fid 4.2' (with ', closer 0.61' when ``closer`` is
    given); fid-fresh: 'val fid-fresh: fid 4.2 with closer 0.52 <= 0.55', or when no evaluation was
    fresh enough (``tier`` 1, ``score`` is then the closer) 'val fid-fresh: no evaluation with closer
    <= 0.55, the least copying (closer 0.62)'."""
    limit = DEFAULT_SELECT_CLOSER if select_closer is None else select_closer
    if select in FRESH_RULES and tier == 1:
        return f"val {select}: no evaluation with closer <= {limit:g}, the least copying (closer {score:.2f})"
    if select in FRESH_RULES:
        shown = "" if closer is None else f" with closer {closer:.2f} <= {limit:g}"
        return f"val {select}: fid {score:.4g}{shown}"
    return f"val {select} {score:.4g}" + ("" if closer is None else f", closer {closer:.2f}")


def memorisation_warning(step: int, closer: float, best: str) -> str:
    """The one warning line when ``closer`` (closer_than_real) passes :data:`CLOSER_WARNING`."""
    return (
        f"ddkit: warning: step {step}: {100 * closer:.0f}% of the samples are nearer a training image than the "
        f"validation images are (fresh samples: 50%): the model is starting to copy its training data; {best}"
    )


def say(line: str) -> None:
    """One line on stderr that leaves a progress bar intact."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stderr)
