"""Does bf16 training change sample quality? A digits run pair, fp32 against bf16 autocast.

Both runs train the default digits UNet on digits:train with the same seed and step budget, one
under each precision; each is sampled with DDIM-50 on the same start-noise sets (seeds 0, 1, …)
and scored against the held-out digits:test by FID and KID (``ddkit.eval.evaluate_samples``).

    python benchmarks/precision_quality.py --steps 600 --out runs/precision     # trains both
    python benchmarks/precision_quality.py --out runs/precision --sets 3         # reuses them
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import ddkit
from ddkit.data.images import to_uint8
from ddkit.eval import evaluate_samples
from ddkit.generate import generate


def train_run(out: Path, precision: str, steps: int, seed: int) -> None:
    if (out / "config.json").exists():
        print(f"reusing {out}")
        return
    cmd = [sys.executable, "-m", "ddkit", "train", "--data", "digits:train", "--out", str(out), "--steps", str(steps),
           "--precision", precision, "--seed", str(seed), "--no-progress", "--sample-every", str(steps),
           "--ckpt-every", str(steps)]  # fmt: skip
    subprocess.run(cmd, check=True)


def score(run: Path, sets: int, num: int) -> list[dict]:
    model, schedule, cfg = ddkit.load(run)
    model = cfg.diffusion.eps_network(model, schedule)  # ε for eps, x0 and v runs
    out = []
    for seed in range(sets):
        x = generate(model, schedule, num, sampler="ddim", steps=50, seed=seed, clip_x0=(-1.0, 1.0), batch_size=500)
        out.append(evaluate_samples(to_uint8(x), "digits:test", metrics=("fid", "kid")))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/precision"), help="folder for the two runs")
    p.add_argument("--steps", type=int, default=600, help="training steps of each run (default %(default)s)")
    p.add_argument("--sets", type=int, default=3, help="start-noise sets (default %(default)s)")
    p.add_argument(
        "--num", type=int, default=500, help="samples per set (default %(default)s, the size of digits:test)"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rows = {}
    for precision in ("fp32", "bf16"):
        run = args.out / precision
        train_run(run, precision, args.steps, args.seed)
        rows[precision] = score(run, args.sets, args.num)
    print(f"\ndigits, {args.steps} steps, DDIM-50, {args.num} samples per set vs digits:test, {args.sets} sets")
    print(f"{'precision':<10} {'FID (mean ± sd)':>18} {'KID×1e3 (mean ± sd)':>22}   per set FID")
    for precision, results in rows.items():
        fid = [r["fid"] for r in results]
        kid = [1e3 * r["kid"] for r in results]
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
        print(
            f"{precision:<10} {statistics.mean(fid):>10.2f} ± {sd(fid):<5.2f} {statistics.mean(kid):>13.2f} ± "
            f"{sd(kid):<6.2f}   {', '.join(f'{v:.2f}' for v in fid)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
