"""Training a noise-conditional classifier p_φ(y | x_t, t) for classifier guidance (Dhariwal &
Nichol 2021): cross-entropy on x_t = q_sample(x_0, t, ε) with t uniform over the T steps, minimised
by the same :class:`~ddkit.train.Trainer` as the diffusion model (EMA, checkpoints, resume,
progress bar, torchrun) through :class:`ClassifierObjective`.

The run folder is a ddkit run like any other (``config.json`` with the schedule, image size and
channels; ``model.kind`` is ``"classifier"``), loaded with ``ddkit.load(CLS_RUN)``. Its
``log.jsonl`` gets, at every preview step, a record of the held-out accuracy in bands of t.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import RunConfig
from .data import Dataset
from .forward import q_sample
from .schedule import Schedule

NUM_BANDS = 4


def t_bands(num_timesteps: int, num_bands: int = NUM_BANDS) -> list[tuple[int, int]]:
    """``num_bands`` half-open bands [lo, hi) of equal width covering 0..T-1 (T = 1000: [0, 250), …)."""
    edges = [round(i * num_timesteps / num_bands) for i in range(num_bands + 1)]
    return [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]


@torch.no_grad()
def heldout_accuracy(classifier: nn.Module, schedule: Schedule, data: Dataset, *, seed: int = 0,
                     num_bands: int = NUM_BANDS, batch_size: int = 512) -> dict[str, float]:
    """Accuracy of ``classifier(x_t, t)`` on ``data`` (x [N, C, H, W], labels y [N]) noised at t
    drawn uniformly in each band of :func:`t_bands`: ``{"0-249": acc, "250-499": acc, …}``.
    The draws come from a generator seeded with ``seed``, so every call sees the same x_t."""
    device = next(classifier.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = {}
    for lo, hi in t_bands(schedule.num_timesteps, num_bands):
        correct = 0
        for start in range(0, len(data.x), batch_size):
            x0 = data.x[start:start + batch_size]
            t = torch.randint(lo, hi, (len(x0),), generator=g)
            x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))
            pred = classifier(x_t.to(device), t.to(device)).argmax(1).cpu()
            correct += int((pred == data.y[start:start + batch_size]).sum())
        out[f"{lo}-{hi - 1}"] = correct / len(data.x)
    return out


def split_heldout(data: Dataset, fraction: float = 0.1, seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, held-out): a fixed random ``fraction`` of ``data`` (at least one example) held out."""
    n = len(data.x)
    k = max(1, round(fraction * n))
    if k >= n:
        raise ValueError(f"the data set has {n} examples: too few to hold out a slice for accuracy")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    parts = []
    for idx, source in ((perm[k:].sort().values, data.source), (perm[:k].sort().values, f"{data.source}[held-out {k}]")):
        parts.append(Dataset(data.x[idx].contiguous(), data.y[idx], data.num_classes, data.class_names, data.kind,
                             source))
    return parts[0], parts[1]


class ClassifierObjective:
    """Cross-entropy of ``net(x_t, t)`` against the labels, x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε with t
    uniform over 0..T-1 and ε ~ N(0, I) (both from the trainer's generator). ``preview`` logs the
    held-out accuracy per band of t (:func:`heldout_accuracy`) to RUN/log.jsonl."""

    def __init__(self, config: RunConfig, heldout: Dataset):
        self.config, self.heldout = config, heldout
        self.schedule = config.diffusion.build()

    def loss(self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
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
        record = {"step": step, "heldout": self.heldout.source, "heldout_size": len(self.heldout.x),
                  "heldout_accuracy": acc}
        with open(Path(out) / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


def last_accuracy(run: str | Path) -> dict | None:
    """The newest held-out accuracy record in a classifier run's log.jsonl (None if there is none)."""
    found = None
    path = Path(run) / "log.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            if "heldout_accuracy" in rec:
                found = rec
    return found
