"""Sample quality on held-out digits: ddkit against two diffusers recipes, scored against digits:test.

Every recipe trains on digits:train (1,297 digits) only. For every budget — wall-clock minutes
(--minutes, default 4 and 12) or optimiser steps (--steps) — each recipe trains, then draws
--num-samples images (default 1,000) with DDIM, --sample-steps steps (default 50), η = 0, from
--repeats (default 5) start-noise sets that are the same for every recipe (set r: seed + 1000·r,
sample i's x_T from (that seed, i) as ddkit.generate draws it). Each set is scored with
ddkit.eval.evaluate_samples against the 500 digits of digits:test, which no recipe saw: FID and
KID in the shipped digits feature space, and memorisation against digits:train (NN: the median
pixel distance from a sample to its nearest training digit; closer: the share of samples closer to
a training digit than the median held-out digit is). Rows report mean ± sd over the sets.

  ddkit   `python -m ddkit train --data digits:train --out OUT/ddkit-{budget} --minutes M | --steps N`
          (its own defaults), sampled with ddkit.generate (DDIM, x̂₀ clipped to [-1, 1]);
          --run PATH [PATH ...] scores existing ddkit runs instead of training (they must have
          been trained on digits:train).
  ref-a   diffusers' train_unconditional example defaults, UNet2DModel 64/128/128 with attention
          at 4×4, without the example's horizontal flip (wrong for digits).
  ref-b   the same recipe sized for a CPU: 32/64/64, GroupNorm 8 groups, lr 5e-4, batch 128, EMA 0.999.
  (see _diffusers_ref.py; the references sample with diffusers' DDIMScheduler, EMA weights.)

The real-data row: --num-samples digits of digits:train (a fresh random draw per set) against
digits:test: the level of fresh real digits. Targets (mean FIDs, smallest and largest budget):
"ddkit@lo <= best ref@hi"; "ddkit@hi within one sd of the real row" (mean FID minus the real
row's at most the larger of the two sds); "ddkit@hi no closer to training digits than held-out
digits" (closer share <= 0.5).

    python benchmarks/digits_quality.py                                 # 4 and 12 min: about an hour
    python benchmarks/digits_quality.py --steps 30 --num-samples 200 --repeats 1 --sample-steps 10  # smoke
    python benchmarks/digits_quality.py --run runs/digits --only ddkit
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
import ddkit  # noqa: E402
from _diffusers_ref import RECIPES, sample_reference, train_reference  # noqa: E402
from ddkit.data import load_data  # noqa: E402
from ddkit.data.images import to_uint8  # noqa: E402
from ddkit.eval import evaluate_samples  # noqa: E402
from ddkit.eval.references import load_reference  # noqa: E402
from ddkit.generate import generate, start_noise  # noqa: E402
from ddkit.training.checkpoint import latest_checkpoint  # noqa: E402
from ddkit.training.config import RunConfig  # noqa: E402

ALL_RECIPES = ("ddkit", "ref-a", "ref-b")
METRICS = ("fid", "kid", "memorization")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, nargs="+", default=None, help="wall-clock budgets (default: 4 12)")
    p.add_argument(
        "--steps", type=int, nargs="+", default=None, help="optimiser-step budgets (instead of or with --minutes)"
    )
    p.add_argument("--run", type=Path, nargs="+", default=[], help="existing ddkit runs to score (not retrained)")
    p.add_argument("--num-samples", type=int, default=1000, help="images per start-noise set (default 1000)")
    p.add_argument(
        "--repeats", type=int, default=5, help="start-noise sets; scores are mean ± sd over them (default 5)"
    )
    p.add_argument("--sample-steps", type=int, default=50, help="DDIM steps when sampling (default 50)")
    p.add_argument("--seed", type=int, default=0, help="training and sampling seed (default 0)")
    p.add_argument(
        "--only", nargs="+", choices=ALL_RECIPES, default=list(ALL_RECIPES), help="recipes to run (default: all)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs/digits_quality"),
        help="folder for runs and samples (default %(default)s); its ddkit-{budget} runs are replaced",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=CORES, help=f"torch CPU threads (default: all {CORES} cores)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.minutes is None and args.steps is None and not args.run:
        args.minutes = [4.0, 12.0]
    if any(m <= 0 for m in args.minutes or []) or any(s < 1 for s in args.steps or []):
        p.error("--minutes must be > 0 and --steps >= 1")
    if args.num_samples < 129:
        p.error(
            f"--num-samples must be >= 129 (FID in the 128-dimensional digits feature space), got {args.num_samples}"
        )
    if args.repeats < 1 or args.sample_steps < 1:
        p.error("--repeats and --sample-steps must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    return args


def budgets(args) -> list[tuple[str, float]]:
    """("minutes", M) and ("steps", N) budgets, in the order given."""
    return [("minutes", m) for m in args.minutes or []] + [("steps", s) for s in args.steps or []]


def label(budget: tuple[str, float]) -> str:
    kind, value = budget
    return f"{value:g}min" if kind == "minutes" else f"{int(value)}steps"


def set_seeds(args) -> list[int]:
    return [args.seed + 1000 * r for r in range(args.repeats)]


def train_ddkit(budget, args) -> Path:
    run_dir = args.out / f"ddkit-{label(budget)}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    kind, value = budget
    cmd = [
        sys.executable,
        "-m",
        "ddkit",
        "train",
        "--data",
        "digits:train",
        "--out",
        str(run_dir),
        f"--{kind}",
        f"{value:g}",
        "--seed",
        str(args.seed),
        "--device",
        args.device,
        "--no-progress",
    ]
    print("  $ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return run_dir


def ddkit_samples(run_dir: Path, args) -> tuple[list[np.ndarray], int | None]:
    """uint8 sample sets of a run, and the step of the checkpoint they come from."""
    source = RunConfig.load(run_dir / "config.json").data.source
    if source != "digits:train":
        raise ValueError(f"{run_dir} was trained on {source!r}; held-out scores need a digits:train run")
    ckpt = latest_checkpoint(run_dir)
    m = re.search(r"step-(\d+)$", ckpt.name) if ckpt is not None else None
    model, schedule, config = ddkit.load(run_dir, device=args.device)
    net = config.diffusion.eps_network(model, schedule)  # x0 / v runs sample through ε
    sets = [
        to_uint8(
            generate(
                net,
                schedule,
                args.num_samples,
                seed=s,
                steps=args.sample_steps,
                eta=0.0,
                clip_x0=(-1.0, 1.0),
                device=args.device,
            ).clamp(-1, 1)
        )
        for s in set_seeds(args)
    ]
    return sets, int(m.group(1)) if m else None


def reference_samples(name: str, budget, args, x_train: torch.Tensor) -> tuple[list[np.ndarray], dict]:
    kind, value = budget
    budget_kw = {"seconds": 60 * value} if kind == "minutes" else {"steps": int(value)}
    res = train_reference(RECIPES[name], x_train, seed=args.seed, device=args.device, **budget_kw)
    sets = []
    for s in set_seeds(args):
        x_T, _ = start_noise(s, range(args.num_samples), (1, 8, 8))  # the start noise ddkit's sets use
        sets.append(to_uint8(sample_reference(res.ema_model, res.train_scheduler, x_T, steps=args.sample_steps)))
    return sets, {"steps": res.steps, "train_seconds": res.train_seconds, "last_loss": res.last_loss}


def score(sets: list[np.ndarray], test: np.ndarray, seeds: list[int]) -> dict:
    """Mean ± sd over the sets of FID, KID and the memorisation figures (every set against digits:test)."""
    per = [evaluate_samples(x, test, metrics=METRICS, train_images="digits:train", seed=s) for x, s in zip(sets, seeds)]
    out = {}
    for key in ("fid", "kid", "nn_median", "nn_median_real", "closer_than_real"):
        vals = [p[key] for p in per]
        out[key], out[f"{key}_sd"] = float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    out["fids"] = [p["fid"] for p in per]
    return out


def real_row(test: np.ndarray, args) -> dict:
    """--num-samples digits of digits:train (a random draw per set) against digits:test."""
    train, _ = load_reference("digits:train")
    n = min(args.num_samples, len(train))
    sets = [train[np.random.default_rng(s).permutation(len(train))[:n]] for s in set_seeds(args)]
    row = score(sets, test, set_seeds(args))
    # the draws are training digits themselves: their own memorisation figures are 0; show the held-out ones
    row["nn_median"], row["closer_than_real"] = row["nn_median_real"], 0.5
    return {"recipe": "real", "budget": f"{n} of digits:train", **row}


def target_checks(rows: list[dict], real: dict, budget_list) -> list[dict]:
    """The three targets over the smallest and largest budget of the first kind given."""
    if not budget_list:
        return []
    kind = budget_list[0][0]
    values = [v for k, v in budget_list if k == kind]
    lo, hi = label((kind, min(values))), label((kind, max(values)))
    by = {(r["recipe"], r["budget"]): r for r in rows}
    refs = [by[(n, hi)]["fid"] for n in ("ref-a", "ref-b") if (n, hi) in by]
    best = min(refs) if refs else None
    mine_lo, mine_hi = by.get(("ddkit", lo)), by.get(("ddkit", hi))
    checks = []

    def check(name, ok, detail):
        checks.append({"check": name, "pass": ok, "detail": detail})

    check(
        f"ddkit@{lo} <= best ref@{hi}",
        None if mine_lo is None or best is None else mine_lo["fid"] <= best,
        None if mine_lo is None or best is None else f"{mine_lo['fid']:.2f} vs {best:.2f}",
    )
    if mine_hi is not None:
        tol = max(mine_hi["fid_sd"], real["fid_sd"])
        check(
            f"ddkit@{hi} within one sd of the real row",
            mine_hi["fid"] - real["fid"] <= tol,
            f"{mine_hi['fid']:.2f} vs {real['fid']:.2f} + {tol:.2f}",
        )
        check(
            f"ddkit@{hi} no closer to training digits than held-out digits",
            mine_hi["closer_than_real"] <= 0.5,
            f"closer {mine_hi['closer_than_real']:.3f} <= 0.5; NN {mine_hi['nn_median']:.2f} vs {real['nn_median']:.2f}",
        )
    return checks


def report(rows: list[dict], real: dict, checks: list[dict], args) -> None:
    print(
        f"\n{args.num_samples:,} samples per set against digits:test (500), mean ± sd over {args.repeats} "
        f"start-noise sets; DDIM {args.sample_steps} steps, η = 0"
    )
    print(
        f"{'recipe':<8} {'budget':<18} {'train steps':>11} {'train s':>8} {'FID':>13} {'KID':>15} "
        f"{'NN':>6} {'closer':>7}"
    )
    for r in rows + [real]:
        steps = "" if r.get("steps") is None else f"{r['steps']:,}"
        secs = "" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"
        print(
            f"{r['recipe']:<8} {r['budget']:<18} {steps:>11} {secs:>8} {r['fid']:>7.2f} ± {r['fid_sd']:<4.2f}"
            f" {r['kid']:>7.3f} ± {r['kid_sd']:<5.3f} {r['nn_median']:>6.2f} {r['closer_than_real']:>7.3f}"
        )
    print(
        "NN: median pixel distance to the nearest digits:train image; closer: share of samples nearer to one "
        "than the median held-out digit (0.5 for fresh digits)"
    )
    for c in checks:
        verdict = "n/a (missing runs)" if c["pass"] is None else ("PASS" if c["pass"] else "FAIL")
        print(f"{c['check']}: {verdict}" + (f"  ({c['detail']})" if c["detail"] else ""))


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    x_train = load_data("digits:train").x
    test, _ = load_reference("digits:test")
    real = real_row(test, args)
    rows = []
    jobs = [("ddkit", ("run", str(p))) for p in args.run]
    jobs += [(name, b) for b in budgets(args) for name in ALL_RECIPES if name in args.only]
    for name, budget in jobs:
        tag = f"run {Path(budget[1]).name}" if budget[0] == "run" else label(budget)
        print(f"[{name} @ {tag}] ...", flush=True)
        t0 = time.perf_counter()
        if name == "ddkit":
            run_dir = Path(budget[1]) if budget[0] == "run" else train_ddkit(budget, args)
            train_s = None if budget[0] == "run" else time.perf_counter() - t0
            sets, steps = ddkit_samples(run_dir, args)
            info = {"steps": steps, "train_seconds": train_s, "run_dir": str(run_dir)}
        else:
            sets, info = reference_samples(name, budget, args, x_train)
        np.savez_compressed(args.out / f"{name}-{tag.replace(' ', '_')}-samples.npz", images=np.stack(sets))
        row = {"recipe": name, "budget": tag, **info, **score(sets, test, set_seeds(args))}
        rows.append(row)
        print(
            f"  {name} @ {tag}: FID {row['fid']:.2f} ± {row['fid_sd']:.2f}, KID {row['kid']:.4f}, "
            f"NN {row['nn_median']:.2f}, closer {row['closer_than_real']:.3f}",
            flush=True,
        )
    checks = target_checks(rows, real, budgets(args))
    report(rows, real, checks, args)
    if args.json is not None:
        meta = {
            "device": args.device,
            "threads": torch.get_num_threads(),
            "num_samples": args.num_samples,
            "repeats": args.repeats,
            "sample_steps": args.sample_steps,
            "seed": args.seed,
            "torch": torch.__version__,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**meta, "real": real, "runs": rows, "checks": checks}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
