"""Sample quality against network evaluations (NFE): ddkit's samplers beside diffusers' schedulers
driven by the same ε, in one run.

1. Oracle: the exact ε of ddkit.toy.GaussianMixture.default_2d() on DDPM's linear schedule
   (T = 1000; --oracle-schedule cosine for ddkit's default). Score: the energy distance of --oracle-num samples to the mixture's exact law
   (ddkit.eval.energy.energy_distance_to_mixture: both expectations over the true law in closed
   form, so the score is unbiased and its only noise is the samples' own). Every configuration
   starts from the same x_T; --oracle-seeds start-noise sets give mean ± sd, and the null row
   (true samples scored the same way) shows the noise level. The verdict compares ddkit's best
   with diffusers' best at --target-nfe by their paired difference over the sets.
2. Digits (--run RUN, a digits:train run; EMA weights): FID and KID of --num samples against
   digits:test, mean ± sd over --repeats start-noise sets (sample i's x_T as ddkit.generate draws
   it, the same for every sampler). ddkit's samplers clip x̂₀ to [-1, 1] as `ddkit sample` does;
   diffusers' DDIMScheduler clips too (clip_sample=True), its DPM-Solver and UniPC schedulers have
   no plain clip and run unclipped. The verdict: ddkit's best at --target-nfe against ddkit's DDIM
   at 50 steps (target: within 10 %).

    python benchmarks/samplers.py --skip-digits                          # the oracle alone
    python benchmarks/samplers.py --run runs/digits-train --json out.json --plot samplers.png
      (runs/digits-train: `ddkit train --data digits:train --out runs/digits-train`, the default recipe)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

import ddkit
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.oracle import GaussianMixture

SPACINGS = ("uniform", "trailing", "linspace", "logsnr")
# diffusers' spacings: timestep_spacing values, and the sigma grids that replace them
DIFFUSERS_SPACINGS = ("leading", "trailing", "linspace", "karras", "exponential", "lu")
_SIGMA_FLAGS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "lu": "use_lu_lambdas"}


def diffusers_scheduler(
    kind: str, spacing: str, schedule: ddkit.Schedule, order: int = 2, variant: str = "bh2", clip: bool = False
):
    """A diffusers scheduler over ddkit's betas (so both use the same schedule)."""
    common = dict(num_train_timesteps=schedule.num_timesteps, trained_betas=schedule.betas.float().numpy())
    if kind == "ddim":
        return DDIMScheduler(
            **common, set_alpha_to_one=True, clip_sample=clip, timestep_spacing=spacing, steps_offset=0
        )
    flags = {_SIGMA_FLAGS[spacing]: True} if spacing in _SIGMA_FLAGS else {}
    spacing = "linspace" if spacing in _SIGMA_FLAGS else spacing
    if kind == "dpm":
        return DPMSolverMultistepScheduler(
            **common, solver_order=order, algorithm_type="dpmsolver++", timestep_spacing=spacing, **flags
        )
    # bh1 with the default final_sigmas_type="zero" returns NaN (its last step multiplies B(h) = -inf by a
    # zero correction): run it with "sigma_min", its working setting
    final = "sigma_min" if variant == "bh1" else "zero"
    return UniPCMultistepScheduler(
        **common, solver_order=order, solver_type=variant, timestep_spacing=spacing, final_sigmas_type=final, **flags
    )


@torch.no_grad()
def diffusers_sample(sched, model_fn, x_T: torch.Tensor, nfe: int) -> torch.Tensor:
    sched.set_timesteps(nfe)
    x = x_T
    for t in sched.timesteps:
        x = sched.step(model_fn(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    return x


def ddkit_configs(nfe: int, schedule, clip=None, spacings=SPACINGS, unipc_variants=("bh1", "bh2")):
    """(family, name, nfe, sample(model_fn, x_T) -> x0) for ddkit's samplers at ``nfe`` evaluations."""
    kw = {"clip_x0": clip}
    out = [
        (
            "ddkit",
            "DDPM-like (DDIM η=1, uniform)",
            nfe,
            lambda f, x: ddkit.ddim_sample(
                f, x, schedule, steps=nfe, eta=1.0, generator=torch.Generator().manual_seed(1), **kw
            ),
        )
    ]
    for sp in spacings:
        out.append(
            (
                "ddkit",
                f"DDIM η=0, {sp}",
                nfe,
                lambda f, x, sp=sp: ddkit.ddim_sample(f, x, schedule, steps=nfe, spacing=sp, **kw),
            )
        )
        for order in (2, 3):
            out.append(
                (
                    "ddkit",
                    f"DPM-Solver++ {order}, {sp}",
                    nfe,
                    lambda f, x, sp=sp, o=order: ddkit.dpm_solver_sample(
                        f, x, schedule, steps=nfe, order=o, spacing=sp, **kw
                    ),
                )
            )
            for v in unipc_variants:
                out.append(
                    (
                        "ddkit",
                        f"UniPC {order} {v}, {sp}",
                        nfe,
                        lambda f, x, sp=sp, o=order, v=v: ddkit.unipc_sample(
                            f, x, schedule, steps=nfe, order=o, spacing=sp, variant=v, **kw
                        ),
                    )
                )
    return out


def diffusers_configs(nfe: int, schedule, spacings=DIFFUSERS_SPACINGS, variants=("bh1", "bh2"), clip=False):
    out = [
        (
            "diffusers",
            f"DDIMScheduler, {sp}",
            nfe,
            lambda f, x, sp=sp: diffusers_sample(diffusers_scheduler("ddim", sp, schedule, clip=clip), f, x, nfe),
        )
        for sp in spacings
        if sp in ("leading", "trailing", "linspace")
    ]
    for sp in spacings:
        for order in (2, 3):
            out.append(
                (
                    "diffusers",
                    f"DPMSolverMultistep {order}, {sp}",
                    nfe,
                    lambda f, x, sp=sp, o=order: diffusers_sample(
                        diffusers_scheduler("dpm", sp, schedule, o), f, x, nfe
                    ),
                )
            )
            if sp == "lu":
                continue  # UniPCMultistepScheduler has no use_lu_lambdas
            for v in variants:
                out.append(
                    (
                        "diffusers",
                        f"UniPCMultistep {order} {v}, {sp}",
                        nfe,
                        lambda f, x, sp=sp, o=order, v=v: diffusers_sample(
                            diffusers_scheduler("unipc", sp, schedule, o, v), f, x, nfe
                        ),
                    )
                )
    return out


def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def run_oracle(nfe_list, num: int, seeds: int, schedule_name: str = "linear") -> dict:
    schedule = getattr(ddkit.Schedule, schedule_name)()
    gmm = GaussianMixture.default_2d()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x_Ts = [torch.randn(num, 2, generator=torch.Generator().manual_seed(s)) for s in range(seeds)]
    null = [
        energy_distance_to_mixture(gmm.sample(num, torch.Generator().manual_seed(100 + s))[0], gmm)
        for s in range(seeds)
    ]
    rows = []
    for nfe in nfe_list:
        for fam, name, n, sample in ddkit_configs(nfe, schedule) + diffusers_configs(nfe, schedule):
            try:
                scores = [energy_distance_to_mixture(sample(fn, x_T).double(), gmm) for x_T in x_Ts]
            except Exception as e:  # a scheduler that fails on this grid is reported, not fatal
                rows.append(
                    {
                        "family": fam,
                        "name": name,
                        "nfe": n,
                        "energy": float("nan"),
                        "energy_sd": float("nan"),
                        "energies": [float("nan")] * seeds,
                        "error": f"{type(e).__name__}: {e}",
                    }
                )
                print(f"  {fam}: {name} at NFE {n} fails: {type(e).__name__}: {e}", flush=True)
                continue
            m, sd = mean_sd(scores)
            rows.append({"family": fam, "name": name, "nfe": n, "energy": m, "energy_sd": sd, "energies": scores})
        print(f"  oracle NFE {nfe}: {len(rows)} configurations so far", flush=True)
    return {"schedule": schedule_name, "num": num, "seeds": seeds, "null": mean_sd(null), "nulls": null, "rows": rows}


def oracle_verdict(result: dict, nfe: int) -> dict:
    """ddkit's best against diffusers' best at ``nfe`` (by mean), with the paired difference over sets."""
    rows = [r for r in result["rows"] if r["nfe"] == nfe]
    best = {
        fam: min((r for r in rows if r["family"] == fam and np.isfinite(r["energy"])), key=lambda r: r["energy"])
        for fam in ("ddkit", "diffusers")
    }
    diff = np.asarray(best["ddkit"]["energies"]) - np.asarray(best["diffusers"]["energies"])
    d, d_sd = mean_sd(diff)
    return {
        "nfe": nfe,
        "ddkit": best["ddkit"]["name"],
        "ddkit_energy": best["ddkit"]["energy"],
        "diffusers": best["diffusers"]["name"],
        "diffusers_energy": best["diffusers"]["energy"],
        "difference": d,
        "difference_sd": d_sd,
        "ddkit_better_in_every_set": bool((diff < 0).all()),
    }


def digits_configs(nfe_list, schedule, target_nfe: int):
    """ddkit's samplers with uniform spacing at every NFE, and trailing and logsnr at the target NFE
    (x̂₀ clipped as `ddkit sample` does: trailing visits t = T-1, where the cosine schedule's ᾱ ≈ 0),
    diffusers' default spacing of each scheduler, and the reference: ddkit's DDIM at 50 steps."""
    clip = (-1.0, 1.0)
    out = []
    for nfe in nfe_list:
        out += [
            c
            for c in ddkit_configs(
                nfe, schedule, clip, spacings=("uniform", "trailing", "logsnr"), unipc_variants=("bh2",)
            )
            if nfe == target_nfe or c[1].endswith("uniform")
        ]
        out += diffusers_configs(nfe, schedule, spacings=("leading",), variants=("bh2",), clip=True)
    if 50 not in nfe_list:
        out.append(
            ("ddkit", "DDIM η=0, uniform", 50, lambda f, x: ddkit.ddim_sample(f, x, schedule, steps=50, clip_x0=clip))
        )
    return out


def run_digits(nfe_list, run: str, num: int, repeats: int, target_nfe: int) -> dict:
    from ddkit.data.images import to_uint8
    from ddkit.eval import evaluate_samples
    from ddkit.generate import start_noise

    model, schedule, config = ddkit.load(run)
    if config.data.source != "digits:train":
        raise SystemExit(f"--run {run} was trained on {config.data.source!r}; the digits part needs a digits:train run")
    net = config.diffusion.eps_network(model, schedule)
    shape = (config.model.in_channels, config.model.image_size, config.model.image_size)
    x_Ts = [start_noise(1000 * r, range(num), shape)[0] for r in range(repeats)]
    rows = []
    for fam, name, n, sample in digits_configs(nfe_list, schedule, target_nfe):
        try:
            scores = [
                evaluate_samples(to_uint8(sample(net, x_T).clamp(-1, 1)), "digits:test", seed=r)
                for r, x_T in enumerate(x_Ts)
            ]
        except Exception as e:  # a scheduler that fails on this grid is reported, not fatal
            print(f"  digits {fam}: {name} at NFE {n} fails: {type(e).__name__}: {e}", flush=True)
            rows.append(
                {
                    "family": fam,
                    "name": name,
                    "nfe": n,
                    "fid": float("nan"),
                    "fid_sd": float("nan"),
                    "kid": float("nan"),
                    "kid_sd": float("nan"),
                    "fids": [],
                    "error": str(e),
                }
            )
            continue
        fid, fid_sd = mean_sd([s["fid"] for s in scores])
        kid, kid_sd = mean_sd([s["kid"] for s in scores])
        rows.append(
            {
                "family": fam,
                "name": name,
                "nfe": n,
                "fid": fid,
                "fid_sd": fid_sd,
                "kid": kid,
                "kid_sd": kid_sd,
                "fids": [s["fid"] for s in scores],
            }
        )
        print(f"  digits {fam}: {name:38s} NFE {n:3d}  FID {fid:7.2f} ± {fid_sd:.2f}  KID {kid:.4f}", flush=True)
    return {"run": run, "num": num, "repeats": repeats, "rows": rows}


def digits_verdict(result: dict, nfe: int) -> dict:
    rows = result["rows"]
    ref = next(r for r in rows if r["family"] == "ddkit" and r["name"] == "DDIM η=0, uniform" and r["nfe"] == 50)
    best = min(
        (r for r in rows if r["family"] == "ddkit" and r["nfe"] == nfe and np.isfinite(r["fid"])),
        key=lambda r: r["fid"],
    )
    ratio = np.asarray(best["fids"]) / np.asarray(ref["fids"])
    return {
        "nfe": nfe,
        "best": best["name"],
        "fid": best["fid"],
        "fid_sd": best["fid_sd"],
        "ddim50": ref["fid"],
        "ddim50_sd": ref["fid_sd"],
        "ratio": best["fid"] / ref["fid"],
        "paired_ratio": mean_sd(ratio),
    }


def table(rows, key, nfe_list) -> str:
    names = list(dict.fromkeys((r["family"], r["name"]) for r in rows))
    val = {(r["family"], r["name"], r["nfe"]): (r[key], r[f"{key}_sd"]) for r in rows}
    fmt = "{:.2f} ± {:.2f}" if key == "fid" else "{:.5f} ± {:.5f}"
    lines = [
        "| sampler | " + " | ".join(f"NFE {n}" for n in nfe_list) + " |",
        "| --- | " + " | ".join("---" for _ in nfe_list) + " |",
    ]
    for fam, name in names:
        cells = [
            ("fails" if not np.isfinite(val[(fam, name, n)][0]) else fmt.format(*val[(fam, name, n)]))
            if (fam, name, n) in val
            else ""
            for n in nfe_list
        ]
        lines.append(f"| {fam}: {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result, path: str) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [("oracle", "energy", "energy distance to the exact law (GMM oracle)")]
    if "digits" in result:
        parts.append(("digits", "fid", "FID vs digits:test"))
    fig, axes = plt.subplots(1, len(parts), figsize=(6.5 * len(parts), 4.8))
    axes = [axes] if len(parts) == 1 else axes
    for ax, (part, key, title) in zip(axes, parts):
        rows = result[part]["rows"]
        nfes = sorted({r["nfe"] for r in rows})
        best = {}
        for r in rows:  # best configuration of each sampler family per NFE
            kind = r["family"] + ": " + r["name"].split(",")[0].split(" ")[0]
            best.setdefault(kind, {})
            if np.isfinite(r[key]):
                best[kind][r["nfe"]] = min(best[kind].get(r["nfe"], float("inf")), r[key])
        for kind, vals in best.items():
            xs = [n for n in nfes if n in vals]
            ax.plot(
                xs,
                [max(vals[n], 1e-6) for n in xs],
                marker="o",
                label=kind,
                linestyle="-" if kind.startswith("ddkit") else "--",
            )
        if part == "oracle":
            m, sd = result["oracle"]["null"]
            ax.axhspan(1e-6, max(m + 2 * sd, 2e-6), color="grey", alpha=0.2, label="noise (true samples, +2 sd)")
        (
            ax.set_xscale("log"),
            ax.set_yscale("log"),
            ax.set_xlabel("NFE"),
            ax.set_title(title + ", best spacing", fontsize=9),
        )
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50], help="oracle NFE columns")
    p.add_argument("--target-nfe", type=int, default=10, help="NFE of the verdicts (default 10)")
    p.add_argument("--oracle-num", type=int, default=10_000, help="oracle samples per start-noise set")
    p.add_argument("--oracle-seeds", type=int, default=3, help="oracle start-noise sets")
    p.add_argument(
        "--oracle-schedule",
        choices=("linear", "cosine"),
        default="linear",
        help="the oracle's noise schedule, T = 1000 (default linear: DDPM's)",
    )
    p.add_argument("--run", default=None, help="a digits:train ddkit run for the digits part")
    p.add_argument("--num", type=int, default=1000, help="digits samples per set")
    p.add_argument("--repeats", type=int, default=5, help="digits start-noise sets")
    p.add_argument("--digits-nfe", type=int, nargs="+", default=[5, 10, 20], help="NFE for the digits part")
    p.add_argument("--skip-oracle", action="store_true")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--replot", default=None, metavar="JSON", help="only redraw --plot from an earlier --json")
    args = p.parse_args(argv)
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.plot or "samplers.png")
        return 0
    if not args.skip_digits and args.run is None and not args.replot:
        p.error("the digits part needs --run RUN (a digits:train run), or pass --skip-digits")
    result = {}
    if not args.skip_oracle:
        result["oracle"] = o = run_oracle(args.nfe, args.oracle_num, args.oracle_seeds, args.oracle_schedule)
        print(
            f"oracle ({args.oracle_schedule} schedule): energy distance to the exact law, {args.oracle_num} samples, mean ± sd over "
            f"{args.oracle_seeds} start-noise sets; true samples score {o['null'][0]:.5f} ± {o['null'][1]:.5f}"
        )
        print(table(o["rows"], "energy", args.nfe))
        if args.target_nfe in args.nfe:
            o["verdict"] = v = oracle_verdict(o, args.target_nfe)
            print(
                f"NFE {v['nfe']}: ddkit best {v['ddkit']} {v['ddkit_energy']:.5f}; diffusers best {v['diffusers']} "
                f"{v['diffusers_energy']:.5f}; paired difference {v['difference']:+.5f} ± {v['difference_sd']:.5f} "
                f"(ddkit better in every set: {v['ddkit_better_in_every_set']})"
            )
    if not args.skip_digits:
        result["digits"] = d = run_digits(args.digits_nfe, args.run, args.num, args.repeats, args.target_nfe)
        print(f"digits: FID vs digits:test, {args.num} samples, mean ± sd over {args.repeats} start-noise sets")
        print(table(d["rows"], "fid", sorted(set(args.digits_nfe) | {50})))
        d["verdict"] = v = digits_verdict(d, args.target_nfe)
        print(
            f"NFE {v['nfe']}: ddkit best {v['best']} FID {v['fid']:.2f} ± {v['fid_sd']:.2f} against DDIM-50 "
            f"{v['ddim50']:.2f} ± {v['ddim50_sd']:.2f}: ratio {v['ratio']:.3f} (paired per set "
            f"{v['paired_ratio'][0]:.3f} ± {v['paired_ratio'][1]:.3f}; target <= 1.10)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
