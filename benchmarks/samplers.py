"""Sample quality against network evaluations (NFE): ddkit's samplers, grids and timesteps tuned
per model beside diffusers' schedulers driven by the same ε, in one run.

1. Oracle: the exact ε of GaussianMixture.default_2d() on DDPM's linear schedule and ddkit's cosine
   schedule (T = 1000). Score: the energy distance of --oracle-num samples to the mixture's exact
   law (ddkit.eval.energy.energy_distance_to_mixture: unbiased, its only noise the samples' own).
   Every configuration starts from the same x_T; --oracle-seeds start-noise sets give mean ± sd,
   and the null row (true samples scored the same way) shows the noise level. Tuned timesteps
   (ddkit.tune_timesteps) are tuned on a separate start-noise set (--tune-num points, seed 12345)
   against a DPM-Solver++(2) teacher. The verdict at every NFE: ddkit's best against diffusers'
   best (by mean), with the paired difference over the sets.
2. Digits (--run RUN, a digits:train run; EMA weights): FID and KID of --num samples against
   digits:test, mean ± sd over --repeats start-noise sets (sample i's x_T as ddkit.generate draws
   it, the same for every sampler). ddkit clips x̂₀ to [-1, 1] as `ddkit sample` does (and tunes
   with it); diffusers' DDIMScheduler clips too, its DPM-Solver and UniPC schedulers run unclipped.
   Timesteps are tuned as `ddkit tune-steps` does (256 start-noise draws of seed 1, no data). The
   verdict: ddkit's best at 4 and 5 NFE against ddkit's DDIM at 50 steps (targets: within 10 % and 5 %).

    python benchmarks/samplers.py --skip-digits --json oracle.json            # both schedules
    python benchmarks/samplers.py --skip-oracle --run RUN --json digits.json  # a digits:train run
    python benchmarks/samplers.py --replot oracle.json digits.json --plot samplers.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

import ddkit
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.oracle import GaussianMixture
from ddkit.samplers import run_sampler
from ddkit.tuning import teacher_solution, tune_timesteps

NFES = (4, 5, 6, 8, 10)
# diffusers' spacings: timestep_spacing values, and the σ-grids that replace them
DIFFUSERS_SPACINGS = ("leading", "trailing", "linspace", "karras", "exponential", "lu")
_SIGMA_FLAGS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas", "lu": "use_lu_lambdas"}
# (label, registry name, options) of the ddkit samplers whose timesteps are tuned
TUNED = (
    ("DDIM η=0", "ddim", {}),
    ("DPM-Solver++ 2", "dpm++", {"order": 2}),
    ("DPM-Solver++ 3", "dpm++", {"order": 3}),
    ("UniPC 2 bh2", "unipc", {"order": 2}),
    ("UniPC 3 bh2", "unipc", {"order": 3}),
    ("Heun", "heun", {}),
)
TUNE_SEED = 12345


# ---- diffusers ----------------------------------------------------------------------------------
def diffusers_scheduler(kind: str, spacing: str, schedule, order: int = 2, variant: str = "bh2", clip=False):
    """A diffusers scheduler over ddkit's betas (so both use the same schedule)."""
    common = dict(num_train_timesteps=schedule.num_timesteps, trained_betas=schedule.betas.float().numpy())
    flags = {_SIGMA_FLAGS[spacing]: True} if spacing in _SIGMA_FLAGS else {}
    timestep_spacing = "linspace" if spacing in _SIGMA_FLAGS else spacing
    if kind == "ddim":
        return DDIMScheduler(
            **common, set_alpha_to_one=True, clip_sample=clip, timestep_spacing=spacing, steps_offset=0
        )
    if kind == "dpm":
        return DPMSolverMultistepScheduler(
            **common, solver_order=order, algorithm_type="dpmsolver++", timestep_spacing=timestep_spacing, **flags
        )
    if kind in ("euler", "heun"):
        cls = EulerDiscreteScheduler if kind == "euler" else HeunDiscreteScheduler
        return cls(**common, timestep_spacing=timestep_spacing, **flags)
    # bh1 with the default final_sigmas_type="zero" returns NaN (its last step multiplies B(h) = -inf by a
    # zero correction): run it with "sigma_min", its working setting
    final = "sigma_min" if variant == "bh1" else "zero"
    return UniPCMultistepScheduler(
        **common,
        solver_order=order,
        solver_type=variant,
        timestep_spacing=timestep_spacing,
        final_sigmas_type=final,
        **flags,
    )


@torch.no_grad()
def diffusers_sample(sched, model_fn, x_T: torch.Tensor, steps: int) -> torch.Tensor:
    """diffusers' own loop (as its pipelines run it): init_noise_sigma, scale_model_input, step; the
    model gets the scheduler's timesteps as they are (fractional for Euler and Heun)."""
    sched.set_timesteps(steps)
    x = x_T * sched.init_noise_sigma
    for t in sched.timesteps:
        t_in = float(t) if t.is_floating_point() and float(t) != int(t) else int(t)
        t_batch = torch.full((x.shape[0],), t_in, dtype=torch.float32 if isinstance(t_in, float) else torch.long)
        out = model_fn(sched.scale_model_input(x, t), t_batch)
        x = sched.step(out, t, x).prev_sample
    return x


def diffusers_configs(nfe: int, schedule, spacings=DIFFUSERS_SPACINGS, variants=("bh1", "bh2"), clip=False):
    """(family, name, nfe, sample(model_fn, x_T)) for diffusers' deterministic schedulers at ``nfe``."""

    def cfg(name, kind, sp, steps, **kw):
        return (
            "diffusers",
            name,
            nfe,
            lambda f, x: diffusers_sample(diffusers_scheduler(kind, sp, schedule, **kw), f, x, steps),
        )

    out = [
        cfg(f"DDIMScheduler, {sp}", "ddim", sp, nfe, clip=clip)
        for sp in spacings
        if sp in ("leading", "trailing", "linspace")
    ]
    for sp in spacings:
        for order in (2, 3):
            out.append(cfg(f"DPMSolverMultistep {order}, {sp}", "dpm", sp, nfe, order=order))
            if sp != "lu":  # UniPCMultistepScheduler has no use_lu_lambdas
                out += [
                    cfg(f"UniPCMultistep {order} {v}, {sp}", "unipc", sp, nfe, order=order, variant=v) for v in variants
                ]
        if sp != "lu":
            out.append(cfg(f"EulerDiscrete, {sp}", "euler", sp, nfe))
            if nfe % 2:  # Heun: N points cost 2N − 1
                out.append(cfg(f"HeunDiscrete, {sp}", "heun", sp, (nfe + 1) // 2))
    return out


# ---- ddkit ------------------------------------------------------------------------------------------
def _ddkit(name: str, nfe: int, schedule, sampler: str, clip, **options):
    return ("ddkit", name, nfe, lambda f, x: run_sampler(sampler, f, x, schedule, clip_x0=clip, **options))


def ddkit_configs(nfe: int, schedule, clip=None, tuned=None, full=True):
    """(family, name, nfe, sample) for ddkit's samplers at ``nfe`` evaluations: hand-made grids and,
    from ``tuned`` ({(label, nfe): record}), tuned timesteps. ``full=False``: the digits' short list."""
    out = []
    if full:
        gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
        out.append(
            (
                "ddkit",
                "DDPM-like (DDIM η=1, leading)",
                nfe,
                lambda f, x: ddkit.ddim_sample(f, x, schedule, steps=nfe, eta=1.0, generator=gen(), clip_x0=clip),
            )
        )
    grids = ("leading", "quadratic", "logsnr", "karras", "exponential") if full else ("leading",)
    solver_grids = ("leading", "trailing", "logsnr", "karras", "exponential") if full else ("leading", "karras")
    out += [_ddkit(f"DDIM η=0, {sp}", nfe, schedule, "ddim", clip, steps=nfe, spacing=sp) for sp in grids]
    for order in (2, 3):
        for sp in solver_grids:
            out.append(
                _ddkit(f"DPM-Solver++ {order}, {sp}", nfe, schedule, "dpm++", clip, steps=nfe, order=order, spacing=sp)
            )
            out.append(
                _ddkit(f"UniPC {order} bh2, {sp}", nfe, schedule, "unipc", clip, steps=nfe, order=order, spacing=sp)
            )
        if full:
            for sp in ("leading", "logsnr"):
                out.append(
                    (
                        "ddkit",
                        f"UniPC {order} bh1, {sp}",
                        nfe,
                        lambda f, x, o=order, sp=sp: ddkit.unipc_sample(
                            f, x, schedule, steps=nfe, order=o, spacing=sp, variant="bh1", clip_x0=clip
                        ),
                    )
                )
    out.append(_ddkit("Euler, karras", nfe, schedule, "euler", clip, steps=nfe, spacing="karras"))
    if nfe % 2:
        out += [
            _ddkit(f"Heun, {sp}", nfe, schedule, "heun", clip, steps=nfe, spacing=sp)
            for sp in (("karras", "exponential", "logsnr") if full else ("karras",))
        ]
    for (label, n), record in (tuned or {}).items():
        if n == nfe:
            opts = dict(record.options)
            out.append(
                _ddkit(f"{label}, tuned", nfe, schedule, record.sampler, clip, timesteps=list(record.timesteps), **opts)
            )
    return out


def tune_all(model_fn, schedule, x_T, nfe_list, clip=None, labels=TUNED, max_evals=400, log=print, teacher=None):
    """{(label, nfe): TunedTimesteps} for every sampler in ``labels`` at every NFE (one teacher)."""
    if teacher is None:
        t0 = time.time()
        teacher = teacher_solution(model_fn, schedule, x_T, steps=500, clip_x0=clip)
        log(f"  teacher: {time.time() - t0:.0f} s")
    out = {}
    for nfe in nfe_list:
        for label, sampler, options in labels:
            if sampler == "heun" and nfe % 2 == 0:
                continue
            t0 = time.time()
            out[(label, nfe)] = rec = tune_timesteps(
                model_fn,
                schedule,
                sampler=sampler,
                nfe=nfe,
                x_T=x_T,
                clip_x0=clip,
                teacher=teacher,
                max_evals=max_evals,
                **options,
            )
            base = rec.score_before[rec.baseline]
            log(
                f"  tuned {label:15s} NFE {nfe:2d}: RMSE {base:.4f} ({rec.baseline}) -> {rec.score_after:.4f} "
                f"in {time.time() - t0:.0f} s: " + " ".join(f"{t:.1f}" for t in rec.timesteps),
                flush=True,
            )
    return out


def _tuned_json(tuned: dict) -> list:
    return [{"label": label, "nfe": nfe, **rec.to_dict()} for (label, nfe), rec in tuned.items()]


# ---- scoring ------------------------------------------------------------------------------------------
def mean_sd(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _failed(fam, name, n, e, keys, seeds):
    print(f"  {fam}: {name} at NFE {n} fails: {type(e).__name__}: {e}", flush=True)
    row = {"family": fam, "name": name, "nfe": n, "error": f"{type(e).__name__}: {e}"}
    for k in keys:
        row[k], row[f"{k}_sd"], row[f"{k}s"] = float("nan"), float("nan"), [float("nan")] * seeds
    return row


def oracle_setup(schedule_name: str, num: int, seeds: int):
    """(schedule, mixture, its exact ε, the start-noise sets x_T (set s from seed s), the true samples'
    scores (set s from seed 100 + s)) of the oracle part."""
    schedule = getattr(ddkit.Schedule, schedule_name)()
    gmm = GaussianMixture.default_2d()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x_Ts = [torch.randn(num, 2, generator=torch.Generator().manual_seed(s)) for s in range(seeds)]
    null = [
        energy_distance_to_mixture(gmm.sample(num, torch.Generator().manual_seed(100 + s))[0], gmm)
        for s in range(seeds)
    ]
    return schedule, gmm, fn, x_Ts, null


def score_oracle(configs, fn, gmm, x_Ts) -> list:
    """One row per (family, name, nfe, sample) configuration: its energy distance to the mixture's law
    on every start-noise set, mean ± sd (a configuration that raises is a "fails" row)."""
    rows = []
    for fam, name, n, sample in configs:
        try:
            scores = [energy_distance_to_mixture(sample(fn, x_T).double(), gmm) for x_T in x_Ts]
        except Exception as e:  # a scheduler that fails on this grid is reported, not fatal
            rows.append(_failed(fam, name, n, e, ("energy",), len(x_Ts)))
            continue
        m, sd = mean_sd(scores)
        rows.append({"family": fam, "name": name, "nfe": n, "energy": m, "energy_sd": sd, "energys": scores})
    return rows


def run_oracle(nfe_list, num: int, seeds: int, schedule_name: str, tune_num: int, max_evals: int) -> dict:
    schedule, gmm, fn, x_Ts, null = oracle_setup(schedule_name, num, seeds)
    x_tune = torch.randn(tune_num, 2, generator=torch.Generator().manual_seed(TUNE_SEED))
    tuned = tune_all(fn, schedule, x_tune, nfe_list, max_evals=max_evals)
    rows = []
    for nfe in nfe_list:
        rows += score_oracle(
            ddkit_configs(nfe, schedule, tuned=tuned) + diffusers_configs(nfe, schedule), fn, gmm, x_Ts
        )
        print(f"  oracle {schedule_name} NFE {nfe}: {len(rows)} configurations so far", flush=True)
    return {
        "schedule": schedule_name,
        "num": num,
        "seeds": seeds,
        "null": mean_sd(null),
        "nulls": null,
        "rows": rows,
        "tuned": _tuned_json(tuned),
    }


def oracle_verdict(result: dict, nfe: int, ddkit_name: str | None = None) -> dict:
    """ddkit's best (or its row ``ddkit_name``) against diffusers' best at ``nfe`` (by mean), with the
    paired difference over sets."""
    rows = [r for r in result["rows"] if r["nfe"] == nfe]
    best = {
        fam: min((r for r in rows if r["family"] == fam and np.isfinite(r["energy"])), key=lambda r: r["energy"])
        for fam in ("ddkit", "diffusers")
    }
    if ddkit_name is not None:
        best["ddkit"] = next(r for r in rows if r["family"] == "ddkit" and r["name"] == ddkit_name)
    diff = np.asarray(best["ddkit"]["energys"]) - np.asarray(best["diffusers"]["energys"])
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


def digits_configs(nfe_list, schedule, tuned):
    """The digits' short list at every NFE (the network is slow on a CPU): ddkit's DPM-Solver++ 3 and
    UniPC 2 on leading steps (the best hand-made grids on the digits), DDIM at the target NFEs, Heun
    at odd NFE, the tuned timesteps, and diffusers' DPM-Solver and UniPC on their default (leading)
    spacing; and the reference, ddkit's DDIM at 50 steps."""
    clip = (-1.0, 1.0)
    out = []
    for nfe in nfe_list:
        if nfe <= 5:
            out.append(_ddkit("DDIM η=0, leading", nfe, schedule, "ddim", clip, steps=nfe))
        out.append(_ddkit("DPM-Solver++ 3, leading", nfe, schedule, "dpm++", clip, steps=nfe, order=3))
        out.append(_ddkit("UniPC 2 bh2, leading", nfe, schedule, "unipc", clip, steps=nfe, order=2))
        if nfe % 2:
            out.append(_ddkit("Heun, karras", nfe, schedule, "heun", clip, steps=nfe))
        for (label, n), record in tuned.items():
            if n == nfe:
                opts = dict(record.options)
                out.append(
                    _ddkit(
                        f"{label}, tuned", nfe, schedule, record.sampler, clip, timesteps=list(record.timesteps), **opts
                    )
                )
        for order, kind, name in ((3, "dpm", "DPMSolverMultistep 3"), (2, "unipc", "UniPCMultistep 2 bh2")):
            out.append(
                (
                    "diffusers",
                    f"{name}, leading",
                    nfe,
                    lambda f, x, o=order, k=kind, n=nfe: diffusers_sample(
                        diffusers_scheduler(k, "leading", schedule, o), f, x, n
                    ),
                )
            )
    out.append(_ddkit("DDIM η=0, leading", 50, schedule, "ddim", clip, steps=50))
    return out


def run_digits(nfe_list, run: str, num: int, repeats: int, max_evals: int, partial: str | None = None) -> dict:
    from ddkit.data.images import to_uint8
    from ddkit.eval import evaluate_samples
    from ddkit.generate import start_noise
    from ddkit.training.tuned import TUNE_SEED as RUN_TUNE_SEED

    t_start = time.time()
    model, schedule, config = ddkit.load(run)
    if config.data.source != "digits:train":
        raise SystemExit(f"--run {run} was trained on {config.data.source!r}; the digits part needs a digits:train run")
    net = config.diffusion.eps_network(model, schedule)
    shape = (config.model.in_channels, config.model.image_size, config.model.image_size)
    fn = lambda x, t: net(x, t)  # noqa: E731
    x_tune = start_noise(RUN_TUNE_SEED, range(256), shape)[0]  # as `ddkit tune-steps` draws it
    # tuning costs ~(8 + max_evals)·NFE network calls on 256 samples: UniPC 2 at every NFE (the
    # best tuned solver on the oracle), DPM-Solver++ 2 (ddkit's default dpm++) at the target NFEs
    teacher = teacher_solution(fn, schedule, x_tune, steps=500, clip_x0=(-1.0, 1.0))
    tuned = {}
    for nfe in nfe_list:
        labels = [t for t in TUNED if t[0] == "UniPC 2 bh2" or (t[0] == "DPM-Solver++ 2" and nfe <= 5)]
        tuned |= tune_all(
            fn, schedule, x_tune, [nfe], clip=(-1.0, 1.0), labels=labels, max_evals=max_evals, teacher=teacher
        )
    print(f"  tuned in {time.time() - t_start:.0f} s", flush=True)
    x_Ts = [start_noise(1000 * r, range(num), shape)[0] for r in range(repeats)]
    rows = []
    for fam, name, n, sample in digits_configs(nfe_list, schedule, tuned):
        try:
            scores = [
                evaluate_samples(to_uint8(sample(fn, x_T).clamp(-1, 1)), "digits:test", seed=r)
                for r, x_T in enumerate(x_Ts)
            ]
        except Exception as e:  # a scheduler that fails on this grid is reported, not fatal
            rows.append(_failed(fam, name, n, e, ("fid", "kid"), repeats))
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
        if partial:  # hours of work: keep what is done
            done = {"run": run, "num": num, "repeats": repeats, "rows": rows, "tuned": _tuned_json(tuned)}
            Path(partial).write_text(json.dumps({"digits": done}, indent=1))
    return {"run": run, "num": num, "repeats": repeats, "rows": rows, "tuned": _tuned_json(tuned)}


def digits_verdict(result: dict, nfe: int, target: float) -> dict | None:
    rows = result["rows"]
    ref = next(r for r in rows if r["family"] == "ddkit" and r["name"] == "DDIM η=0, leading" and r["nfe"] == 50)
    candidates = [r for r in rows if r["family"] == "ddkit" and r["nfe"] == nfe and np.isfinite(r["fid"])]
    if not candidates or not np.isfinite(ref["fid"]):
        return None
    best = min(candidates, key=lambda r: r["fid"])
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
        "target": target,
        "met": bool(best["fid"] / ref["fid"] <= target),
    }


# ---- reporting ------------------------------------------------------------------------------------------
def table(rows, key, nfe_list) -> str:
    names = list(dict.fromkeys((r["family"], r["name"]) for r in rows))
    val = {(r["family"], r["name"], r["nfe"]): (r[key], r[f"{key}_sd"]) for r in rows}
    best = {}
    for fam in ("ddkit", "diffusers"):
        for n in nfe_list:
            vals = [v[0] for (f, _, m), v in val.items() if f == fam and m == n and np.isfinite(v[0])]
            best[(fam, n)] = min(vals) if vals else None
    fmt = "{:.2f} ± {:.2f}" if key == "fid" else "{:.5f} ± {:.5f}"
    lines = [
        "| sampler | " + " | ".join(f"NFE {n}" for n in nfe_list) + " |",
        "| --- | " + " | ".join("---" for _ in nfe_list) + " |",
    ]
    for fam, name in names:
        cells = []
        for n in nfe_list:
            if (fam, name, n) not in val:
                cells.append("")
                continue
            m, sd = val[(fam, name, n)]
            cell = "fails" if not np.isfinite(m) else fmt.format(m, sd)
            cells.append(f"**{cell}**" if np.isfinite(m) and m == best[(fam, n)] else cell)
        lines.append(f"| {fam}: {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tuned_table(tuned: list, schedule) -> str:
    """The tuned sequences beside the hand-made grids they replace (model timesteps, first point first)."""
    from ddkit.timesteps import sampling_grid

    lines = [
        "| sampler | NFE | tuned timesteps | RMSE: default → best hand-made → tuned |",
        "| --- | --- | --- | --- |",
    ]
    for r in tuned:
        hand = {k: v for k, v in r["score_before"].items() if k != "dp"}
        best = min(hand, key=hand.get)
        seq = " ".join(f"{t:.0f}" if float(t).is_integer() else f"{t:.1f}" for t in r["timesteps"])
        lines.append(
            f"| {r['label']} | {r['nfe']} | {seq} | {hand[r['baseline']]:.4f} ({r['baseline']}) → "
            f"{hand[best]:.4f} ({best}) → **{r['score_after']:.4f}** |"
        )
    del sampling_grid, schedule
    return "\n".join(lines)


def hand_grids(schedule_name: str, nfe_list) -> str:
    """The hand-made grids at each NFE (the solvers' convention), for comparison with the tuned ones."""
    from ddkit.timesteps import ALL_SPACINGS, sampling_grid

    schedule = getattr(ddkit.Schedule, schedule_name)()
    lines = ["| spacing | " + " | ".join(f"NFE {n}" for n in nfe_list) + " |", "| --- |" + " --- |" * len(nfe_list)]
    for sp in ALL_SPACINGS:
        cells = []
        for n in nfe_list:
            try:
                t = sampling_grid(schedule, n, sp, solver=True).t
                cells.append(" ".join(f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}" for v in t))
            except ValueError:
                cells.append("fails")
        lines.append(f"| {sp} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(parts: list[tuple[str, dict, str]], path: str) -> None:
    """One panel per (title, result, key): the best configuration of each sampler family per NFE;
    ddkit solid, diffusers dashed; tuned timesteps as their own family."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(parts), figsize=(6.2 * len(parts), 4.8))
    axes = np.atleast_1d(axes)
    for ax, (title, result, key) in zip(axes, parts):
        rows = [r for r in result["rows"] if r["nfe"] != 50]
        nfes = sorted({r["nfe"] for r in rows})
        best: dict[str, dict] = {}
        for r in rows:
            kind = r["family"] + ": " + r["name"].split(",")[0].split(" ")[0]
            if r["name"].endswith("tuned"):
                kind += " (tuned)"
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
        if "null" in result:
            m, sd = result["null"]
            ax.axhspan(1e-6, max(m + 2 * sd, 2e-6), color="grey", alpha=0.2, label="noise (true samples, +2 sd)")
        ref = [r for r in result["rows"] if r["nfe"] == 50]
        if ref:
            ax.axhline(ref[0][key], color="black", linewidth=0.8, label="ddkit DDIM, 50 steps")
        ax.set_xscale("log"), ax.set_yscale("log"), ax.set_xlabel("NFE"), ax.set_title(title, fontsize=9)
        ax.set_xticks(nfes, [str(n) for n in nfes])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(result: dict, args) -> None:
    for name, o in result.get("oracle", {}).items():
        print(
            f"\noracle ({name} schedule): energy distance to the exact law, {o['num']} samples, mean ± sd over "
            f"{o['seeds']} start-noise sets; true samples score {o['null'][0]:.5f} ± {o['null'][1]:.5f}"
        )
        nfes = sorted({r["nfe"] for r in o["rows"]})
        print(table(o["rows"], "energy", nfes))
        print(tuned_table(o["tuned"], name))
        o["verdicts"] = [oracle_verdict(o, n) for n in nfes]
        for v in o["verdicts"]:
            print(
                f"NFE {v['nfe']}: ddkit best {v['ddkit']} {v['ddkit_energy']:.5f}; diffusers best {v['diffusers']} "
                f"{v['diffusers_energy']:.5f}; paired difference {v['difference']:+.5f} ± {v['difference_sd']:.5f} "
                f"(ddkit better in every set: {v['ddkit_better_in_every_set']})"
            )
    if "digits" in result:
        d = result["digits"]
        print(f"\ndigits: FID vs digits:test, {d['num']} samples, mean ± sd over {d['repeats']} start-noise sets")
        print(table(d["rows"], "fid", sorted({r["nfe"] for r in d["rows"]})))
        print(tuned_table(d["tuned"], "cosine"))
        d["verdicts"] = [v for n, t in ((4, 1.10), (5, 1.05)) if (v := digits_verdict(d, n, t)) is not None]
        for v in d["verdicts"]:
            print(
                f"NFE {v['nfe']}: ddkit best {v['best']} FID {v['fid']:.2f} ± {v['fid_sd']:.2f} against DDIM-50 "
                f"{v['ddim50']:.2f} ± {v['ddim50_sd']:.2f}: ratio {v['ratio']:.3f} (paired per set "
                f"{v['paired_ratio'][0]:.3f} ± {v['paired_ratio'][1]:.3f}; target <= {v['target']:.2f}: "
                f"{'met' if v['met'] else 'MISSED'})"
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nfe", type=int, nargs="+", default=list(NFES), help="oracle NFE columns")
    p.add_argument("--oracle-num", type=int, default=10_000, help="oracle samples per start-noise set")
    p.add_argument("--oracle-seeds", type=int, default=3, help="oracle start-noise sets")
    p.add_argument("--oracle-schedule", nargs="+", choices=("linear", "cosine"), default=["linear", "cosine"])
    p.add_argument("--tune-num", type=int, default=1024, help="oracle start-noise draws the timesteps are tuned on")
    p.add_argument("--max-evals", type=int, default=400, help="search budget of each oracle tuning (sampling runs)")
    p.add_argument("--digits-max-evals", type=int, default=60, help="search budget of each digits tuning")
    p.add_argument("--run", default=None, help="a digits:train ddkit run for the digits part")
    p.add_argument("--num", type=int, default=1000, help="digits samples per set")
    p.add_argument("--repeats", type=int, default=5, help="digits start-noise sets")
    p.add_argument("--digits-nfe", type=int, nargs="+", default=list(NFES), help="NFE for the digits part")
    p.add_argument("--skip-oracle", action="store_true")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--plot", default=None)
    p.add_argument("--replot", nargs="+", default=None, metavar="JSON", help="only report and redraw from --json files")
    args = p.parse_args(argv)
    if args.replot:
        result = {}
        for path in args.replot:
            loaded = json.loads(Path(path).read_text())
            result.setdefault("oracle", {}).update(loaded.get("oracle", {}))
            if "digits" in loaded:
                result["digits"] = loaded["digits"]
    else:
        if not args.skip_digits and args.run is None:
            p.error("the digits part needs --run RUN (a digits:train run), or pass --skip-digits")
        torch.set_num_threads(1)
        result = {}
        if not args.skip_oracle:
            result["oracle"] = {
                name: run_oracle(args.nfe, args.oracle_num, args.oracle_seeds, name, args.tune_num, args.max_evals)
                for name in args.oracle_schedule
            }
        if not args.skip_digits:
            partial = args.json + ".partial" if args.json else None
            result["digits"] = run_digits(
                args.digits_nfe, args.run, args.num, args.repeats, args.digits_max_evals, partial=partial
            )
    report(result, args)
    if args.json and not args.replot:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        parts = [
            (f"oracle, {name} schedule: energy distance (best per family)", o, "energy")
            for name, o in result.get("oracle", {}).items()
        ]
        if "digits" in result:
            parts.append(("digits: FID vs digits:test (best per family)", result["digits"], "fid"))
        plot(parts, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
