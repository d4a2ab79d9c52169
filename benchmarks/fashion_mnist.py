"""Fashion-MNIST at 28×28: ddkit's default network against diffusers' recipe, at equal training images.

Resumable, one job at a time, one thread: re-running the same command continues where it stopped
(after Ctrl-C or kill -9), job after job. Everything lands in --out (default
benchmarks/results/fashion_mnist/): one folder per job, results.json with every finished number.

    nice -n 19 python benchmarks/fashion_mnist.py real     # real-data levels (seconds)
    nice -n 19 python benchmarks/fashion_mnist.py proxy    # the short runs that choose the recipes
    nice -n 19 python benchmarks/fashion_mnist.py main     # both libraries, 2 seeds, 150,000 images
    nice -n 19 python benchmarks/fashion_mnist.py score    # held-out scores of the finished main runs
    python benchmarks/fashion_mnist.py status              # which jobs are done, partial, waiting

The validation part: 2,000 images of fashion-mnist:train (ddkit's split_val, seed 0); both libraries
train on the other 58,000 and are scored during training on it (DPM-Solver++ 10 steps, 500 samples,
the shipped Fashion-MNIST features). Held-out scores use fashion-mnist:test, never seen.

ddkit: ``ddkit.train`` on the RunConfig ``ddkit train --data fashion-mnist`` builds (a proxy
candidate changes the network or optimiser), resumed from its own checkpoints. diffusers: the
UNet2DModel of Hugging Face's diffusion course (unit 1), DDPMScheduler (1,000 steps, linear β),
AdamW, EMAModel as in diffusers' train_unconditional example, trained here with the same batches
count; its checkpoints hold the weights, the EMA, the optimiser, the data order and the step.
Both train in fp32. CPU seconds: a heartbeat thread writes the process CPU time every 20 s (work redone after a kill
counts twice, for both libraries alike).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

import ddkit
from ddkit.data import load_data, load_run_data
from ddkit.data.images import save_grid, to_uint8
from ddkit.eval import evaluate_samples
from ddkit.eval.features import FashionFeatures
from ddkit.generate import generate
from ddkit.schedule import Schedule
from ddkit.training.api import new_run_config
from ddkit.training.config import DataConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fashion_mnist"
# the validation part: 2,000 images (ddkit's validation also scores the loss on them and on as many
# training images, in 4 bands of t: 16,000 network calls, so a larger part would cost more than training)
VAL, VAL_SEED = 2000, 0
EVAL_NUM = 500  # samples per validation point (both libraries)
PROXY_IMAGES, MAIN_IMAGES = 48_000, 150_000
PROXY_POINTS, MAIN_POINTS = 3, 6  # validation points per run
SCORE_SETS, SCORE_NUM, DDIM_SETS = 5, 1000, 2

# diffusers' recipe, pinned: the course's unit-1 UNet2DModel for 28×28 grey images, AdamW, EMAModel
DIFFUSERS_UNET = dict(
    sample_size=28,
    in_channels=1,
    out_channels=1,
    layers_per_block=2,
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
)
DIFFUSERS_TRAIN = dict(batch_size=128, lr=4e-4, weight_decay=1e-2, warmup=500, ema_decay=0.9999, ema_power=0.75)
DIFFUSERS_LRS = (2e-4, 4e-4, 1e-3)  # the sweep: the course's 4e-4 and a factor ~2.5 either side

# ddkit's proxy candidates: changes to `ddkit train --data fashion-mnist` (model: UNetConfig fields,
# diffusion: DiffusionConfig's, train: TrainConfig's)
DDKIT_CANDIDATES = {
    "default": {},
    "lr1e-3": {"train": {"lr": 1e-3}},
    "lr4e-3": {"train": {"lr": 4e-3}},
    "attn7": {"model": {"attn_resolutions": (7,)}},
    "attn14-7": {"model": {"attn_resolutions": (14, 7)}},
    "w48": {"model": {"base_channels": 48}},
    "batch128": {"train": {"batch_size": 128}},
    "levels2": {"model": {"channel_mult": (1, 2), "attn_resolutions": (14,)}},
    # the two best single changes so far together (each beat the default at every point)
    "attn7-batch128": {"model": {"attn_resolutions": (7,)}, "train": {"batch_size": 128}},
    # diffusers' recipe trains on DDPM's linear β schedule; ddkit's default is cosine (chosen on the digits)
    "linear": {"diffusion": {"schedule": "linear"}},
    # whether the mirror helps on clothing (issue 22): EDM's augmentation with every operation, against
    # the same without xflip
    "augment0.2": {"train": {"augment": 0.2}},
    "augment0.2-noflip": {"train": {"augment": 0.2, "augment_ops": ("translate", "scale", "rotate", "aniso")}},
}
# No EMA proxy: the decay warms up as min(decay, (1 + n)/(10 + n)), which reaches 0.999 only at update
# 8,991, so every decay from 0.999 up gives the same weights in the proxies (188 steps) and in the main
# runs (586 steps of 256 images). ddkit's EMA decay cannot change a result at these budgets.
# the order proxy jobs run in: the two libraries' starting points first, then the sweeps
PROXY_ORDER = (
    "ddkit-default",
    "diffusers-lr4e-4",
    "ddkit-lr1e-3",
    "diffusers-lr1e-3",
    "ddkit-lr4e-3",
    "diffusers-lr2e-4",
    "ddkit-attn7",
    "diffusers-lr2e-3",  # the sweep's best (1e-3) was its largest value: one more above it
    "ddkit-batch128",
    "diffusers-lr4e-3",  # 2e-3 was best again, at the sweep's edge: one more above it
    "ddkit-w48",
    "ddkit-attn7-batch128",  # the two best single changes together: before the other single changes
    "ddkit-linear",
    "ddkit-levels2",
    "ddkit-attn14-7",
    "ddkit-augment0.2",
    "ddkit-augment0.2-noflip",
)


# ---- bookkeeping ------------------------------------------------------------------------------------
def write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def read_json(path: Path, default=None):
    return json.loads(path.read_text()) if path.is_file() else default


class CpuClock:
    """The job's CPU seconds across sessions: ``cpu.json`` rewritten every 20 s by a daemon thread."""

    def __init__(self, folder: Path):
        self.path = folder / "cpu.json"
        self.base = read_json(self.path, {"cpu_s": 0.0})["cpu_s"]
        self.start = time.process_time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def seconds(self) -> float:
        return self.base + time.process_time() - self.start

    def _beat(self) -> None:
        while not self._stop.wait(20):
            write_json(self.path, {"cpu_s": self.seconds()})

    def close(self) -> float:
        self._stop.set()
        write_json(self.path, {"cpu_s": self.seconds()})
        return self.seconds()


def data_parts():
    """(train part [58,000], val part [2,000]) of fashion-mnist:train."""
    d = DataConfig(source="fashion-mnist", val=VAL, val_seed=VAL_SEED)
    return load_run_data(d, 0, "train"), load_run_data(d, 0, "val")


# ---- ddkit ------------------------------------------------------------------------------------------
def ddkit_config(candidate: str, seed: int, images: int, points: int):
    """The RunConfig of ``ddkit train --data fashion-mnist --val 2000`` with the candidate's changes."""
    change = DDKIT_CANDIDATES[candidate]
    config, _ = new_run_config({"data": "fashion-mnist", "val": VAL, "val_seed": VAL_SEED, "seed": seed})
    train = replace(config.train, **change.get("train", {}))
    steps = math.ceil(images / train.batch_size)
    every = math.ceil(steps / points)  # the last point is the final step, which the trainer evaluates anyway
    # fp32 for both libraries (ddkit's precision "auto" picks bf16 on CPUs with native bf16; diffusers'
    # recipe trains in fp32): the comparison is of recipes, on any machine
    train = replace(train, steps=steps, eval_every=every, eval_num=EVAL_NUM, ckpt_every=every, sample_every=every,
                    precision="fp32")  # fmt: skip
    diffusion = replace(config.diffusion, **change.get("diffusion", {}))
    return replace(config, model=replace(config.model, **change.get("model", {})), diffusion=diffusion, train=train)


def run_ddkit(folder: Path, candidate: str, seed: int, images: int, points: int) -> dict:
    config = ddkit_config(candidate, seed, images, points)
    clock = CpuClock(folder)
    ddkit.train(config, folder / "run", resume=True, progress=False)
    cpu_s = clock.close()
    log = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines() if line.strip()]
    # one record per step (a step evaluated again after a stop: the later record)
    evals = sorted(
        {r["step"]: r["eval"] for r in log if isinstance(r.get("eval"), dict) and "fid" in r["eval"]}.items()
    )
    curve = [{"images": step * config.train.batch_size, "fid": e["fid"], "kid": e.get("kid")} for step, e in evals]
    eval_s = sum(e.get("seconds", 0.0) for _, e in evals)
    return {"library": "ddkit", "candidate": candidate, "seed": seed, "images": images, "curve": curve,
            "cpu_s": cpu_s, "eval_wall_s": eval_s, "config": config.to_dict()}  # fmt: skip


# ---- diffusers --------------------------------------------------------------------------------------
class DiffusersNet(torch.nn.Module):
    """UNet2DModel as ddkit's ``model(x_t, t, y=None) -> ε`` (for ddkit's samplers)."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.config = SimpleNamespace(image_size=28, in_channels=1)
        self.num_classes = None

    def forward(self, x, t, y=None):
        return self.unet(x, t).sample


def diffusers_sample(unet, n: int, seed: int, sampler: str = "dpm++", steps: int = 10) -> np.ndarray:
    """n samples uint8 [n, 28, 28, 1] from a diffusers UNet by ddkit's sampler on the linear schedule."""
    unet.eval()
    x = generate(DiffusersNet(unet), Schedule.linear(1000), n, sampler=sampler, steps=steps, seed=seed,
                 clip_x0=(-1.0, 1.0), batch_size=250)  # fmt: skip
    return to_uint8(x)


def run_diffusers(folder: Path, lr: float, seed: int, images: int, points: int, train, val) -> dict:
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel

    tc = {**DIFFUSERS_TRAIN, "lr": lr}
    steps = math.ceil(images / tc["batch_size"])
    every = math.ceil(steps / points)
    torch.manual_seed(seed)
    unet = UNet2DModel(**DIFFUSERS_UNET)
    ema_unet = UNet2DModel(**DIFFUSERS_UNET)
    ema = EMAModel(unet.parameters(), decay=tc["ema_decay"], use_ema_warmup=True, inv_gamma=1.0, power=tc["ema_power"])
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=tc["weight_decay"])
    sched = get_cosine_schedule_with_warmup(opt, tc["warmup"], steps)
    noise_sched = DDPMScheduler(num_train_timesteps=1000)
    gen = torch.Generator().manual_seed(seed)
    state = {"step": 0, "curve": [], "eval_cpu_s": 0.0}
    ckpt = folder / "diffusers_state.pt"
    if ckpt.is_file():
        saved = torch.load(ckpt, weights_only=True)
        unet.load_state_dict(saved["unet"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        sched.load_state_dict(saved["sched"])
        gen.set_state(saved["gen"])
        state = json.loads(saved["state"])
    clock = CpuClock(folder)
    x_train, val_images = train.x, to_uint8(val.x)
    features = FashionFeatures()
    perm, pos = None, 0
    epoch_len = len(x_train)
    while state["step"] < steps:
        if perm is None or pos + tc["batch_size"] > epoch_len:
            perm, pos = torch.randperm(epoch_len, generator=gen), 0  # the order follows gen's saved state
        unet.train()
        x0 = x_train[perm[pos : pos + tc["batch_size"]]]
        pos += tc["batch_size"]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (len(x0),), generator=gen)
        loss = F.mse_loss(unet(noise_sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.step(unet.parameters())
        state["step"] += 1
        if state["step"] % every == 0 or state["step"] == steps:
            start = time.process_time()
            ema.copy_to(ema_unet.parameters())
            samples = diffusers_sample(ema_unet, EVAL_NUM, seed)
            scores = evaluate_samples(samples, val_images, metrics=("fid", "kid"), features=features)
            state["eval_cpu_s"] += time.process_time() - start
            state["curve"].append(
                {"images": state["step"] * tc["batch_size"], "fid": scores["fid"], "kid": scores["kid"]}
            )
            print(f"{folder.name}: {state['curve'][-1]}", flush=True)
            # a new epoch starts after every checkpoint, so the saved generator state fixes what follows
            perm = None
            tmp = folder / ".diffusers_state.tmp.pt"
            torch.save({"unet": unet.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "gen": gen.get_state(), "state": json.dumps(state)}, tmp)  # fmt: skip
            os.replace(tmp, ckpt)
            torch.save(ema_unet.state_dict(), folder / "ema_unet.pt")
    cpu_s = clock.close()
    return {"library": "diffusers", "lr": lr, "seed": seed, "images": images, "curve": state["curve"],
            "cpu_s": cpu_s, "eval_cpu_s": state["eval_cpu_s"], "recipe": {**tc, "unet": DIFFUSERS_UNET}}  # fmt: skip


# ---- jobs -------------------------------------------------------------------------------------------
def job(out: Path, name: str, images: int, points: int, seed: int = 0, parts=None) -> dict:
    """Run (or continue, or read back) the job ``name``: "ddkit-CANDIDATE" or "diffusers-lrLR"."""
    folder = out / "jobs" / f"{name}-seed{seed}-{images // 1000}k"
    done = folder / "done.json"
    if done.is_file():
        return read_json(done)
    folder.mkdir(parents=True, exist_ok=True)
    print(f"running {folder.name} (re-run the same command to continue it after a stop)", flush=True)
    library, setting = name.split("-", 1)
    if library == "ddkit":
        result = run_ddkit(folder, setting, seed, images, points)
    else:
        train, val = parts or data_parts()
        result = run_diffusers(folder, float(setting[2:]), seed, images, points, train, val)
    result["final_val_fid"] = result["curve"][-1]["fid"] if result["curve"] else None
    write_json(done, result)
    return result


def best_of(results: dict, prefix: str) -> str | None:
    """The proxy job of a library with the lowest final validation FID."""
    scored = {k: v["final_val_fid"] for k, v in results.items() if k.startswith(prefix) and v.get("final_val_fid")}
    return min(scored, key=scored.get) if scored else None


def phase_proxy(out: Path) -> None:
    results = read_json(out / "results.json", {})
    parts = data_parts()
    for name in PROXY_ORDER:
        results.setdefault("proxy", {})[name] = job(out, name, PROXY_IMAGES, PROXY_POINTS, parts=parts)
        write_json(out / "results.json", results)


def phase_main(out: Path) -> None:
    results = read_json(out / "results.json", {})
    proxy = results.get("proxy", {})
    chosen = [best_of(proxy, "ddkit-") or "ddkit-default", best_of(proxy, "diffusers-") or "diffusers-lr4e-4"]
    parts = data_parts()
    for seed in (0, 1):
        for name in chosen:
            results.setdefault("main", {})[f"{name}-seed{seed}"] = job(out, name, MAIN_IMAGES, MAIN_POINTS, seed, parts)
            write_json(out / "results.json", results)


def phase_real(out: Path) -> None:
    """FID/KID of N real training images against the test set: the level a perfect model reaches."""
    results = read_json(out / "results.json", {})
    train, test = to_uint8(load_data("fashion-mnist:train").x), to_uint8(load_data("fashion-mnist:test").x)
    features, rng = FashionFeatures(), np.random.default_rng(0)
    levels = {}
    for n in (500, 1000, 5000):
        draws = [
            evaluate_samples(
                train[rng.choice(len(train), n, replace=False)], test, metrics=("fid", "kid"), features=features
            )  # fmt: skip
            for _ in range(SCORE_SETS)
        ]
        levels[str(n)] = {k: [d[k] for d in draws] for k in ("fid", "kid")}
        print(f"real {n}: FID {np.mean(levels[str(n)]['fid']):.3f} ± {np.std(levels[str(n)]['fid']):.3f}", flush=True)
    results["real_levels"] = {"features": "fashion", "reference": "fashion-mnist:test", "sets": SCORE_SETS, **levels}
    results["feature_net"] = {
        "heldout_accuracy": features.heldout_accuracy,
        "per_class": features.heldout_accuracy_per_class,
    }
    write_json(out / "results.json", results)


def _samples_of(folder: Path, n: int, seed: int, sampler: str, steps: int) -> np.ndarray:
    if (folder / "run").is_dir():
        model, schedule, config = ddkit.load(folder / "run", checkpoint="last")
        f = config.diffusion.eps_network(model, schedule)
        return to_uint8(generate(f, schedule, n, sampler=sampler, steps=steps, seed=seed, clip_x0=(-1.0, 1.0)))
    from diffusers import UNet2DModel

    unet = UNet2DModel(**DIFFUSERS_UNET)
    unet.load_state_dict(torch.load(folder / "ema_unet.pt", weights_only=True))
    return diffusers_sample(unet, n, seed, sampler, steps)


def phase_score(out: Path) -> None:
    """Held-out scores of every finished main job: DPM-Solver++ 10 on 5 sets, DDIM-50 on 2, closer-than-real."""
    results = read_json(out / "results.json", {})
    test = to_uint8(load_data("fashion-mnist:test").x)
    train = to_uint8(data_parts()[0].x)
    features = FashionFeatures()
    for folder in sorted((out / "jobs").glob(f"*-{MAIN_IMAGES // 1000}k")):
        target = folder / "scores.json"
        if not (folder / "done.json").is_file() or target.is_file():
            continue
        print(f"scoring {folder.name}", flush=True)
        scores = {"dpm++10": [], "ddim50": []}
        for k in range(SCORE_SETS):
            s = _samples_of(folder, SCORE_NUM, 1000 + k, "dpm++", 10)
            metrics = ("fid", "kid", "memorization") if k == 0 else ("fid", "kid")
            scores["dpm++10"].append(evaluate_samples(s, test, metrics=metrics, features=features, train_images=train))
            if k == 0:
                save_grid(s[:100], folder / "grid_dpm++10.png", nrow=10, scale=2)
        for k in range(DDIM_SETS):
            s = _samples_of(folder, SCORE_NUM, 1000 + k, "ddim", 50)
            scores["ddim50"].append(evaluate_samples(s, test, metrics=("fid", "kid"), features=features))
        write_json(target, scores)
        results.setdefault("scores", {})[folder.name] = scores
        write_json(out / "results.json", results)


def phase_status(out: Path) -> None:
    for folder in sorted((out / "jobs").glob("*")):
        state = "done" if (folder / "done.json").is_file() else "partial"
        cpu = read_json(folder / "cpu.json", {"cpu_s": 0})["cpu_s"]
        print(f"{folder.name:40s} {state:8s} {cpu / 60:7.1f} CPU-min")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=("real", "proxy", "main", "score", "status"))
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    (args.out / "jobs").mkdir(parents=True, exist_ok=True)
    {"real": phase_real, "proxy": phase_proxy, "main": phase_main, "score": phase_score, "status": phase_status}[
        args.phase
    ](args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
