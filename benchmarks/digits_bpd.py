"""Bits per dimension on held-out digits: a trained run against an untrained network of the same config.

The variational bound (ddkit.eval.likelihood.nll_bpd: L_T + every L_{t-1} + the discretised decoder
L_0 with the digits' 17 grey levels, all T timesteps) on the first --num digits of digits:test, for
the run's EMA weights and for a freshly initialised network (seed 0). The uniform distribution over
17 levels scores log2(17) = 4.09 bits/dim; a model that has learned anything scores below it.

    python benchmarks/digits_bpd.py --run runs/digits --num 500 --plot bpd_terms.png
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

import ddkit
from ddkit.data import load_data
from ddkit.eval.likelihood import nll_bpd
from ddkit.nn import build_model
from ddkit.plots import plot_bound_terms

DIGITS_LEVELS = 17


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a digits run folder (ddkit train --data digits:train)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder of the run (default: the newest)")
    p.add_argument("--num", type=int, default=500, help="digits of digits:test to score (default: all 500)")
    p.add_argument("--variance", choices=("large", "small"), default="large", help="σ_t² = β_t or β̃_t")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per network call (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the x_t draws")
    p.add_argument(
        "--no-clip",
        action="store_true",
        help="leave x̂₀ unclamped in p_θ's mean (default: clamped to "
        "[-1, 1], as DDPM's and improved-diffusion's evaluations)",
    )
    p.add_argument("--untrained-num", type=int, default=None, help="digits for the untrained network (default: --num)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--plot", type=Path, default=None, help="PNG of the trained run's per-timestep terms")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x0 = load_data("digits:test").x[: args.num]
    model, schedule, config = ddkit.load(args.run, checkpoint=args.checkpoint)
    torch.manual_seed(0)
    untrained = build_model(config.model).eval()
    results = {
        "run": str(args.run),
        "checkpoint": args.checkpoint,
        "num": len(x0),
        "variance": args.variance,
        "uniform_bpd": math.log2(DIGITS_LEVELS),
    }
    results["clip_x0"] = not args.no_clip
    trained = config.diffusion.eps_network(model, schedule)  # ε for eps, x0 and v runs
    for name, net in (("trained", trained), ("untrained", untrained)):
        t0 = time.perf_counter()
        data = x0 if name == "trained" else x0[: args.untrained_num or args.num]
        bound = nll_bpd(
            lambda x, t: net(x, t),
            schedule,
            data,
            levels=DIGITS_LEVELS,
            variance=args.variance,
            clip_x0=None if args.no_clip else (-1.0, 1.0),
            batch_size=args.batch_size,
            generator=torch.Generator().manual_seed(args.seed),
        )
        results[name] = {**bound.summary(), "sd": float(bound.total.std()), "seconds": time.perf_counter() - t0}
        print(
            f"{name:>9}: {bound.summary()['nll_bpd']:.3f} bits/dim (sd over images {float(bound.total.std()):.3f}; "
            f"L_T {bound.summary()['prior_bpd']:.2g}, L_0 {bound.summary()['decoder_bpd']:.3f}, "
            f"Σ L_t-1 {bound.summary()['kl_bpd']:.3f}) in {results[name]['seconds']:.0f} s",
            flush=True,
        )
        if name == "trained" and args.plot is not None:
            plot_bound_terms(bound, args.plot)
    print(f"uniform over {DIGITS_LEVELS} levels: {math.log2(DIGITS_LEVELS):.3f} bits/dim")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
