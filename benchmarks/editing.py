"""Editing and restoration measured: on the exact oracle (a Gaussian mixture, its exact posterior)
and on the built-in digits with trained runs (inputs from digits:test, never trained on).

    python benchmarks/editing.py --run RUN --cond-run COND_RUN [--sections oracle,inpaint,sr,sdedit,translate,timing]
        [--num 500] [--repeats 3] [--out-dir docs/editing] [--threads 2]

Sections (each prints a Markdown table; all numbers go to OUT/editing.json, grids and plots to OUT):
  oracle     energy distance to the exact posterior of x₂ given x₁ (2-D mixture, modes std 0.3):
             replace, RePaint (resample 2/5/10), DDNM, DPS at several scales; the noise level is the
             spread of the same distance for exact posterior draws of the same size
  inpaint    the lower half of the test digits: replace, RePaint and DDNM-with-Mask at their defaults,
             paired on the same inputs and start noise; the shipped classifier's accuracy
  sr         ×2 super-resolution (4×4 → 8×8): DDNM, DPS and bicubic upsampling: consistency
             ‖A·x − y‖, accuracy, FID against digits:test (and the real-data level)
  sdedit     corrupted digits of one half of digits:test (Gaussian noise; erased strokes) over
             strength 0.1 … 0.9: FID against the other half (disjoint from the inputs) against the
             distance to the input, plotted
  translate  DDIB on the class-conditional run: share classified as the target class, distance to the
             input, beside plain sampling of the target class; guidance scale chosen on digits:train
  timing     seconds per image of each method at its defaults beside plain DDIM-50 sampling
Randomness: sample i of start-noise set r draws from the generator seeded by (r, i), the same in
every method of a section (paired rows); numbers are means over --repeats sets, ± their sd.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import ddkit
from ddkit import edit
from ddkit.data import load_data
from ddkit.data.images import save_grid, to_uint8
from ddkit.eval import evaluate_samples
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.eval.features import DigitsFeatures
from ddkit.generate import generate
from ddkit.oracle import GaussianMixture
from ddkit.parameterization import eps_network
from ddkit.rng import SampleGenerators

SECTIONS = ("oracle", "inpaint", "sr", "sdedit", "translate", "timing")
STRENGTHS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)


def mean_sd(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def fmt(values, scale: float = 1.0, digits: int = 2) -> str:
    m, s = mean_sd(np.asarray(values) * scale)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def load_run(path):
    model, schedule, config = ddkit.load(path)
    model = eps_network(model, config.diffusion.prediction, schedule)
    return model, schedule, config


def grid(path: Path, columns: list[torch.Tensor], rows: int = 16) -> None:
    """Save columns (each [N, C, H, W] in [-1, 1]) side by side for the first ``rows`` inputs."""
    table = torch.stack([c[:rows].float().cpu() for c in columns], 1)
    save_grid(to_uint8(table.reshape(-1, *table.shape[2:])), path, nrow=len(columns))
    print(f"  grid: {path}")


# ---- the oracle ---------------------------------------------------------------------------------
def oracle(args, results: dict) -> None:
    s = ddkit.Schedule.linear()
    g = GaussianMixture.default_2d()
    gmm = GaussianMixture(g.means, torch.full((8,), 0.3, dtype=torch.float64), g.weights)
    fn, c, n = gmm.eps_fn(s.alpha_bars), 0.884, args.oracle_num
    post = gmm.posterior(torch.tensor([[1.0, 0.0]]), torch.tensor([c]))
    x = torch.zeros(n, 2, dtype=torch.float64)
    x[:, 0] = c
    mask, op = torch.tensor([[True, False]]), edit.Linear(torch.tensor([[1.0, 0.0]]))
    exact = [energy_distance_to_mixture(post.mixture.sample(n, torch.Generator().manual_seed(900 + i))[0], post.mixture)
             for i in range(16)]  # fmt: skip
    rows = {"exact posterior draws": (exact, 0)}
    settings = [("replace, 100 steps", "inpaint", dict(method="replace", steps=100), 100),
                ("replace, 1000 steps (DDPM)", "inpaint", dict(method="replace", steps=1000), 1000)]  # fmt: skip
    for steps, j, r in ((100, 10, 2), (100, 10, 5), (100, 10, 10), (100, 10, 20), (50, 5, 10), (250, 10, 10)):
        settings.append((f"RePaint {steps} steps, jump {j}, resample {r}", "inpaint",
                         dict(method="repaint", steps=steps, jump_length=j, resample=r), None))  # fmt: skip
    settings.append(("DDNM, 100 steps, η 0.85", "restore", dict(method="ddnm", steps=100), 100))
    for scale, steps in ((0.03, 100), (0.1, 100), (0.3, 100), (1.0, 100), (0.1, 1000)):
        settings.append((f"DPS scale {scale:g}, {steps} steps, η 1", "restore",
                         dict(method="dps", steps=steps, scale=scale), steps))  # fmt: skip
    for name, kind, kw, evals in settings:
        eds, t0 = [], time.perf_counter()
        for r in range(args.repeats):
            gen = torch.Generator().manual_seed(r)
            if kind == "inpaint":
                out = edit.inpaint(fn, x, mask, s, generator=gen, **kw)
            else:
                out = edit.restore(fn, op.A(x), op, s, generator=gen, **kw)
            eds.append(energy_distance_to_mixture(post.coordinates(out), post.mixture))
        if evals is None:
            walk = edit.repaint_walk(kw["steps"], kw["jump_length"], kw["resample"])
            evals = sum(b == a + 1 for a, b in zip(walk, walk[1:]))
        rows[name] = (eds, evals)
        print(f"  {name}: {fmt(eds, 1e3)} ×1e-3 ({(time.perf_counter() - t0) / args.repeats:.1f} s)", flush=True)
    noise = mean_sd(exact)[1]
    print(f"\n### Oracle: energy distance to the exact posterior ({n} samples; noise level: sd {noise:.1e})\n")
    print("| method | model evaluations | energy distance (×1e-3) | in noise levels |")
    print("|---|---|---|---|")
    for name, (eds, evals) in rows.items():
        print(f"| {name} | {evals or '-'} | {fmt(eds, 1e3, 3)} | {mean_sd(eds)[0] / noise:.1f} |")
    results["oracle"] = {k: {"ed": v[0], "evals": v[1]} for k, v in rows.items()} | {"noise_sd": noise, "n": n}


# ---- digits: inpainting -------------------------------------------------------------------------
def inpaint_digits(args, results: dict, run, test, features) -> None:
    model, s, _ = run
    fn = lambda x, t: model(x, t)  # noqa: E731
    x, y = test.x[: args.num], test.y[: args.num].numpy()
    mask = edit.mask_preset("lower-half", len(x), 8, 8)
    acc = {"replace": [], "repaint": [], "ddnm": []}
    first = {}
    for r in range(args.heavy_repeats):
        for method in acc:
            gen, t0 = SampleGenerators(r, range(len(x))), time.perf_counter()
            if method == "ddnm":
                out = edit.restore(fn, edit.Mask(mask).A(x), edit.Mask(mask), s, generator=gen, clip_x0=(-1, 1))
            else:
                out = edit.inpaint(fn, x, mask, s, method=method, generator=gen, clip_x0=(-1, 1))
            known = mask.expand_as(x)
            assert torch.equal(out[known], x[known]), f"{method}: known pixels changed"
            acc[method].append(float((features.predict(to_uint8(out)) == y).mean()))
            first.setdefault(method, out)
            print(f"  set {r} {method}: {100 * acc[method][-1]:.1f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
    masked = torch.where(mask, x, torch.zeros(()))
    blank = float((features.predict(to_uint8(torch.where(mask, x, -torch.ones(())))) == y).mean())
    real = float((features.predict(to_uint8(x)) == y).mean())
    grid(args.out_dir / "inpaint_lower_half.png", [x, masked, first["replace"], first["repaint"], first["ddnm"]])
    wins = [a > b for a, b in zip(acc["repaint"], acc["replace"])]
    print(f"\n### Inpainting the lower half of {len(x)} test digits ({args.heavy_repeats} start-noise sets)\n")
    print("| | classifier accuracy (%) |\n|---|---|")
    print(f"| the complete test digits (real-data level) | {100 * real:.1f} |")
    print(f"| the upper half alone (lower half background) | {100 * blank:.1f} |")
    for m, name in (("replace", "replace (250 steps)"), ("repaint", "RePaint (250 steps, jump 10, resample 10)"),
                    ("ddnm", "DDNM with Mask (100 steps, η 0.85)")):  # fmt: skip
        print(f"| {name} | {fmt(acc[m], 100, 1)} |")
    print(f"\nRePaint beats replace in {sum(wins)} of {len(wins)} paired sets; known pixels unchanged in all.")
    results["inpaint"] = {"acc": acc, "real": real, "upper_half_only": blank, "repaint_wins": sum(wins)}


# ---- digits: super-resolution -----------------------------------------------------------------------
def sr_digits(args, results: dict, run, test, train, features) -> None:
    model, s, _ = run
    fn = lambda x, t: model(x, t)  # noqa: E731
    op = edit.Downsample(2)
    x, y = test.x[: args.num], test.y[: args.num].numpy()
    m = op.A(x)

    def score(out):
        img = to_uint8(out.clamp(-1, 1))
        back = torch.from_numpy(img).permute(0, 3, 1, 2).float() / 127.5 - 1  # what the NPZ holds
        fid = evaluate_samples(img, "digits:test", metrics=("fid",), features=features)["fid"]
        return {"consistency": float((op.A(back) - m).flatten(1).norm(dim=1).mean()),
                "consistency_float": float((op.A(out) - m).flatten(1).norm(dim=1).mean()),
                "acc": float((features.predict(img) == y).mean()), "fid": fid}  # fmt: skip

    bicubic = F.interpolate(m, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    rows = {"bicubic": [score(bicubic)], "ddnm": [], "dps": []}
    first = {}
    for r in range(args.repeats):
        for method in ("ddnm", "dps") if r < args.heavy_repeats else ("ddnm",):
            gen, t0 = SampleGenerators(r, range(len(x))), time.perf_counter()
            kw = {"scale": args.dps_scale, "steps": args.dps_steps} if method == "dps" else {}
            out = edit.restore(fn, m, op, s, method=method, generator=gen, clip_x0=(-1, 1), **kw)
            rows[method].append(score(out))
            first.setdefault(method, out)
            print(f"  set {r} {method}: {rows[method][-1]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    real_fid = evaluate_samples(to_uint8(train.x[: len(x)]), "digits:test", metrics=("fid",), features=features)["fid"]
    real = {"acc": float((features.predict(to_uint8(x)) == y).mean()), "fid": real_fid}
    grid(args.out_dir / "sr_x2.png", [x, op.A_pinv(m), bicubic, first["ddnm"], first["dps"]])
    sets = f"{args.repeats} start-noise sets for DDNM, {args.heavy_repeats} for DPS"
    print(f"\n### ×2 super-resolution of {len(x)} test digits (4×4 → 8×8; {sets})\n")
    print("| method | ‖A·x − y‖ (uint8 output) | ‖A·x − y‖ (float) | accuracy (%) | FID vs digits:test |")
    print("|---|---|---|---|---|")
    print(f"| real digits (FID: {len(x)} digits:train images) | 0 | 0 | {100 * real['acc']:.1f} | {real['fid']:.2f} |")
    for name, label in (("bicubic", "bicubic upsampling of y"), ("ddnm", "DDNM (100 steps, η 0.85)"),
                        ("dps", f"DPS (scale {args.dps_scale:g}, {args.dps_steps} steps, η 1)")):  # fmt: skip
        v = rows[name]
        print(f"| {label} | {fmt([d['consistency'] for d in v], 1, 3)} | {fmt([d['consistency_float'] for d in v], 1, 4)} "
              f"| {fmt([d['acc'] for d in v], 100, 1)} | {fmt([d['fid'] for d in v])} |")  # fmt: skip
    results["sr"] = {"rows": rows, "real": real, "dps_scale": args.dps_scale, "dps_steps": args.dps_steps}


def tune_dps(args, results: dict, run, train, features) -> None:
    """The DPS scale for the digits, chosen on 100 digits:train images (never digits:test)."""
    model, s, _ = run
    fn = lambda x, t: model(x, t)  # noqa: E731
    op = edit.Downsample(2)
    x, y = train.x[:100], train.y[:100].numpy()
    print("\n### DPS scale on 100 digits:train images (×2 super-resolution)\n")
    print("| scale | ‖A·x − y‖ | accuracy (%) |\n|---|---|---|")
    best = None
    for scale in args.dps_scales:
        out = edit.restore(fn, op.A(x), op, s, method="dps", scale=scale, steps=args.dps_steps,
                           generator=SampleGenerators(0, range(100)), clip_x0=(-1, 1))  # fmt: skip
        cons = float((op.A(out) - op.A(x)).flatten(1).norm(dim=1).mean())
        acc = float((features.predict(to_uint8(out)) == y).mean())
        print(f"| {scale:g} | {cons:.3f} | {100 * acc:.0f} |", flush=True)
        if best is None or acc > best[1] or (acc == best[1] and cons < best[2]):
            best = (scale, acc, cons)
    args.dps_scale = best[0]
    results["dps_tuning"] = {"chosen": best[0]}
    print(f"\nchosen: scale {best[0]:g}")


# ---- digits: SDEdit ---------------------------------------------------------------------------------
def corrupt(x: torch.Tensor, kind: str, seed: int) -> torch.Tensor:
    """Gaussian noise (σ = 0.5 in [-1, 1] units, clamped) or erased strokes (40% of the pixels set to
    the background)."""
    if kind == "noise":
        g = SampleGenerators(seed, range(len(x)), stream=2)
        return (x + 0.5 * g.randn(x.shape)).clamp(-1, 1)
    keep = edit.mask_preset("random:0.4", len(x), 8, 8, generator=SampleGenerators(seed, range(len(x)), stream=2))
    return torch.where(keep, x, -torch.ones(()))


def test_halves(test, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """digits:test split in two disjoint halves by a fixed permutation: SDEdit edits digits of the
    first and its realism is scored against the second, so faithfulness to the inputs cannot lower
    the FID (an edit scored against the images it was made from rewards copying them)."""
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    return order[: len(test) // 2], order[len(test) // 2 :]


def sdedit_digits(args, results: dict, run, test, features) -> None:
    model, s, _ = run
    fn = lambda x, t: model(x, t)  # noqa: E731
    inputs, held = test_halves(test)
    x = test.x[inputs[: args.num]]
    reference = to_uint8(test.x[held])  # disjoint from the inputs

    def fid(images: torch.Tensor) -> float:
        return evaluate_samples(to_uint8(images), reference, metrics=("fid",), features=features)["fid"]

    curves = {}
    for kind in ("noise", "erased"):
        xc = corrupt(x, kind, 0)
        base = fid(xc)
        pts, shown = [], [x, xc]
        for strength in STRENGTHS:
            fids, dist, dclean = [], [], []
            for r in range(args.repeats):
                out = edit.sdedit(fn, xc, s, strength=strength, generator=SampleGenerators(r, range(len(x))),
                                  steps=args.sdedit_steps, clip_x0=(-1, 1))  # fmt: skip
                fids.append(fid(out))
                dist.append(float((out - xc).flatten(1).norm(dim=1).mean()))
                dclean.append(float((out - x).flatten(1).norm(dim=1).mean()))
                if r == 0:
                    shown.append(out)
            pts.append({"strength": strength, "fid": fids, "dist_input": dist, "dist_clean": dclean})
            print(f"  {kind} strength {strength}: FID {fmt(fids)}, to input {fmt(dist)}", flush=True)
        curves[kind] = {"points": pts, "input_fid": base,
                        "input_dist_clean": float((xc - x).flatten(1).norm(dim=1).mean())}  # fmt: skip
        grid(args.out_dir / f"sdedit_{kind}.png", shown)
    real = fid(load_data("digits:train").x[: len(x)])  # the real-data level at the same count
    print(f"\n### SDEdit on {len(x)} corrupted test digits (DDIM from t₀ = strength·T; {args.repeats} sets)\n")
    print(f"FID against the other half of digits:test ({len(reference)} digits, none of them an input)\n")
    print(
        "| corruption | strength | FID vs held-out half | ‖x − input‖ | ‖x − clean original‖ |\n|---|---|---|---|---|"
    )
    for kind, c in curves.items():
        print(f"| {kind} | input itself | {c['input_fid']:.2f} | 0 | {c['input_dist_clean']:.2f} |")
        for p in c["points"]:
            print(f"| {kind} | {p['strength']} | {fmt(p['fid'])} | {fmt(p['dist_input'])} | {fmt(p['dist_clean'])} |")
    print(f"\nreal-data level: FID of {len(x)} digits:train images {real:.2f}")
    results["sdedit"] = {
        "curves": curves,
        "real_fid": real,
        "reference": f"digits:test, the half without the inputs ({len(reference)})",
    }
    plot_sdedit(args.out_dir / "sdedit_tradeoff.png", curves, real)


def plot_sdedit(path: Path, curves: dict, real: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for kind, c in curves.items():
        d = [np.mean(p["dist_input"]) for p in c["points"]]
        f = [np.mean(p["fid"]) for p in c["points"]]
        ax.plot(
            [0] + d, [c["input_fid"]] + f, "o-", label={"noise": "Gaussian noise σ 0.5", "erased": "40% erased"}[kind]
        )
        for p, di, fi in zip(c["points"], d, f):
            ax.annotate(f"{p['strength']:g}", (di, fi), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.axhline(real, color="grey", ls="--", lw=1, label="real digits (train vs test)")
    ax.set_yscale("log")
    ax.set_xlabel("faithfulness: mean ‖x − input‖ (pixels in [−1, 1])")
    ax.set_ylabel("realism: FID against the held-out half of digits:test")
    ax.set_title("SDEdit on corrupted test digits: strength 0.1 … 0.9")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"  plot: {path}")


# ---- digits: translation ----------------------------------------------------------------------------
def translate_digits(args, results: dict, cond, test, train, features) -> None:
    model, s, _ = cond

    def targets(y):
        return (y + 1 + torch.arange(len(y)) % 9) % 10  # every other class, equally often

    xt, yt = train.x[:200], train.y[:200]
    tt = targets(yt)
    print("\n### Guidance scale for translation, chosen on 200 digits:train images\n")
    print("| w | target accuracy (%) |\n|---|---|")
    chosen = None
    for w in GUIDANCE_SCALES:
        out = edit.translate(model, xt, s, target=tt, guidance_scale=w, clip_x0=(-1, 1))
        acc = float((features.predict(to_uint8(out)) == tt.numpy()).mean())
        print(f"| {w:g} | {100 * acc:.1f} |", flush=True)
        if chosen is None and acc >= 0.95:
            chosen = w
    chosen = chosen or GUIDANCE_SCALES[-1]
    x, y = test.x[: args.num], test.y[: args.num]
    t = targets(y)
    rows, shown = {}, [x]
    for name, w, source in ((f"DDIB w = {chosen:g}, unconditional inversion", chosen, None),
                            (f"DDIB w = {chosen:g}, inversion with the source label", chosen, y),
                            ("DDIB w = 1 (plain conditional sampling from the inverted x_T)", 1.0, None)):  # fmt: skip
        out = edit.translate(model, x, s, target=t, source=source, guidance_scale=w, clip_x0=(-1, 1))
        rows[name] = {"acc": [float((features.predict(to_uint8(out)) == t.numpy()).mean())],
                      "dist": [float((out - x).flatten(1).norm(dim=1).mean())]}  # fmt: skip
        shown.append(out)
        print(f"  {name}: {rows[name]}", flush=True)
    plain = {"acc": [], "dist": []}
    for r in range(args.repeats):
        out = generate(model, s, len(x), labels=t, seed=r, model_fn_for=lambda yy: ddkit.classifier_free_guidance(
            model, yy, chosen), clip_x0=(-1, 1), batch_size=1000)  # fmt: skip
        plain["acc"].append(float((features.predict(to_uint8(out)) == t.numpy()).mean()))
        plain["dist"].append(float((out - x).flatten(1).norm(dim=1).mean()))
        if r == 0:
            shown.append(out)
    rows[f"plain sampling of the target class, w = {chosen:g}, fresh x_T"] = plain
    grid(args.out_dir / "translate.png", shown)
    print(f"\n### Translation of {len(x)} test digits to another class (class-conditional run, DDIM-50)\n")
    print("| | target accuracy (%) | mean ‖x − input‖ |\n|---|---|---|")
    for name, v in rows.items():
        print(f"| {name} | {fmt(v['acc'], 100, 1)} | {fmt(v['dist'])} |")
    results["translate"] = {"chosen_scale": chosen, "rows": rows}


# ---- time per image -----------------------------------------------------------------------------
def timing(args, results: dict, run, cond, test) -> None:
    model, s, _ = run
    fn = lambda x, t: model(x, t)  # noqa: E731
    n = args.timing_num
    x = test.x[:n]
    mask = edit.mask_preset("lower-half", n, 8, 8)
    op = edit.Downsample(2)
    jobs = {
        "plain sampling (DDIM 50)": lambda g: ddkit.ddim_sample(fn, g.randn(x.shape), s, steps=50),
        "sdedit (strength 0.5, DDIM 50)": lambda g: edit.sdedit(fn, x, s, strength=0.5, generator=g),
        "replace (250 steps)": lambda g: edit.inpaint(fn, x, mask, s, method="replace", generator=g),
        "repaint (250 steps, jump 10, resample 10)": lambda g: edit.inpaint(fn, x, mask, s, generator=g),
        "ddnm (100 steps)": lambda g: edit.restore(fn, op.A(x), op, s, generator=g),
        "dps (1000 steps)": lambda g: edit.restore(fn, op.A(x), op, s, method="dps", generator=g),
        "translate (DDIM 50 both ways, CFG)": lambda g: edit.translate(cond[0], x, cond[1], target=1) if cond else None,
        "interpolate (8 frames, DDIM 50)": lambda g: edit.interpolate(fn, x[: n // 2], x[n // 2 :], s),
    }
    per = {}
    for name, job in jobs.items():
        t0 = time.perf_counter()
        if job(SampleGenerators(0, range(n))) is None:
            continue  # (translate without the class-conditional run)
        images = n * 4 if name.startswith("interpolate") else n  # n/2 pairs × 8 frames
        per[name] = (time.perf_counter() - t0) / images
        print(f"  {name}: {1e3 * per[name]:.1f} ms/image", flush=True)
    base = per["plain sampling (DDIM 50)"]
    print(f"\n### Time per image at the defaults (batch {n}, {torch.get_num_threads()} threads)\n")
    print("| method | ms / image | × plain sampling |\n|---|---|---|")
    for name, v in per.items():
        print(f"| {name} | {1e3 * v:.1f} | {v / base:.1f} |")
    ratio = per["repaint (250 steps, jump 10, resample 10)"] / per["replace (250 steps)"]
    print(f"\nRePaint's resampling costs {ratio:.1f}× replace at the same 250 steps (2410 vs 250 model evaluations).")
    results["timing"] = {"ms_per_image": {k: 1e3 * v for k, v in per.items()}, "repaint_over_replace": ratio}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", default="/work/runs/default-v1", help="the unconditional digits run")
    p.add_argument("--cond-run", default="/work/runs/cond-v1", help="the class-conditional digits run")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--num", type=int, default=500, help="test digits (sdedit: at most 250, half of digits:test)")
    p.add_argument("--repeats", type=int, default=3, help="start-noise sets")
    p.add_argument("--heavy-repeats", type=int, default=2, help="start-noise sets of inpainting and DPS")
    p.add_argument("--sdedit-steps", type=int, default=None, help="DDIM steps from t₀ (default the sampler's 50)")
    p.add_argument("--oracle-num", type=int, default=4000)
    p.add_argument("--dps-steps", type=int, default=250, help="DPS steps (its default, 1000, costs 4× more)")
    p.add_argument("--dps-scales", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0])
    p.add_argument("--timing-num", type=int, default=100)
    p.add_argument("--timing-translate", action="store_true", help="time translation too (needs --cond-run)")
    p.add_argument("--out-dir", type=Path, default=Path("docs/editing"))
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections {sorted(unknown)}; allowed: {', '.join(SECTIONS)}")
    path = args.out_dir / "editing.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    features = DigitsFeatures()
    test, train = load_data("digits:test"), load_data("digits:train")
    run = load_run(args.run) if set(sections) - {"oracle", "translate"} else None
    cond = load_run(args.cond_run) if "translate" in sections else None
    t0 = time.perf_counter()
    for section in sections:
        print(f"\n== {section} ==", flush=True)
        if section == "oracle":
            oracle(args, results)
        elif section == "inpaint":
            inpaint_digits(args, results, run, test, features)
        elif section == "sr":
            tune_dps(args, results, run, train, features)
            sr_digits(args, results, run, test, train, features)
        elif section == "sdedit":
            sdedit_digits(args, results, run, test, features)
        elif section == "translate":
            translate_digits(args, results, cond, test, train, features)
        else:
            timing(args, results, run, cond or (load_run(args.cond_run) if args.timing_translate else None), test)
        path.write_text(json.dumps(results, indent=1, default=float))
    print(f"\ntotal {(time.perf_counter() - t0) / 60:.1f} min; numbers in {path}")


if __name__ == "__main__":
    main()
