"""What the trainer minimises. An objective has two methods, ``loss(net, x0, y, generator)`` and
``preview(run, step, ema_model, data, history)``; the :class:`~ddkit.training.trainer.Trainer`
supplies everything else (EMA, checkpoints, resume, progress bar, torchrun).

- :class:`DiffusionObjective`: L_simple (or its min-SNR or EDM weighting, on uniform or
  log-normal noise levels, for an ε, x₀, v or EDM-preconditioned network) on ``q_sample``d batches,
  with label dropout to the null label for classifier-free guidance and non-leaking augmentation.
- :class:`ClassifierObjective`: the noise-conditional classifier p_φ(y | x_t, t) for classifier
  guidance (Dhariwal & Nichol 2021): cross-entropy on x_t = q_sample(x_0, t, ε) with t uniform over
  the T steps. Its run folder is a ddkit run like any other (``model.kind`` is ``"classifier"``),
  loaded with ``ddkit.load(CLS_RUN)``; its ``log.jsonl`` gets, at every preview step, the held-out
  accuracy in bands of t.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset, split_holdout
from ..forward import q_sample
from ..losses import diffusion_loss, timestep_probs
from ..schedule import Schedule
from .augment import augment
from .config import RunConfig
from .reporting import write_progress_images
from .rundir import RunDir

NUM_BANDS = 4


def t_bands(num_timesteps: int, num_bands: int = NUM_BANDS) -> list[tuple[int, int]]:
    """``num_bands`` half-open bands [lo, hi) of equal width covering 0..T-1 (T = 1000: [0, 250), …)."""
    edges = [round(i * num_timesteps / num_bands) for i in range(num_bands + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]


@torch.no_grad()
def heldout_accuracy(
    classifier: nn.Module,
    schedule: Schedule,
    data: Dataset,
    *,
    seed: int = 0,
    num_bands: int = NUM_BANDS,
    batch_size: int = 512,
) -> dict[str, float]:
    """Accuracy of ``classifier(x_t, t)`` on ``data`` (x [N, C, H, W], labels y [N]) noised at t
    drawn uniformly in each band of :func:`t_bands`: ``{"0-249": acc, "250-499": acc, …}``.
    The draws come from a generator seeded with ``seed``, so every call sees the same x_t."""
    device = next(classifier.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = {}
    for lo, hi in t_bands(schedule.num_timesteps, num_bands):
        correct = 0
        for start in range(0, len(data.x), batch_size):
            x0 = data.x[start : start + batch_size]
            t = torch.randint(lo, hi, (len(x0),), generator=g)
            x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))
            pred = classifier(x_t.to(device), t.to(device)).argmax(1).cpu()
            correct += int((pred == data.y[start : start + batch_size]).sum())
        out[f"{lo}-{hi - 1}"] = correct / len(data.x)
    return out


def split_heldout(data: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out): a fixed random ``fraction`` of ``data`` (at least one example) held out
    (:func:`ddkit.data.split_holdout`)."""
    if max(1, round(fraction * len(data))) >= len(data):
        raise ValueError(f"the data set has {len(data)} examples: too few to hold out a slice for accuracy")
    return split_holdout(data, fraction, seed, "train"), split_holdout(data, fraction, seed, "heldout")


class DiffusionObjective:
    """L_simple (or its min-SNR or EDM weighting) on ``q_sample``d batches, t drawn uniformly or from
    EDM's log-normal noise levels, with label dropout to the null label for classifier-free guidance
    and, with ``augment`` > 0, non-leaking augmentation: the network gets the augmentation labels
    (``augment_labels=``) when it has a layer for them (``augment_dim`` > 0)."""

    def __init__(self, config: RunConfig, num_classes: int | None):
        self.config, self.num_classes = config, num_classes
        self.schedule = config.diffusion.build()
        tc = config.train
        self.t_probs = timestep_probs(self.schedule, tc.noise_levels, tc.p_mean, tc.p_std)
        self.tell_augment = tc.augment > 0 and getattr(config.model, "augment_dim", 0) > 0

    def loss(
        self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """x0: [B, ...]; y: LongTensor [B] or None; every random draw from ``generator`` (label
        dropout, then the augmentation, then t and the noise)."""
        tc = self.config.train
        if tc.class_cond:
            drop = torch.rand(y.shape, generator=generator, device=y.device) < tc.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        else:
            y = None
        net_y = lambda x, t: net(x, t, y)  # noqa: E731  (the raw network, labels bound)
        if tc.augment > 0:
            x0, labels = augment(x0, tc.augment, tc.augment_ops, generator)
            if self.tell_augment:
                net_y = lambda x, t: net(x, t, y, augment_labels=labels)  # noqa: E731
        if self.t_probs is not None and self.t_probs.device != x0.device:
            self.t_probs = self.t_probs.to(x0.device)
        return self._loss(net_y, x0, generator=generator, t_probs=self.t_probs)

    def per_sample_loss(
        self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """The same loss per example [N] at given timesteps ``t`` [N] and ``noise`` (like x0), with
        the labels as given (no label dropout) and no augmentation: what evaluation on the validation
        part measures."""
        y = y if self.config.train.class_cond else None
        return self._loss(lambda x, t_: net(x, t_, y), x0, t=t, noise=noise, reduction="none")

    def _loss(self, net, x0: torch.Tensor, **draws) -> torch.Tensor:
        tc, d = self.config.train, self.config.diffusion
        return diffusion_loss(
            net,
            self.schedule,
            x0,
            weighting=tc.loss_weighting,
            snr_gamma=tc.snr_gamma,
            prediction=d.target,
            sigma_data=d.sigma_data,
            **draws,
        )

    def preview(self, out: Path, step: int, ema_model: nn.Module, data: Dataset, history) -> None:
        """RUN/samples/step-N.png and RUN/loss.png (rank 0 only)."""
        eps_model = self.config.diffusion.eps_network(ema_model, self.schedule)
        write_progress_images(out, step, eps_model, self.schedule, data, self.config.train, history)


class ClassifierObjective:
    """Cross-entropy of ``net(x_t, t)`` against the labels, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with t
    uniform over 0..T-1 and ε ~ N(0, I) (both from the trainer's generator). ``preview`` logs the
    held-out accuracy per band of t (:func:`heldout_accuracy`) to RUN/log.jsonl."""

    def __init__(self, config: RunConfig, heldout: Dataset):
        self.config, self.heldout = config, heldout
        self.schedule = config.diffusion.build()

    def loss(
        self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator
    ) -> torch.Tensor:
        """x0: [B, C, H, W]; y: LongTensor [B] (required)."""
        if y is None:
            raise ValueError("a classifier needs labelled data")
        t = torch.randint(0, self.schedule.num_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return F.cross_entropy(net(q_sample(self.schedule, x0, t, noise), t).float(), y)

    def preview(self, out: Path, step: int, ema_model: nn.Module, data: Dataset, history) -> None:
        """Append ``{"step", "heldout", "heldout_accuracy": {band: accuracy}}`` to RUN/log.jsonl
        (once per step: the trainer's final preview may repeat the last one)."""
        if getattr(self, "_logged_step", None) == step:
            return
        self._logged_step = step
        was_training = ema_model.training
        ema_model.eval()
        acc = heldout_accuracy(ema_model, self.schedule, self.heldout, seed=self.config.train.seed)
        ema_model.train(was_training)
        RunDir(out).append_log(
            {"step": step, "heldout": self.heldout.source, "heldout_size": len(self.heldout.x), "heldout_accuracy": acc}
        )


def last_accuracy(run: str | Path) -> dict | None:
    """The newest held-out accuracy record in a classifier run's log.jsonl (None if there is none)."""
    found = [r for r in RunDir(run).read_log() if "heldout_accuracy" in r]
    return found[-1] if found else None
