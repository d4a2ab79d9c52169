"""Sampling throughput: images/s of ddkit's sampling path (``ddkit sample``: generate_batches, with
per-sample start noise and x̂₀ clipping) against diffusers' DDIMPipeline and its DPMSolverMultistep
loop, driving the same network module, in one process, interleaved; and the share of each step
spent outside the network.

Networks: the default digits UNet (1.6M parameters, 8×8×1; --run loads a trained run, else random
weights: speed does not depend on them) and DDPM's CIFAR-10 UNet in ddkit (35.7M, 32×32×3, random
weights). diffusers drives the very same module through a thin adapter (``unet(sample, t).sample``,
the timestep broadcast as UNet2DModel does), so the comparison is of the samplers' code alone.
Precision: fp32, and bf16 with the network under torch.autocast for both libraries
(``ddkit.generate.autocast_network``; the samplers' own arithmetic stays float32 in both).

For each (network, precision, sampler) the two libraries alternate, the order flipping every
repetition; images/s is batch / median time per batch. The per-step overhead: the sampler run
with a network that returns a fixed tensor (its cost ~0) against the network's own forward time.

    python benchmarks/sampling_throughput.py                        # CPU: small batches, 1 thread
    python benchmarks/sampling_throughput.py --device cuda --json tp.json
    python benchmarks/sampling_throughput.py --bf16-quality RUN     # paired FID, fp32 vs bf16 sampling
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DPMSolverMultistepScheduler

import ddkit
from ddkit.generate import autocast_network, generate_batches
from ddkit.nn import UNetConfig, build_model
from ddkit.nn.defaults import default_model_config

SAMPLERS = {"ddim": ("ddim", "DDIMPipeline"), "dpm++": ("dpm++", "DPMSolverMultistep loop")}


class DiffusersView(torch.nn.Module):
    """A ddkit ε-network ``net(x, t, y)`` seen as diffusers' UNet2DModel: ``forward(sample,
    timestep).sample``, the timestep broadcast to the batch as UNet2DModel does it."""

    def __init__(self, net: torch.nn.Module, image_size: int, channels: int):
        super().__init__()
        self.net = net
        self.config = SimpleNamespace(sample_size=image_size, in_channels=channels, out_channels=channels)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, sample: torch.Tensor, timestep, return_dict: bool = True):
        t = timestep if torch.is_tensor(timestep) else torch.tensor([timestep], dtype=torch.long)
        t = t[None] if t.ndim == 0 else t
        t = t.to(sample.device).expand(sample.shape[0])
        return SimpleNamespace(sample=self.net(sample, t.long() if not t.is_floating_point() else t))


def networks(run: str | None, which: list[str]):
    """(name, module, image_size, channels, schedule, default batch) for the networks asked for."""
    out = []
    if "digits" in which:
        if run:
            model, schedule, _ = ddkit.load(run)
        else:
            torch.manual_seed(0)
            model, schedule = build_model(default_model_config("image", (1, 8, 8))).eval(), ddkit.Schedule.cosine()
        out.append(("digits UNet", model, 8, 1, schedule, 64))
    if "cifar" in which:
        torch.manual_seed(0)
        cfg = UNetConfig(
            image_size=32, in_channels=3, base_channels=128, channel_mult=(1, 2, 2, 2), attn_resolutions=(16,)
        )
        out.append(("CIFAR-10 UNet", build_model(cfg).eval(), 32, 3, ddkit.Schedule.linear(), 2))
    return out


def ddkit_batch(model, schedule, sampler: str, steps: int, batch: int, device: str):
    def run():
        kw = {"steps": steps} | ({"spacing": "leading"} if sampler == "ddim" else {})
        for _, x in generate_batches(
            model, schedule, batch, sampler=sampler, batch_size=batch, seed=0, clip_x0=(-1.0, 1.0), device=device, **kw
        ):
            return x

    return run


def diffusers_batch(view, schedule, sampler: str, steps: int, batch: int, device: str):
    betas = schedule.betas.float().numpy()
    if sampler == "ddim":
        pipe = DDIMPipeline(
            unet=view, scheduler=DDIMScheduler(num_train_timesteps=schedule.num_timesteps, trained_betas=betas)
        )
        pipe.set_progress_bar_config(disable=True)

        def run():
            return pipe(
                batch_size=batch,
                num_inference_steps=steps,
                generator=torch.Generator(device).manual_seed(0),
                output_type="np",
            ).images

        return run
    sched = DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.num_timesteps, trained_betas=betas, algorithm_type="dpmsolver++"
    )

    @torch.no_grad()
    def run():
        sched.set_timesteps(steps, device=device)
        x = torch.randn(
            (batch, view.config.in_channels, view.config.sample_size, view.config.sample_size),
            generator=torch.Generator(device).manual_seed(0),
            device=device,
        )
        x = x * sched.init_noise_sigma
        for t in sched.timesteps:
            x = sched.step(view(sched.scale_model_input(x, t), t).sample, t, x).prev_sample
        return (x / 2 + 0.5).clamp(0, 1).cpu().permute(0, 2, 3, 1).numpy()

    return run


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def compare(name, model, size, channels, schedule, batch, precision, sampler, steps, reps, device) -> dict:
    net = autocast_network(model.to(device), precision, device)
    view = DiffusersView(net, size, channels)
    runs = {
        "ddkit": ddkit_batch(net, schedule, SAMPLERS[sampler][0], steps, batch, device),
        "diffusers": diffusers_batch(view, schedule, sampler, steps, batch, device),
    }
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        times = {k: [] for k in runs}
        for r in range(reps):
            for k in sorted(runs, reverse=bool(r % 2)):
                times[k].append(timed(runs[k], device))
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(b / a for a, b in zip(times["ddkit"], times["diffusers"]))
    row = {
        "network": name,
        "precision": precision,
        "sampler": sampler,
        "diffusers": SAMPLERS[sampler][1],
        "steps": steps,
        "batch": batch,
        "ddkit_images_s": batch / med["ddkit"],
        "diffusers_images_s": batch / med["diffusers"],
        "ratio": med["diffusers"] / med["ddkit"],
        "paired_ratio": paired,
        "times": times,
    }
    print(
        f"{name:14s} {precision:5s} {sampler:6s} batch {batch:4d} steps {steps:3d}: ddkit {row['ddkit_images_s']:8.2f} "
        f"images/s, diffusers ({SAMPLERS[sampler][1]}) {row['diffusers_images_s']:8.2f}: ratio {row['ratio']:.3f} "
        f"(paired {paired:.3f})",
        flush=True,
    )
    return row


def overhead(name, model, size, channels, schedule, batch, sampler, steps, reps, device) -> dict:
    """Per-step time outside the network: the sampler with a network that costs ~nothing, against
    the network's forward pass at the same batch (fp32)."""
    model = model.to(device)
    x = torch.randn(batch, channels, size, size, device=device)
    t = torch.full((batch,), 500, device=device)
    fixed = torch.randn_like(x) * 0.1

    class Free(torch.nn.Module):
        config = model.config

        def forward(self, x, t, y=None):
            return fixed

    with torch.no_grad():
        model(x, t)
        net_times = [timed(lambda: model(x, t), device) for _ in range(reps)]
        run = ddkit_batch(Free(), schedule, sampler, steps, batch, device)
        run()
        loop_times = [timed(run, device) for _ in range(reps)]
    net_step = statistics.median(net_times)
    loop_step = statistics.median(loop_times) / steps
    row = {
        "network": name,
        "sampler": sampler,
        "batch": batch,
        "network_s_per_step": net_step,
        "outside_s_per_step": loop_step,
        "share": loop_step / (loop_step + net_step),
    }
    print(
        f"{name:14s} {sampler:6s} batch {batch}: network {net_step * 1e3:.2f} ms/step, outside it "
        f"{loop_step * 1e3:.3f} ms/step (start noise, clipping and the step itself; per batch of {steps} steps): "
        f"{100 * row['share']:.2f} % of a step (target <= 1 %)",
        flush=True,
    )
    return row


def bf16_quality(run: str, num: int, sets: int, steps: int, sampler: str) -> dict:
    """FID against digits:test of fp32 and bf16 sampling from the same start noise, per set."""
    from ddkit.data.images import to_uint8
    from ddkit.eval import evaluate_samples

    model, schedule, _ = ddkit.load(run)
    rows = {}
    for precision in ("fp32", "bf16"):
        net = autocast_network(model, precision)
        fids = []
        for r in range(sets):
            x = torch.cat(
                [
                    x
                    for _, x in generate_batches(
                        net,
                        schedule,
                        num,
                        sampler=sampler,
                        steps=steps,
                        seed=1000 * r,
                        batch_size=500,
                        clip_x0=(-1.0, 1.0),
                    )
                ]
            )
            fids.append(evaluate_samples(to_uint8(x), "digits:test", seed=r)["fid"])
        rows[precision] = fids
        print(
            f"{precision}: FID {np.mean(fids):.3f} ± {np.std(fids, ddof=1):.3f} per set {[round(f, 3) for f in fids]}",
            flush=True,
        )
    diff = np.asarray(rows["bf16"]) - np.asarray(rows["fp32"])
    print(f"bf16 − fp32, paired over {sets} sets: {diff.mean():+.3f} ± {diff.std(ddof=1):.3f} FID")
    return {
        "run": run,
        "num": num,
        "sets": sets,
        "steps": steps,
        "sampler": sampler,
        "fids": rows,
        "difference": [float(diff.mean()), float(diff.std(ddof=1))],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--run", default=None, help="a digits run for the digits UNet (default: random weights)")
    p.add_argument("--networks", nargs="+", choices=("digits", "cifar"), default=["digits", "cifar"])
    p.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"])
    p.add_argument("--samplers", nargs="+", choices=tuple(SAMPLERS), default=list(SAMPLERS))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument(
        "--batch", type=int, default=None, help="batch size (default: 64 digits / 2 CIFAR on CPU; 512 / 64 on cuda)"
    )
    p.add_argument("--reps", type=int, default=3, help="timed batches per library")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    p.add_argument(
        "--bf16-quality", metavar="RUN", default=None, help="only: paired FID of fp32 and bf16 sampling of a digits run"
    )
    p.add_argument("--quality-num", type=int, default=1000)
    p.add_argument("--quality-sets", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.bf16_quality:
        result = {
            "bf16_quality": bf16_quality(args.bf16_quality, args.quality_num, args.quality_sets, args.steps, "dpm++")
        }
    else:
        result = {"device": args.device, "threads": args.threads, "rows": [], "overhead": []}
        for name, model, size, channels, schedule, batch in networks(args.run, args.networks):
            if args.batch:
                batch = args.batch
            elif args.device.startswith("cuda"):
                batch = 512 if size == 8 else 64
            for precision in args.precision:
                for sampler in args.samplers:
                    result["rows"].append(
                        compare(
                            name,
                            model,
                            size,
                            channels,
                            schedule,
                            batch,
                            precision,
                            sampler,
                            args.steps,
                            args.reps,
                            args.device,
                        )
                    )
            if size == 32:
                for sampler in args.samplers:
                    result["overhead"].append(
                        overhead(
                            name, model, size, channels, schedule, batch, sampler, args.steps, args.reps, args.device
                        )
                    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
