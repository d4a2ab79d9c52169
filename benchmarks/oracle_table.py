"""DDIM's Table 1 for the exact ε of a Gaussian mixture: every η and S of ``ddkit.eval.table``,
scored by the energy distance to the mixture's law, beside the level of true samples scored the same
way. With the exact ε, what remains is the sampler's own error (docs/results.md, "Quality against
steps").

    python benchmarks/oracle_table.py --num 10000 --out docs/eval/      # oracle_table.csv, .md, .png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ddkit.eval.energy import energy_distance, energy_distance_to_mixture
from ddkit.eval.table import ETAS, STEPS, QualityTable, check_grid, quality_table
from ddkit.generate import start_noise
from ddkit.oracle import GaussianMixture
from ddkit.samplers import run_sampler
from ddkit.schedule import Schedule


def oracle_quality_table(
    mixture: GaussianMixture,
    schedule: Schedule,
    *,
    steps_list: Sequence[int] = STEPS,
    etas: Sequence[float] = ETAS,
    num: int = 2000,
    seeds: Sequence[int] = (0, 1, 2),
    spacing: str | None = None,
    progress: bool = False,
) -> QualityTable:
    """The table with the exact ε of a Gaussian mixture (``mixture.eps_fn``), scored by the energy
    distance of ``num`` DDIM samples to the mixture's law.

    For a 1- or 2-D mixture the score is against the exact law (:func:`energy_distance_to_mixture`:
    unbiased, no second sample), so what remains is the sampler's own error plus the samples' noise;
    the floor row scores ``num`` true samples the same way (mean ≈ 0, its sd the noise level). In
    more dimensions it is the V-statistic against ``num`` fresh true samples per seed, and the floor
    two independent true sets. The start noise is per sample (as in ``generate``), the η > 0 noise
    from one generator per seed."""
    check_grid(steps_list, etas, seeds, schedule)  # before the floor, which needs a seed
    model_fn = mixture.eps_fn(schedule.alpha_bars)
    cache: dict = {}
    exact = mixture.dim in (1, 2)

    def truth(seed, which):
        key = ("truth", seed, which)
        if key not in cache:
            cache[key] = mixture.sample(num, torch.Generator().manual_seed(10_000 * (which + 1) + seed))[0]
        return cache[key]

    def sample_fn(steps, eta, seed):
        # start noise per sample, as in generate (drawn once per seed); the sampler's own noise (η > 0)
        # from one generator per cell: thousands of per-sample generators cost more than the exact ε
        if ("x_T", seed) not in cache:
            cache[("x_T", seed)] = start_noise(seed, range(num), (mixture.dim,))[0].double()
        return run_sampler(
            "ddim",
            model_fn,
            cache[("x_T", seed)],
            schedule,
            generator=torch.Generator().manual_seed(seed),
            steps=steps,
            eta=eta,
            spacing=spacing,
        )

    if exact:

        def score_fn(x, seed):
            return energy_distance_to_mixture(x, mixture)

        floors = [score_fn(truth(seed, 1), seed) for seed in seeds]
        note = (
            f"{num} points against the mixture's exact law (exact ε); the real-data level is {num} true "
            "samples scored the same way"
        )
    else:

        def score_fn(x, seed):
            return energy_distance(x, truth(seed, 0))

        floors = [energy_distance(truth(seed, 0), truth(seed, 1)) for seed in seeds]
        note = f"{num} points against fresh true samples (exact ε)"
    return quality_table(
        sample_fn,
        score_fn,
        schedule=schedule,
        steps_list=steps_list,
        etas=etas,
        seeds=seeds,
        metric="energy distance",
        floor=(float(np.mean(floors)), float(np.std(floors, ddof=1)) if len(floors) > 1 else 0.0),
        progress=progress,
        note=note,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10_000, help="points per cell and start-noise set")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--schedule", choices=("cosine", "linear"), default="cosine")
    ap.add_argument("--out", type=Path, default=Path("docs/eval"))
    args = ap.parse_args()
    schedule = Schedule.cosine() if args.schedule == "cosine" else Schedule.linear()
    table = oracle_quality_table(GaussianMixture.default_2d(), schedule, num=args.num, seeds=args.seeds, progress=True)
    print(table.format())
    for kind, path in table.save(args.out, "oracle_table").items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
