"""Guidance on the built-in digits (or ``--data fashion-mnist:train``): class accuracy (the
independent classifier of ``ddkit.eval.features``: the digits or the Fashion-MNIST network) and
FID/KID against the test split (digits:test, fashion-mnist:test), per guidance kind and scale.

    python benchmarks/guidance.py --cond-run RUN_C --uncond-run RUN_U [--classifier-run CLS] \
        [--num 1000] [--steps 50] [--repeats 2] [--out-dir benchmarks/guidance_out]

Rows share their start noise (sample i of repeat r is seeded by (r, i)); numbers are means over
the repeats. Sections: classifier-free guidance at scales 0, 1, 2, 3, 5 (with and without a
guidance interval) on the class-conditional run; classifier guidance at scales 0, 1, 3, 10 on
the unconditional run (and 2, the recommended scale in the docs' results); autoguidance of the unconditional run by its checkpoint step-000300 at
w = 1, 1.5, 2, 3. Writes a plot of FID against accuracy and a per-class grid (CFG scale 3).
Runs missing from the command line are trained here (``ddkit train``/``train-classifier``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import ddkit
from ddkit.data import load_data
from ddkit.data.images import save_grid, to_uint8
from ddkit.eval import evaluate_samples
from ddkit.eval.features import get_features
from ddkit.eval.references import TEST_SPLIT
from ddkit.generate import generate

CFG_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0)
CLS_SCALES = (0.0, 1.0, 2.0, 3.0, 10.0)  # 2: the recommended scale (docs/results.md)
AUTO_SCALES = (1.0, 1.5, 2.0, 3.0)


def ensure_run(path: str | None, default: Path, argv: list[str]) -> Path:
    if path is not None:
        return Path(path)
    if not (default / "config.json").exists():
        from ddkit.cli import main

        assert main([*argv, "--out", str(default), "--no-progress"]) == 0
    return default


def score(make_fn, model, schedule, labels, args, features) -> dict:
    """Mean accuracy, FID and KID over ``args.repeats`` start-noise sets."""
    rows = []
    for r in range(args.repeats):
        x = generate(
            model,
            schedule,
            args.num,
            labels=labels,
            model_fn_for=make_fn,
            seed=r,
            steps=args.steps,
            batch_size=args.batch_size,
            clip_x0=(-1.0, 1.0),
        )
        images = to_uint8(x)
        m = evaluate_samples(images, TEST_SPLIT[args.data], metrics=("fid", "kid"), features=features, seed=r)
        acc = float((features.predict(images) == labels.numpy()).mean()) if labels is not None else float("nan")
        rows.append((acc, m["fid"], m["kid"]))
    a = np.array(rows)
    return {"acc": a[:, 0].mean(), "fid": a[:, 1].mean(), "fid_sd": a[:, 1].std(), "kid": a[:, 2].mean()}


def line(name: str, s: dict) -> str:
    acc = "   -  " if np.isnan(s["acc"]) else f"{100 * s['acc']:5.1f}%"
    return f"| {name:<38} | {acc} | {s['fid']:6.2f} ± {s['fid_sd']:4.2f} | {s['kid']:6.3f} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cond-run"), p.add_argument("--uncond-run"), p.add_argument("--classifier-run")
    p.add_argument("--weak", default=None, help="weak model for autoguidance (default UNCOND/checkpoints/step-000300)")
    p.add_argument("--data", choices=("digits:train", "fashion-mnist:train"), default="digits:train")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--interval", type=int, nargs=2, default=(250, 749), help="guidance interval (training t)")
    p.add_argument("--out-dir", default="benchmarks/guidance_out")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    features = get_features("digits" if args.data.startswith("digits") else "fashion")
    test = TEST_SPLIT[args.data]
    t0 = time.perf_counter()
    cond = ensure_run(args.cond_run, out / "cond", ["train", "--data", args.data, "--class-cond"])
    uncond = ensure_run(
        args.uncond_run,
        out / "uncond",
        ["train", "--data", args.data, "--ckpt-every", "100", "--keep-step", "300"],
    )
    print(
        f"settings: {args.num} samples, DDIM-{args.steps}, mean over {args.repeats} start-noise sets; "
        f"classifier: the {features.name} features' network (held-out accuracy {features.heldout_accuracy:.3f})"
    )
    real = load_data(args.data)
    real_img = to_uint8(real.x[: args.num])
    m = evaluate_samples(real_img, test, metrics=("fid", "kid"), features=features)
    acc = float((features.predict(real_img) == real.y[: args.num].numpy()).mean())
    header = "| setting                                | class acc | FID (± sd)     | KID    |\n|---|---|---|---|"
    print(header)
    print(
        line(f"real: {args.data}[:{args.num}] vs test", {"acc": acc, "fid": m["fid"], "fid_sd": 0.0, "kid": m["kid"]})
    )
    results = {}

    model, schedule, cfg = ddkit.load(cond)
    model = cfg.diffusion.eps_network(model, schedule)  # ε for eps, x0 and v runs
    labels = torch.arange(args.num) % 10
    for interval in (None, tuple(args.interval)):
        for w in CFG_SCALES:
            make = lambda y, w=w, iv=interval: ddkit.classifier_free_guidance(model, y, w, interval=iv)
            name = f"CFG w={w:g}" + ("" if interval is None else f", t in [{interval[0]}, {interval[1]}]")
            results[name] = s = score(make, model, schedule, labels, args, features)
            print(line(name, s), flush=True)
            if w == 3.0 and interval is None:
                x = generate(
                    model,
                    schedule,
                    100,
                    labels=torch.arange(100) % 10,
                    steps=args.steps,
                    seed=0,
                    model_fn_for=make,
                    clip_x0=(-1.0, 1.0),
                )
                save_grid(to_uint8(x), out / "cfg3_per_class.png", nrow=10)

    umodel, uschedule, ucfg = ddkit.load(uncond)
    umodel = ucfg.diffusion.eps_network(umodel, uschedule)
    weak_path = Path(args.weak) if args.weak else uncond / "checkpoints" / "step-000300"
    weak, _, wcfg = ddkit.load(uncond, checkpoint=weak_path)
    weak = wcfg.diffusion.eps_network(weak, uschedule)
    for w in AUTO_SCALES:
        make = lambda y, w=w: ddkit.autoguidance(lambda x, t: umodel(x, t), lambda x, t: weak(x, t), w)
        name = f"autoguidance ({weak_path.name}) w={w:g}"
        results[name] = s = score(make, umodel, uschedule, None, args, features)
        print(line(name, s), flush=True)

    cls_run = ensure_run(
        args.classifier_run, out / "cls", ["train-classifier", "--like", str(uncond), "--steps", "600"]
    )
    wait_until_trained(cls_run)
    clf, _, _ = ddkit.load(cls_run)
    for sc in CLS_SCALES:
        make = lambda y, sc=sc: ddkit.classifier_guidance(lambda x, t: umodel(x, t), clf, y, sc, uschedule)
        name = f"classifier s={sc:g} (uncond run)"
        results[name] = s = score(make, umodel, uschedule, labels, args, features)
        print(line(name, s), flush=True)
    plot(results, out / "fid_vs_accuracy.png", test)
    print(
        f"wrote {out / 'fid_vs_accuracy.png'} and {out / 'cfg3_per_class.png'}; "
        f"{time.perf_counter() - t0:.0f} s (contended)"
    )


def wait_until_trained(run: Path, limit_s: float = 900) -> None:
    """A classifier run still training elsewhere: wait (up to ``limit_s``) for its last checkpoint."""
    from ddkit.training.checkpoint import latest_checkpoint
    from ddkit.training.config import RunConfig

    steps = RunConfig.load(run / "config.json").train.steps
    deadline = time.time() + limit_s
    while steps and time.time() < deadline:
        ckpt = latest_checkpoint(run)
        if ckpt is not None and int(ckpt.name.split("-")[1]) >= steps:
            return
        time.sleep(10)


def plot(results: dict, path: Path, reference: str = "digits:test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for prefix, marker in (("CFG w", "o"), ("CFG w=", "s"), ("classifier", "^")):
        pts = [(k, v) for k, v in results.items() if k.startswith(prefix.split("=")[0]) and not np.isnan(v["acc"])]
        if prefix == "CFG w":
            pts = [(k, v) for k, v in pts if "t in" not in k]
        elif prefix == "CFG w=":
            pts = [(k, v) for k, v in pts if "t in" in k]
        if not pts:
            continue
        label = {"CFG w": "classifier-free", "CFG w=": "classifier-free, interval", "classifier": "classifier"}[prefix]
        ax.plot([100 * v["acc"] for _, v in pts], [v["fid"] for _, v in pts], marker=marker, label=label)
        for k, v in pts:
            ax.annotate(k.split()[1].split(",")[0], (100 * v["acc"], v["fid"]), fontsize=7)
    ax.set_xlabel("class accuracy (%)")
    ax.set_ylabel(f"FID vs {reference}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
