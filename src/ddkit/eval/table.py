"""Sample quality against the number of sampling steps: the layout of DDIM's Table 1.

Rows η ∈ {0, 0.2, 0.5, 1} (η = 1 over all T steps is DDPM), columns S ∈ {10, 20, 50, 100, 1000} DDIM
steps. Every cell draws the same samples' start noise (``ddkit.generate``: sample i's x_T comes from
(seed, i) alone), so the cells differ only by the sampler; the whole table is repeated for each
start-noise set in ``seeds`` and a cell reports the mean and standard deviation over them. The
score is FID (or KID) against held-out images for a network (``sample_quality_table``); any other
sampler and score go through ``quality_table`` (benchmarks/oracle_table.py scores the exact ε of a
Gaussian mixture with it, which separates the sampler's error from the network's).

    table = sample_quality_table(model, schedule, steps_list=(10, 20), etas=(0, 1), num=500, seeds=(0, 1))
    print(table.format()); table.save("out/")    # quality_table.csv, .md and .png
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checks import is_int
from ..data.images import to_uint8
from ..generate import ModelFnFor, generate
from ..plots import plot_quality_table
from ..schedule import Schedule

__all__ = ["STEPS", "ETAS", "QualityTable", "check_grid", "quality_table", "sample_quality_table"]

STEPS = (10, 20, 50, 100, 1000)
ETAS = (0.0, 0.2, 0.5, 1.0)


@dataclass(frozen=True)
class QualityTable:
    """values[e, s, r]: the score of η = etas[e], S = steps_list[s], start-noise set seeds[r] (lower is
    better). seconds[e, s]: wall time of the cell (all seeds, sampling and scoring). floor / floor_sd:
    the same score for real data against the reference (the level a perfect sampler reaches), or None."""

    metric: str
    etas: tuple[float, ...]
    steps_list: tuple[int, ...]
    seeds: tuple[int, ...]
    values: np.ndarray
    seconds: np.ndarray
    floor: float | None = None
    floor_sd: float | None = None
    note: str = ""

    def mean(self) -> np.ndarray:
        """[len(etas), len(steps_list)] means over the start-noise sets."""
        return self.values.mean(axis=2)

    def sd(self) -> np.ndarray:
        """[len(etas), len(steps_list)] sample standard deviations over the sets (0 for one set)."""
        return self.values.std(axis=2, ddof=1) if len(self.seeds) > 1 else np.zeros(self.values.shape[:2])

    def rows(self) -> list[dict]:
        """One dict per cell: eta, steps, mean, sd, seconds and the value of each seed."""
        mean, sd = self.mean(), self.sd()
        return [
            {
                "eta": eta,
                "steps": steps,
                "mean": float(mean[e, s]),
                "sd": float(sd[e, s]),
                "seconds": float(self.seconds[e, s]),
                **{f"seed_{seed}": float(self.values[e, s, r]) for r, seed in enumerate(self.seeds)},
            }
            for e, eta in enumerate(self.etas)
            for s, steps in enumerate(self.steps_list)
        ]

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(self.rows()[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def to_markdown(self) -> str:
        """DDIM's Table 1 layout: a row per η, a column per S, cells "mean ± sd"."""
        mean, sd = self.mean(), self.sd()
        lines = [
            f"| {self.metric} (η \\ S) | " + " | ".join(str(s) for s in self.steps_list) + " |",
            "|---|" + "---:|" * len(self.steps_list),
        ]
        for e, eta in enumerate(self.etas):
            cells = " | ".join(f"{mean[e, s]:.4g} ± {sd[e, s]:.2g}" for s in range(len(self.steps_list)))
            lines.append(f"| η = {eta:g} | {cells} |")
        lines.append("")
        lines.append(
            f"mean ± sd over {len(self.seeds)} start-noise sets (seeds {', '.join(map(str, self.seeds))})"
            + ("" if self.floor is None else f"; real data: {self.floor:.4g} ± {self.floor_sd or 0:.2g}")
            + (f"; {self.note}" if self.note else "")
        )
        return "\n".join(lines) + "\n"

    def format(self) -> str:
        """The Markdown table, for printing."""
        return self.to_markdown()

    def plot(self, path: str | Path) -> Path:
        """A PNG of the score against S (log axis), one curve per η, error bars ±sd, the floor dashed."""
        return plot_quality_table(self, path)

    def save(self, out: str | Path, stem: str = "quality_table", *, plot: bool = True) -> dict[str, Path]:
        """Write OUT/STEM.csv, OUT/STEM.md and (``plot``, needs matplotlib) OUT/STEM.png; returns their paths."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"csv": out / f"{stem}.csv", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
        paths["csv"].write_text(self.to_csv())
        paths["md"].write_text(self.to_markdown())
        if plot:
            self.plot(paths["png"])
        else:
            del paths["png"]
        return paths


def check_grid(steps_list: Sequence[int], etas: Sequence[float], seeds: Sequence[int], schedule: Schedule) -> None:
    """A ValueError, naming the allowed values, for an empty or out-of-range table grid."""
    if not steps_list or not etas or not seeds:
        raise ValueError("steps_list, etas and seeds must each have at least one value")
    for s in steps_list:
        if not is_int(s) or not 1 <= s <= schedule.num_timesteps:
            raise ValueError(f"steps must be integers in [1, {schedule.num_timesteps}] (the schedule's T), got {s!r}")
    for eta in etas:
        if not 0.0 <= float(eta) <= 1.0:
            raise ValueError(f"eta must be in [0, 1], got {eta}")


def quality_table(
    sample_fn: Callable[[int, float, int], object],
    score_fn: Callable[[object, int], float],
    *,
    schedule: Schedule,
    steps_list: Sequence[int] = STEPS,
    etas: Sequence[float] = ETAS,
    seeds: Sequence[int] = (0, 1, 2),
    metric: str = "score",
    floor: tuple[float, float] | None = None,
    note: str = "",
    progress: bool = False,
) -> QualityTable:
    """The table for any sampler and score: ``sample_fn(steps, eta, seed) -> samples`` (sample i
    depending only on (seed, i)), ``score_fn(samples, seed) -> float`` (lower is better);
    ``floor`` = (mean, sd) of the real-data level."""
    check_grid(steps_list, etas, seeds, schedule)
    values = np.zeros((len(etas), len(steps_list), len(seeds)))
    seconds = np.zeros((len(etas), len(steps_list)))
    for e, eta in enumerate(etas):
        for s, steps in enumerate(steps_list):
            t0 = time.perf_counter()
            for r, seed in enumerate(seeds):
                values[e, s, r] = score_fn(sample_fn(int(steps), float(eta), int(seed)), int(seed))
            seconds[e, s] = time.perf_counter() - t0
            if progress:
                print(
                    f"  η = {eta:g}, S = {steps}: {metric} {values[e, s].mean():.4g} "
                    f"({', '.join(f'{v:.4g}' for v in values[e, s])}) in {seconds[e, s]:.0f} s",
                    flush=True,
                )
    return QualityTable(
        metric,
        tuple(float(e) for e in etas),
        tuple(int(s) for s in steps_list),
        tuple(int(r) for r in seeds),
        values,
        seconds,
        None if floor is None else float(floor[0]),
        None if floor is None else float(floor[1]),
        note,
    )


def sample_quality_table(
    model: torch.nn.Module,
    schedule: Schedule,
    *,
    steps_list: Sequence[int] = STEPS,
    etas: Sequence[float] = ETAS,
    num: int = 1000,
    seeds: Sequence[int] = (0, 1, 2),
    reference="digits:test",
    metric: str = "fid",
    features=None,
    train_images="digits:train",
    model_fn_for: ModelFnFor | None = None,
    labels: torch.Tensor | None = None,
    spacing: str | None = None,
    clip_x0=(-1.0, 1.0),
    batch_size: int = 500,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> QualityTable:
    """The quality-vs-steps table of a trained image network (what ``ddkit eval RUN --table`` prints).

    For each η in ``etas`` and S in ``steps_list`` (``--etas``, ``--steps-list``) draws ``num``
    (``--num``) images with DDIM (``ddkit.generate.generate``, the same start noise in every cell for a
    seed) and scores them with ``ddkit.eval.evaluate_samples`` against ``reference`` (a split name,
    folder, .npz or uint8 array); ``metric`` "fid" or "kid". ``model_fn_for``/``labels`` plug in
    guidance and classes as in ``generate``. The real-data level: ``num`` images of ``train_images``
    (None: no floor) against the reference, over the same number of random draws as seeds.
    """
    from . import evaluate_samples
    from .references import load_reference

    if metric not in ("fid", "kid"):
        raise ValueError(f"metric must be fid or kid for images, got {metric!r}")
    check_grid(steps_list, etas, seeds, schedule)
    ref, ref_name = load_reference(reference)

    def sample_fn(steps, eta, seed):
        x = generate(
            model,
            schedule,
            num,
            sampler="ddim",
            batch_size=batch_size,
            seed=seed,
            labels=labels,
            model_fn_for=model_fn_for,
            clip_x0=clip_x0,
            device=device,
            steps=steps,
            eta=eta,
            spacing=spacing,
        )
        return to_uint8(x.clamp(-1, 1))

    def score_fn(images, seed):
        return evaluate_samples(images, ref, metrics=(metric,), features=features, seed=seed)[metric]

    floor = None
    if train_images is not None:
        real, _ = load_reference(train_images)
        scores = [score_fn(real[np.random.default_rng(seed).permutation(len(real))[:num]], seed) for seed in seeds]
        floor = (float(np.mean(scores)), float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0)
    return quality_table(
        sample_fn,
        score_fn,
        schedule=schedule,
        steps_list=steps_list,
        etas=etas,
        seeds=seeds,
        metric=metric.upper(),
        floor=floor,
        progress=progress,
        note=f"{num} samples against {ref_name}",
    )
