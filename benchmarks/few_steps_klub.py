"""Training-free few-step grids on the digits, side by side (issue 23, §5 without the ECT student):
DDIM-50, every hand-made spacing of DPM-Solver++ 2 at 4 and 5 NFE (the best is reported), the
kl-optimal grid, the grid `ddkit tune-steps --objective klub` chooses and the RMSE-tuned grid
(`--objective rmse`), on the default digits:train run, scored against digits:test over --repeats
start-noise sets (set r: sample i from (1000·r, i), the same for every row: paired), with FID, KID
and closer-than-real (share of samples nearer a training image than test images typically are),
and the real-data level (FID of --num digits:train images against digits:test, --repeats draws).

    nice -n 19 python benchmarks/few_steps_klub.py --run runs/digits --json benchmarks/few_steps_klub.json

Without --run it trains the default run first (`ddkit train --data digits:train --seed 0`). Rows
already in the --json file are kept (resumable)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import ddkit
from ddkit.data import load_data
from ddkit.data.images import to_uint8
from ddkit.eval import evaluate_samples
from ddkit.generate import start_noise
from ddkit.samplers import run_sampler
from ddkit.training.tuned import tune_run

HAND = ("leading", "trailing", "logsnr", "karras", "exponential", "kl-optimal")
SAMPLER, ORDER = "dpm++", 2


def _train(run: Path) -> None:
    cmd = [sys.executable, "-m", "ddkit", "train", "--data", "digits:train", "--out", str(run), "--seed", "0"]
    print("$ " + " ".join(cmd + ["--no-progress"]), flush=True)
    subprocess.run(cmd + ["--no-progress"], check=True)


def _score(images_sets: list[np.ndarray]) -> dict:
    scores = [
        evaluate_samples(im, "digits:test", metrics=("fid", "kid", "memorization"), seed=r)
        for r, im in enumerate(images_sets)
    ]
    out = {}
    for key in ("fid", "kid", "closer_than_real"):
        v = np.array([s[key] for s in scores], dtype=np.float64)
        out[key], out[key + "_sd"], out[key + "s"] = float(v.mean()), float(v.std(ddof=1)), v.tolist()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("runs/digits-fewsteps"))
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--nfe", type=int, nargs="+", default=[4, 5])
    p.add_argument("--max-evals", type=int, default=60, help="the RMSE search's budget")
    p.add_argument("--json", type=Path, default=Path("benchmarks/few_steps_klub.json"))
    p.add_argument("--report", action="store_true", help="only print the --json file's table")
    args = p.parse_args(argv)
    if args.report:
        print(table(json.loads(args.json.read_text())))
        return 0
    torch.set_num_threads(1)
    if not (args.run / "config.json").is_file():
        _train(args.run)
    result = json.loads(args.json.read_text()) if args.json.is_file() else {"rows": [], "grids": {}}
    done = {(r["name"], r["nfe"]) for r in result["rows"]}

    def save():
        args.json.write_text(json.dumps(result, indent=1) + "\n")

    model, schedule, config = ddkit.load(args.run)
    net = config.diffusion.eps_network(model, schedule)
    shape = (config.model.in_channels, config.model.image_size, config.model.image_size)
    fn = lambda x, t: net(x, t)  # noqa: E731
    x_Ts = [start_noise(1000 * r, range(args.num), shape)[0] for r in range(args.repeats)]

    def row(name, nfe, sampler, **options):
        if (name, nfe) in done:
            return
        t0 = time.time()
        with torch.no_grad():
            sets = [to_uint8(run_sampler(sampler, fn, x, schedule, clip_x0=(-1.0, 1.0), **options)) for x in x_Ts]
        r = {"name": name, "nfe": nfe, **_score(sets), "seconds": round(time.time() - t0, 1)}
        result["rows"].append(r)
        save()
        print(f"{name:32s} NFE {nfe}: FID {r['fid']:.2f} ± {r['fid_sd']:.2f}, closer {r['closer_than_real']:.3f}")

    if ("real digits:train", 0) not in done:
        train = load_data("digits:train").x
        sets = [
            to_uint8(train[torch.randperm(len(train), generator=torch.Generator().manual_seed(r))[: args.num]])
            for r in range(args.repeats)
        ]
        scores = [evaluate_samples(im, "digits:test", seed=r)["fid"] for r, im in enumerate(sets)]
        result["rows"].append(
            {
                "name": "real digits:train",
                "nfe": 0,
                "fid": float(np.mean(scores)),
                "fid_sd": float(np.std(scores, ddof=1)),
                "fids": scores,
            }
        )
        save()
    row("DDIM-50 leading", 50, "ddim", steps=50)
    for nfe in args.nfe:
        for spacing in HAND:
            row(f"DPM-Solver++ 2, {spacing}", nfe, SAMPLER, steps=nfe, spacing=spacing, order=ORDER)
        for objective in ("klub", "rmse"):
            key = f"{objective}-{nfe}"
            if key not in result["grids"]:
                rec, _ = tune_run(
                    args.run, sampler=SAMPLER, nfe=nfe, order=ORDER, objective=objective, max_evals=args.max_evals
                )
                result["grids"][key] = rec.to_dict()
                save()
            rec = result["grids"][key]
            name = f"DPM-Solver++ 2, {'KLUB-chosen' if objective == 'klub' else 'RMSE-tuned'}"
            row(name, nfe, SAMPLER, timesteps=rec["timesteps"], order=ORDER)
    return 0


def table(result: dict) -> str:
    """The rows as a markdown table: FID ± sd, the paired FID difference to DDIM-50 (mean ± sd of
    the per-set differences), KID, closer-than-real."""
    rows = sorted(result["rows"], key=lambda r: (r["nfe"] not in (0, 50), r["nfe"]))  # stable: as run
    ref = next((r for r in rows if r["name"] == "DDIM-50 leading"), None)
    lines = [
        "| grid | NFE | FID | ÷ DDIM-50 | paired − DDIM-50 | KID | closer-than-real |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["nfe"] == 0:
            lines.append(f"| {r['name']} (real level) | | {r['fid']:.2f} ± {r['fid_sd']:.2f} | | | | |")
            continue
        ratio = diff = ""
        if ref is not None and r is not ref:
            d = np.array(r["fids"]) - np.array(ref["fids"])
            ratio, diff = f"{r['fid'] / ref['fid']:.2f}", f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"
        lines.append(
            f"| {r['name']} | {r['nfe']} | {r['fid']:.2f} ± {r['fid_sd']:.2f} | {ratio} | {diff} | "
            f"{r['kid']:.4f} | {r['closer_than_real']:.3f} |"
        )
    for key, rec in sorted(result.get("grids", {}).items()):
        t = " ".join(f"{v:.4g}" for v in rec["timesteps"])
        extra = f", chosen {rec['chosen']}" if rec.get("chosen") else ""
        lines.append(f"\n{key}: timesteps {t}{extra}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
