"""The leak test of issue 24 at 16×16: does translation augmentation leak into the samples?

A folder of one centred Gaussian blob (16×16 grey, std BLOB_STD pixels) is trained with ``translate``
at P = 0.5 (``--augment 0.5 --augment-ops translate``; shifts of −2 … 2 pixels, so 47 % of the
training images are moved), twice per seed:

    told      the network sees the augmentation labels (the library's default, augment_dim = 2)
    withheld  the same config with augment_dim = 0: the classic, leaking augmentation
    none      (``--variants none``, a control) no augmentation: how far from the centre the
              samples of an unaugmented run land, the floor of the told run's offsets

Then NUM samples (DDIM, 20 steps, seed 0, zero labels) and each sample's centroid distance from the
centre. The issue's bar: the median offset of the told run ≤ 0.5 px. The withheld run should leak
(its median goes up with the share of shifted images it reproduces).

Same small UNet and optimiser as ``tests/test_augment_leak.py`` (8 channels, batch 32, warm-up 20),
with a fixed step budget instead of the issue's "3 minutes" so that the numbers do not depend on
the machine (``--steps``; see docs/generalisation-training.md for how the default was sized).

Resumable: finished runs are read from the results file and skipped; an unfinished run continues
from its newest checkpoint (``ddkit.train(resume=True)``). One process, one thread:

    OMP_NUM_THREADS=1 nohup nice -n 10 python benchmarks/augment_leak.py > runs/augment_leak.log 2>&1 &
    python benchmarks/augment_leak.py --report     # print the table from the results file
    python benchmarks/augment_leak.py --rescore    # sample the finished runs again (same seed, same numbers)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ddkit
import ddkit.nn.embeddings
from ddkit.generate import generate
from ddkit.training.api import run_config

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "augment_leak.json"
SIZE, BLOB_STD, NUM = 16, 1.4, 256
VARIANTS = ("told", "withheld", "none")


def blob_folder(root: Path) -> Path:
    """64 copies of one centred blob, std BLOB_STD pixels (the test's 0.7 at 8×8, scaled to 16×16)."""
    c = (SIZE - 1) / 2
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    blob = np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * BLOB_STD**2))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(64):
        Image.fromarray((blob * 255).round().astype(np.uint8), mode="L").save(root / f"{i}.png")
    return root


class _Labelled(torch.nn.Module):
    """The run's network called with fixed augmentation labels [1, 2] (the label probe)."""

    def __init__(self, net: torch.nn.Module, labels: torch.Tensor):
        super().__init__()
        self.net, self.labels, self.config = net, labels, net.config

    def forward(self, x, t, y=None):
        return self.net(x, t, y, augment_labels=self.labels.expand(len(x), -1))


def centroids(run: Path, num: int, labels: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's centroid (x, y) minus the centre, in pixels [num] each (DDIM 20, seed 0); with
    ``labels`` the network is told it sees that augmentation (the library samples with none)."""
    model, schedule, config = ddkit.load(run)
    net = model if labels is None else _Labelled(model, torch.tensor([labels]))
    x = generate(config.diffusion.eps_network(net, schedule), schedule, num, steps=20, seed=0, clip_x0=(-1, 1))
    w = ((x[:, 0] + 1) / 2).clamp(0, 1)
    idx = torch.arange(SIZE, dtype=w.dtype)
    cx = (w * idx[None, None, :]).sum((1, 2)) / w.sum((1, 2))
    cy = (w * idx[None, :, None]).sum((1, 2)) / w.sum((1, 2))
    return (cx - (SIZE - 1) / 2).numpy(), (cy - (SIZE - 1) / 2).numpy()


def score(run: Path, num: int, told: bool) -> dict:
    """The offsets' summary: median, mean, the shares beyond 0.5 and 1 px (a leaked shift moves the
    blob by 1 … 2.8 px; a centred blob drawn imprecisely lands near the centre) and the deciles.
    For a told run also the label probes: the mean centroid move in x when sampled with the label of
    a +2 px shift in x (a network that uses its labels moves its samples by about 2 px), and the
    offsets when sampled with the label of a (+1, +1) px shift (a network that knows *whether* an
    image is shifted, but not where, draws off-centre blobs in every direction)."""
    cx, cy = centroids(run, num)
    d = np.hypot(cx, cy)
    out = {
        "num_samples": num,
        "median_offset": float(np.median(d)),
        "mean_offset": float(d.mean()),
        "share_over_half_px": float((d > 0.5).mean()),
        "share_over_1px": float((d > 1.0).mean()),
        "deciles": [round(float(q), 3) for q in np.quantile(d, np.linspace(0.1, 0.9, 9))],
    }
    if told:
        out["label_probe_dx"] = float((centroids(run, num, [1.0, 0.0])[0] - cx).mean())
        d11 = np.hypot(*centroids(run, num, [0.5, 0.5]))  # the label of a (+1, +1) px shift
        out["label_probe_11_median_offset"] = float(np.median(d11))
        out["label_probe_11_share_over_half_px"] = float((d11 > 0.5).mean())
    return out


def train_one(folder: Path, out: Path, variant: str, seed: int, steps: int) -> float:
    """Train (or resume) one run; returns its training seconds in this call."""
    options = dict(
        data=str(folder), image_size=SIZE, channels=1, steps=steps, batch_size=32, model_channels=8,
        augment=0.5, augment_ops="translate", warmup=20, sample_every=10**6, ckpt_every=250, seed=seed,
    )  # fmt: skip
    if variant == "none":
        options.update(augment=0.0, augment_ops=None)
    config, _ = run_config({**options, "out": str(out)})
    assert config.model.augment_dim == (0 if variant == "none" else 2)
    if variant == "withheld":
        config = config.replace(model=dataclasses.replace(config.model, augment_dim=0))
    t0 = time.perf_counter()
    ddkit.train(config, out, resume=True, progress=False)
    return time.perf_counter() - t0


def report(results: dict) -> None:
    def gain(r):  # the label gain a told run trained with (records before --label-gain: the library's 10)
        return r.get("label_gain") or 10.0 if r["variant"] == "told" else None

    print("| seed | variant | gain | steps | median offset (px) | share > 0.5 px | share > 1 px | +2 px label: dx |")
    print("|---|---|---|---|---|---|---|---|")
    runs = sorted(results["runs"].values(), key=lambda r: (r["steps"], r["seed"], r["variant"], gain(r) or 0))
    for r in runs:
        print(
            f"| {r['seed']} | {r['variant']} | {gain(r) or ''} | {r['steps']} | {r['median_offset']:.3f} "
            f"| {r['share_over_half_px']:.3f} | {r.get('share_over_1px', float('nan')):.3f} "
            f"| {r.get('label_probe_dx', float('nan')):.2f} |"
        )
    for group in sorted({(r["steps"], r["variant"], gain(r) or 0) for r in runs}):
        med = [r["median_offset"] for r in runs if (r["steps"], r["variant"], gain(r) or 0) == group]
        each = ", ".join(f"{m:.3f}" for m in med)
        steps, variant, g = group
        what = f"{variant} (gain {g:g})" if g else variant
        print(f"{steps} steps, {what}: median offset {np.mean(med):.3f} px (mean of {len(med)} seeds: {each})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=1500, help="training steps per run (default %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=["told", "withheld"])
    p.add_argument("--num", type=int, default=NUM, help="samples per run (default %(default)s)")
    p.add_argument("--runs", type=Path, default=Path("runs/augment_leak"), help="run folders (git-ignored)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--report", action="store_true", help="only print the table from the results file")
    p.add_argument("--rescore", action="store_true", help="sample the finished runs again and update their numbers")
    p.add_argument(
        "--label-gain",
        type=float,
        default=None,
        help="diagnostic: train with this AUGMENT_LABEL_GAIN instead of the library's (runs named ...-gG)",
    )
    args = p.parse_args()
    gain = ddkit.nn.embeddings.AUGMENT_LABEL_GAIN
    if args.label_gain is not None:
        ddkit.nn.embeddings.AUGMENT_LABEL_GAIN = gain = args.label_gain
    torch.set_num_threads(1)
    results = json.loads(args.results.read_text()) if args.results.exists() else {"runs": {}}
    if args.rescore:
        for key, r in results["runs"].items():
            ddkit.nn.embeddings.AUGMENT_LABEL_GAIN = r.get("label_gain") or gain  # the gain it trained with
            r.update(score(args.runs / key, r["num_samples"], r["variant"] == "told"))
        args.results.write_text(json.dumps(results, indent=1) + "\n")
    elif not args.report:
        folder = blob_folder(args.runs / "blob")
        for seed in args.seeds:
            for variant in args.variants:
                key = f"{variant}-s{seed}-{args.steps}" + (f"-g{gain:g}" if args.label_gain is not None else "")
                if key in results["runs"]:
                    continue
                out = args.runs / key
                seconds = train_one(folder, out, variant, seed, args.steps)
                results["runs"][key] = {
                    "variant": variant, "seed": seed, "steps": args.steps, "size": SIZE, "blob_std": BLOB_STD,
                    "augment": 0.0 if variant == "none" else 0.5, "model_channels": 8, "batch_size": 32,
                    "label_gain": gain if variant == "told" else None, "train_seconds": seconds,
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **score(out, args.num, variant == "told"),
                }  # fmt: skip
                r = results["runs"][key]
                print(
                    f"{key}: median offset {r['median_offset']:.3f} px, > 0.5 px {r['share_over_half_px']:.3f}",
                    flush=True,
                )
                args.results.parent.mkdir(parents=True, exist_ok=True)
                args.results.write_text(json.dumps(results, indent=1) + "\n")
    report(results)


if __name__ == "__main__":
    main()
