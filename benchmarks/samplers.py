"""Sample quality against network evaluations (NFE): ddkit's samplers beside diffusers' schedulers
driven by the same ε, in one run.

1. Oracle: the exact ε of ddkit.toy.GaussianMixture.default_2d() on DDPM's linear schedule
   (T = 1000); energy distance of --oracle-num samples to fresh true samples (the floor: two true
   sample sets). Every sampler starts from the same x_T.
2. Digits (--run, default /work/runs_shared/uncond, EMA weights): FID and KID of --num samples
   against digits:test (ddkit.eval.evaluate_samples), mean over --repeats start-noise sets.

    python benchmarks/samplers.py [--nfe 5 10 20 50] [--run RUN] [--num 500] [--repeats 2]
                                  [--skip-digits] [--json out.json] [--plot samplers.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

import ddkit
from ddkit.toy import GaussianMixture


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """2E|A-B| - E|A-A'| - E|B-B'| (0 iff the same law)."""
    a, b = a.double().reshape(len(a), -1), b.double().reshape(len(b), -1)
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


def diffusers_scheduler(kind: str, spacing: str, schedule: ddkit.Schedule, order: int = 2):
    """A diffusers scheduler over ddkit's betas (so both use the same schedule)."""
    common = dict(num_train_timesteps=schedule.num_timesteps, trained_betas=schedule.betas.float().numpy())
    if kind == "ddim":
        return DDIMScheduler(**common, set_alpha_to_one=True, clip_sample=False, timestep_spacing=spacing,
                             steps_offset=0)
    if kind == "dpm":
        lu = spacing == "lu"
        return DPMSolverMultistepScheduler(**common, solver_order=order, algorithm_type="dpmsolver++",
                                           timestep_spacing="linspace" if lu else spacing, use_lu_lambdas=lu)
    return UniPCMultistepScheduler(**common, solver_order=order, timestep_spacing=spacing)


@torch.no_grad()
def diffusers_sample(sched, model_fn, x_T: torch.Tensor, nfe: int) -> torch.Tensor:
    sched.set_timesteps(nfe)
    x = x_T
    for t in sched.timesteps:
        x = sched.step(model_fn(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    return x


def configs(nfe_list, schedule):
    """(family, name, nfe, sample(model_fn, x_T) -> x0) for every configuration."""
    out = []
    for nfe in nfe_list:
        out.append(("ddkit", "DDPM-like (DDIM η=1, uniform)", nfe,
                    lambda f, x, n=nfe: ddkit.ddim_sample(f, x, schedule, steps=n, eta=1.0,
                                                          generator=torch.Generator().manual_seed(1))))
        for sp in ("uniform", "trailing", "linspace", "logsnr"):
            out.append(("ddkit", f"DDIM η=0, {sp}", nfe, lambda f, x, n=nfe, sp=sp: ddkit.ddim_sample(
                f, x, schedule, steps=n, spacing=sp)))
            for order in (2, 3):
                out.append(("ddkit", f"DPM-Solver++ {order}, {sp}", nfe, lambda f, x, n=nfe, sp=sp, o=order:
                            ddkit.dpm_solver_sample(f, x, schedule, steps=n, order=o, spacing=sp)))
        for sp in ("leading", "trailing", "linspace"):
            out.append(("diffusers", f"DDIMScheduler, {sp}", nfe, lambda f, x, n=nfe, sp=sp: diffusers_sample(
                diffusers_scheduler("ddim", sp, schedule), f, x, n)))
        for sp in ("leading", "trailing", "linspace", "lu"):
            for order in (2, 3):
                label = "use_lu_lambdas" if sp == "lu" else sp
                out.append(("diffusers", f"DPMSolverMultistep {order}, {label}", nfe,
                            lambda f, x, n=nfe, sp=sp, o=order: diffusers_sample(
                                diffusers_scheduler("dpm", sp, schedule, o), f, x, n)))
        for sp in ("linspace", "trailing"):
            out.append(("diffusers", f"UniPCMultistep 2, {sp}", nfe, lambda f, x, n=nfe, sp=sp: diffusers_sample(
                diffusers_scheduler("unipc", sp, schedule, 2), f, x, n)))
    return out


def run_oracle(nfe_list, num: int) -> dict:
    schedule = ddkit.Schedule.linear()
    gmm = GaussianMixture.default_2d()
    fn = gmm.eps_fn(schedule.alpha_bars)
    g = torch.Generator().manual_seed(1)
    truth = gmm.sample(num, g)[0]
    floor = energy_distance(truth, gmm.sample(num, g)[0])
    x_T = torch.randn(num, 2, generator=torch.Generator().manual_seed(0))
    rows = [{"family": fam, "name": name, "nfe": n, "energy": energy_distance(sample(fn, x_T), truth)}
            for fam, name, n, sample in configs(nfe_list, schedule)]
    return {"floor": floor, "rows": rows}


def run_digits(nfe_list, run: str, num: int, repeats: int) -> dict:
    from ddkit.eval import evaluate_samples
    from ddkit.images import to_uint8
    from ddkit.parameterization import eps_network

    model, schedule, config = ddkit.load(run)
    net = eps_network(model, config.diffusion.prediction, schedule)
    fn = lambda x, t: net(x, t)  # noqa: E731
    shape = (config.model.in_channels, config.model.image_size, config.model.image_size)
    rows = []
    todo = configs(nfe_list, schedule)
    if 50 not in nfe_list:  # the reference of the target: DDIM at 50 steps
        todo.append(("ddkit", "DDIM η=0, uniform", 50, lambda f, x: ddkit.ddim_sample(f, x, schedule, steps=50)))
    for fam, name, n, sample in todo:
        scores = []
        for r in range(repeats):
            x_T = torch.randn(num, *shape, generator=torch.Generator().manual_seed(100 + r))
            scores.append(evaluate_samples(to_uint8(sample(fn, x_T).clamp(-1, 1)), "digits:test", seed=r))
        rows.append({"family": fam, "name": name, "nfe": n,
                     "fid": sum(s["fid"] for s in scores) / repeats, "kid": sum(s["kid"] for s in scores) / repeats})
        print(f"  digits {name:40s} NFE {n:3d}  FID {rows[-1]['fid']:7.2f}  KID {rows[-1]['kid']:.4f}", flush=True)
    return {"run": run, "num": num, "repeats": repeats, "rows": rows}


def table(rows, key, nfe_list) -> str:
    names = list(dict.fromkeys((r["family"], r["name"]) for r in rows))
    val = {(r["family"], r["name"], r["nfe"]): r[key] for r in rows}
    lines = ["| sampler | " + " | ".join(f"NFE {n}" for n in nfe_list) + " |",
             "| --- | " + " | ".join("---" for _ in nfe_list) + " |"]
    for fam, name in names:
        fmt = "{:.2f}" if key == "fid" else "{:.4f}"
        cells = [fmt.format(val[(fam, name, n)]) if (fam, name, n) in val else "" for n in nfe_list]
        lines.append(f"| {fam}: {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result, nfe_list, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parts = [("oracle", "energy", "energy distance (GMM oracle)")]
    if "digits" in result:
        parts.append(("digits", "fid", "FID vs digits:test"))
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4.5))
    axes = [axes] if len(parts) == 1 else axes
    for ax, (part, key, title) in zip(axes, parts):
        rows = result[part]["rows"]
        nfes = sorted({r["nfe"] for r in rows})
        best = {}
        for r in rows:  # best configuration of each sampler family per NFE
            kind = r["family"] + ": " + r["name"].split(",")[0]
            best.setdefault(kind, {})
            best[kind][r["nfe"]] = min(best[kind].get(r["nfe"], float("inf")), r[key])
        for kind, vals in best.items():
            xs = [n for n in nfes if n in vals]
            ax.plot(xs, [vals[n] for n in xs], marker="o", label=kind,
                    linestyle="-" if kind.startswith("ddkit") else "--")
        if part == "oracle":
            ax.axhline(result["oracle"]["floor"], color="grey", linestyle=":", label="floor (true vs true)")
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("NFE"), ax.set_title(title + " (best spacing)")
        ax.set_xticks(nfes, [str(n) for n in nfes])
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 50])
    p.add_argument("--oracle-num", type=int, default=4000)
    p.add_argument("--run", default="/work/runs_shared/uncond")
    p.add_argument("--num", type=int, default=500)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--digits-nfe", type=int, nargs="+", default=None, help="NFE for the digits part (default --nfe)")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = {"oracle": run_oracle(args.nfe, args.oracle_num)}
    print(f"oracle: energy distance, {args.oracle_num} samples, floor {result['oracle']['floor']:.4f}")
    print(table(result["oracle"]["rows"], "energy", args.nfe))
    if not args.skip_digits:
        dn = args.digits_nfe or args.nfe
        result["digits"] = run_digits(dn, args.run, args.num, args.repeats)
        print(f"digits: FID vs digits:test, {args.num} samples, mean of {args.repeats} start-noise sets")
        print(table(result["digits"]["rows"], "fid", sorted(set(dn) | {50})))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        plot(result, args.nfe, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
