"""Sample quality per wall-clock minute on the 8×8 digits: ddkit against two diffusers recipes.

For every budget M (minutes; default 4 and 12) each recipe trains for M minutes of wall clock on
this machine, then draws --num-samples images (default 1,000) with DDIM, 50 steps, η = 0, from the
same seeded start noise, and is scored by the digits FID (ddkit.metrics.digits_fid against all
1,797 digits, in the feature space of a DigitsFeatureNet trained with --fid-seed). FID of 1,000
images swings by several points with the start noise alone, so this is repeated for --repeats
(default 5) independent start-noise sets, the same for every recipe; a recipe's FID is the mean
over the sets (the standard deviation and the first set's FID are printed too).

  ddkit   `python -m ddkit train --out OUT/ddkit-{M}min --minutes M --seed S` (its own defaults),
          then ddkit.load + ddkit.ddim_sample(steps=50, eta=0, clip_x0=(-1, 1)).
  ref-a   diffusers' train_unconditional example defaults, UNet2DModel 64/128/128 with attention
          at 4×4, without the example's horizontal flip (wrong for digits).
  ref-b   the same recipe sized for a CPU: 32/64/64, GroupNorm 8 groups, lr 5e-4, batch 128,
          EMA decay 0.999.
  (see _diffusers_ref.py; the references sample with diffusers' DDIMScheduler, EMA weights.)

Prints a table (recipe, minutes, train steps, FID mean ± sd, first set), two real-data rows for
scale (1,000 real digits against all 1,797, which contain them: what copying the training set
scores; and two disjoint random halves of the digits against each other: fresh data, no copying),
the median pixel distance from a sample to its nearest training digit (NN; for real digits, to the
nearest other digit: samples below that sit on training images),
and two targets with PASS/FAIL on the mean FIDs:
"ddkit@{min M} <= best ref@{max M}" and "ddkit@{max M} <= best ref@{max M} / 2".

    python benchmarks/digits_quality.py                             # 4 and 12 min: ~50 min
    python benchmarks/digits_quality.py --minutes 0.3 --only ref-b --num-samples 200
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _diffusers_ref import RECIPES, sample_reference, train_reference  # noqa: E402

import ddkit  # noqa: E402
from ddkit.checkpoint import latest_checkpoint  # noqa: E402
from ddkit.metrics import digits_fid, load_digits_data, train_digits_feature_net  # noqa: E402

ALL_RECIPES = ("ddkit", "ref-a", "ref-b")


# the cores this process may run on
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, nargs="+", default=[4.0, 12.0], help="wall-clock budgets (default: 4 12)")
    p.add_argument("--num-samples", type=int, default=1000, help="images per FID (default 1000)")
    p.add_argument("--repeats", type=int, default=5,
                   help="independent start-noise sets, each scored on its own; FID is their mean (default 5)")
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed (default 0)")
    p.add_argument("--fid-seed", type=int, default=0, help="seed of the FID feature net (default 0)")
    p.add_argument("--only", nargs="+", choices=ALL_RECIPES, default=list(ALL_RECIPES),
                   help="recipes to run (default: all)")
    p.add_argument("--out", type=Path, default=Path("runs/digits_quality"),
                   help="folder for the runs and samples (default %(default)s); its ddkit-{M}min runs are replaced")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=CORES, help=f"torch CPU threads (default: all {CORES} cores)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if any(m <= 0 for m in args.minutes):
        p.error(f"--minutes must be > 0, got {args.minutes}")
    if args.num_samples < 2:
        p.error(f"--num-samples must be >= 2, got {args.num_samples}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return args


def start_noise(n: int, seed: int, repeats: int = 1) -> list[torch.Tensor]:
    """``repeats`` start-noise sets x_T: [n, 1, 8, 8], the same for every recipe. The first is
    seeded with ``seed`` itself, the r-th with ``seed + 1000·r``."""
    return [torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed + 1000 * r)) for r in range(repeats)]


def run_ddkit(minutes: float, args: argparse.Namespace, x_Ts: list[torch.Tensor]) -> dict:
    run_dir = args.out / f"ddkit-{minutes:g}min"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "ddkit", "train", "--out", str(run_dir), "--minutes", f"{minutes:g}",
           "--seed", str(args.seed), "--device", args.device, "--no-progress"]
    print("  $ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    ckpt = latest_checkpoint(run_dir)
    m = re.search(r"step-(\d+)$", ckpt.name) if ckpt is not None else None
    model, schedule, _ = ddkit.load(run_dir, device=args.device)
    samples = []
    with torch.inference_mode():
        for x_T in x_Ts:
            x = ddkit.ddim_sample(lambda x, t: model(x, t), x_T.to(args.device), schedule,
                                  steps=50, eta=0.0, clip_x0=(-1.0, 1.0))
            samples.append(x.float().clamp(-1, 1).cpu())
    return {"steps": int(m.group(1)) if m else None, "train_seconds": wall,
            "samples": samples, "run_dir": str(run_dir)}


def run_reference(name: str, minutes: float, args: argparse.Namespace, x_Ts: list[torch.Tensor],
                  x: torch.Tensor) -> dict:
    res = train_reference(RECIPES[name], x, seconds=60 * minutes, seed=args.seed, device=args.device)
    samples = [sample_reference(res.ema_model, res.train_scheduler, x_T, steps=50, eta=0.0) for x_T in x_Ts]
    return {"steps": res.steps, "train_seconds": res.train_seconds, "samples": samples,
            "estimated_total_steps": res.estimated_total_steps, "last_loss": res.last_loss}


def target_checks(rows: list[dict], budgets: list[float]) -> list[dict]:
    """The two targets, over the smallest and largest budget; None where a run is missing."""
    lo, hi = min(budgets), max(budgets)
    fid = {(r["recipe"], r["minutes"]): r["fid"] for r in rows}
    refs_hi = [fid[(n, hi)] for n in ("ref-a", "ref-b") if (n, hi) in fid]
    best = min(refs_hi) if refs_hi else None
    checks = []
    for label, mine, bound in [
        (f"ddkit@{lo:g}min <= best ref@{hi:g}min", fid.get(("ddkit", lo)), best),
        (f"ddkit@{hi:g}min <= best ref@{hi:g}min / 2", fid.get(("ddkit", hi)), None if best is None else best / 2),
    ]:
        ok = None if mine is None or bound is None else mine <= bound
        checks.append({"check": label, "ddkit_fid": mine, "bound": bound, "pass": ok})
    return checks


def nearest_distance(images: torch.Tensor, train: torch.Tensor, exclude_self: bool = False) -> float:
    """Median over ``images`` of the pixel-space (L2, values in [-1, 1]) distance to the nearest
    training digit: lower than real digits' own figure means samples sit on training images."""
    d = torch.cdist(images.reshape(images.shape[0], -1).float(), train.reshape(train.shape[0], -1).float())
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())


def real_floors(x: torch.Tensor, net, n: int, seed: int, repeats: int) -> dict:
    """FID of real digits, for scale, each a mean over ``repeats`` random draws:
    ``subset``: n real digits against all of them (the reference contains them: what reproducing
    the training set scores); ``halves``: two disjoint random halves against each other (fresh
    data against fresh data, with about half the images on each side)."""
    total, n, half = x.shape[0], min(n, x.shape[0]), x.shape[0] // 2
    subset, halves = [], []
    for r in range(repeats):
        perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed + 1000 * r))
        subset.append(digits_fid(x[perm[:n]], net=net))
        halves.append(digits_fid(x[perm[:half]], reference=x[perm[half:]], net=net))
    return {"total": total, "subset_n": n, "half": half, "nearest": nearest_distance(x, x, exclude_self=True),
            "subset": float(np.mean(subset)), "subset_sd": float(np.std(subset)),
            "halves": float(np.mean(halves)), "halves_sd": float(np.std(halves))}


def report(rows: list[dict], checks: list[dict], floors: dict, n: int, repeats: int) -> None:
    print(f"\nFID of {n:,} samples, mean ± sd over {repeats} start-noise sets (first: the first set's)")
    print(f"{'recipe':<8} {'minutes':>8} {'train steps':>12} {'train s':>8} {'FID':>9} {'sd':>6} {'first':>7} {'NN':>6}")
    for r in rows:
        steps = "?" if r["steps"] is None else f"{r['steps']:,}"
        print(f"{r['recipe']:<8} {r['minutes']:>8g} {steps:>12} {r['train_seconds']:>8.0f} {r['fid']:>9.2f} "
              f"{r['fid_sd']:>6.2f} {r['fids'][0]:>7.2f} {r['nearest']:>6.2f}")
    print(f"{'real':<8} {'':>8} {'':>12} {'':>8} {'':>9} {'':>6} {'':>7} {floors['nearest']:>6.2f}"
          "  (NN: median pixel distance to the nearest training digit; real: to the nearest other one)")
    print(f"{'real':<8} {'':>8} {'':>12} {'':>8} {floors['subset']:>9.2f} {floors['subset_sd']:>6.2f}"
          f"           ({floors['subset_n']:,} real digits vs all {floors['total']:,}, which contain them)")
    print(f"{'real':<8} {'':>8} {'':>12} {'':>8} {floors['halves']:>9.2f} {floors['halves_sd']:>6.2f}"
          f"           (disjoint random halves, {floors['half']} vs {floors['total'] - floors['half']})")
    for c in checks:
        verdict = "n/a (missing runs)" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        detail = "" if c["pass"] is None else f"  ({c['ddkit_fid']:.2f} vs {c['bound']:.2f})"
        print(f"{c['check']}: {verdict}{detail}")


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    x, _ = load_digits_data()
    t0 = time.perf_counter()
    net = train_digits_feature_net(seed=args.fid_seed)
    print(f"FID feature net trained in {time.perf_counter() - t0:.1f} s (seed {args.fid_seed})")
    floors = real_floors(x, net, args.num_samples, args.seed, args.repeats)
    x_Ts = start_noise(args.num_samples, args.seed, args.repeats)
    rows = []
    for minutes in args.minutes:
        for name in (n for n in ALL_RECIPES if n in args.only):
            print(f"[{name} @ {minutes:g} min] training on {args.device} ...", flush=True)
            out = run_ddkit(minutes, args, x_Ts) if name == "ddkit" else run_reference(name, minutes, args, x_Ts, x)
            samples = out.pop("samples")  # repeats × [N, 1, 8, 8] in [-1, 1]
            fids = [digits_fid(smp, net=net) for smp in samples]
            np.savez_compressed(args.out / f"{name}-{minutes:g}min-samples.npz", x=torch.stack(samples).numpy())
            rows.append({"recipe": name, "minutes": minutes, **out, "fid": float(np.mean(fids)),
                         "fid_sd": float(np.std(fids)), "fids": fids,
                         "nearest": nearest_distance(torch.cat(samples), x)})
            print(f"  {name} @ {minutes:g} min: {out['steps']} steps, FID {np.mean(fids):.2f} ± {np.std(fids):.2f} "
                  f"({', '.join(f'{f:.2f}' for f in fids)})", flush=True)
    checks = target_checks(rows, args.minutes)
    report(rows, checks, floors, args.num_samples, args.repeats)
    if args.json is not None:
        meta = {"device": args.device, "threads": torch.get_num_threads(), "num_samples": args.num_samples,
                "repeats": args.repeats, "seed": args.seed, "fid_seed": args.fid_seed, "torch": torch.__version__}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {**meta, "real": floors, "runs": rows, "checks": checks}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
