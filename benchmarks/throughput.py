"""Training throughput: ddkit's UNet against diffusers' UNet2DModel, DDPM CIFAR-10 configuration.

Both networks (35.7M parameters, 32×32×3) train side by side in one process on the same batches
with the same optimizer (AdamW), loss (L_simple: MSE to ε, t uniform over 0..999) and precision.
After warm-up iterations the timed iterations alternate between the two (the order flips every
iteration), so machine noise hits both equally. Printed: parameters, images/s of each (batch /
median step time, robust to a stalled step on a shared machine; the mean-based figure beside it),
the ratio ddkit / diffusers, and each one's achieved FLOP/s as a fraction of the machine's float32
matmul rate (the best timing of a large torch.matmul, taken before and after the steps). A
training step's FLOPs are counted by torch.utils.flop_counter.FlopCounterMode (matmuls,
convolutions and attention; about 37.5 GFLOP per image for forward + backward). On CPUs where
convolutions run faster than torch.matmul (e.g. MKL's sgemm on AMD), the fraction can pass 100%.

    python benchmarks/throughput.py                       # CPU: batch 8, 2 + 20 steps each, 1-3 min
    python benchmarks/throughput.py --device cuda --precision bf16 --json out.json
    python benchmarks/throughput.py --compare precision --precision bf16            # ddkit fp32 vs bf16
    python benchmarks/throughput.py --compare precision --precision bf16 --model digits

`--compare precision` times ddkit's UNet in float32 against the same network (same initial
weights) under `--precision` autocast, interleaved the same way; `--model digits` is the default
digits network (32 channels, 8×8×1, batch 256), for which diffusers has no counterpart here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _diffusers_ref import cifar10_unet2d  # noqa: E402
from ddkit import Schedule, diffusion_loss  # noqa: E402
from ddkit.nn import UNet  # noqa: E402

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# the cores this process may run on
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--compare",
        choices=("diffusers", "precision"),
        default="diffusers",
        help="diffusers (default): ddkit vs diffusers at --precision; precision: ddkit fp32 vs --precision",
    )
    p.add_argument(
        "--model",
        choices=("cifar10", "digits"),
        default="cifar10",
        help="cifar10 (default): DDPM's 35.7M UNet; digits: ddkit's default digits UNet (--compare precision)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: 8 on cpu, 128 on cuda)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per model (default: 20 on cpu, 30 on cuda)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per model first (default: 2 on cpu, 10 on cuda)"
    )
    p.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="fp32",
        help="fp32 (default); bf16 or fp16 run under torch.autocast (fp16 on cuda only, with a GradScaler)",
    )
    p.add_argument(
        "--dropout", type=float, default=0.1, help="dropout of both networks (DDPM's CIFAR-10 value, default 0.1)"
    )
    p.add_argument("--threads", type=int, default=CORES, help=f"torch CPU threads (default: all {CORES} cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    args.batch_size = args.batch_size or (256 if args.model == "digits" else 128 if cuda else 8)
    if args.model == "digits" and args.compare == "diffusers":
        p.error("--model digits needs --compare precision (diffusers' counterpart is the CIFAR-10 network)")
    if args.compare == "precision" and args.precision == "fp32":
        p.error("--compare precision needs --precision bf16 or fp16 (compared with fp32)")
    args.iters = args.iters or (30 if cuda else 20)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 2)
    if args.batch_size < 1 or args.iters < 1 or args.warmup < 0:
        p.error("--batch-size and --iters must be >= 1 and --warmup >= 0")
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.precision == "fp16" and not cuda:
        p.error("--precision fp16 needs --device cuda (use bf16 on the CPU)")
    return args


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_flops_per_s(device: str, dtype: torch.dtype = torch.float32, reps: int | None = None) -> float:
    """The machine's dense matmul rate: best of `reps` timings of an n×n @ n×n product (2n³ FLOP)."""
    n = 8192 if device == "cuda" else 4096
    reps = reps or (10 if device == "cuda" else 3)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=g)
    torch.matmul(a, b)
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode knows the CUDA attention kernels; the CPU's fused kernel is counted the same way.
_CUSTOM_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}


class Contender:
    """One network with its optimizer, training on L_simple under the chosen precision."""

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        call,
        args: argparse.Namespace,
        schedule: Schedule,
        precision: str | None = None,
    ):
        self.name, self.model, self.call, self.args, self.schedule = name, model, call, args, schedule
        self.precision = precision or args.precision
        self.model.to(args.device).train()
        self.params = sum(p.numel() for p in model.parameters())
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.times: list[float] = []

    def _loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        dtype = PRECISIONS[self.precision]

        def net(x_t: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
            return self.call(self.model, x_t, tt).float()

        with torch.autocast(self.args.device, dtype=dtype, enabled=dtype is not None):
            return diffusion_loss(net, self.schedule, x0, t=t, noise=noise)

    def step(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> float:
        """One optimizer step; returns its wall-clock seconds (device synchronised)."""
        _sync(self.args.device)
        t0 = time.perf_counter()
        loss = self._loss(x0, t, noise)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            self.opt.step()
        _sync(self.args.device)
        return time.perf_counter() - t0

    def flops_per_image(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> float:
        """FLOPs of forward + backward for one image (counted on a batch of 1; no optimizer step)."""
        counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)
        with counter:
            self._loss(x0[:1], t[:1], noise[:1]).backward()
        self.model.zero_grad(set_to_none=True)
        return float(counter.get_total_flops())


def make_batch(args: argparse.Namespace, gen: torch.Generator):
    """x0: [B, C, S, S] uniform in [-1, 1], t: [B] uniform in 0..999, noise like x0 (3×32×32; digits 1×8×8)."""
    b, shape = args.batch_size, ((1, 8, 8) if args.model == "digits" else (3, 32, 32))
    x0 = torch.rand(b, *shape, generator=gen) * 2 - 1
    t = torch.randint(0, 1000, (b,), generator=gen)
    noise = torch.randn(b, *shape, generator=gen)
    return x0.to(args.device), t.to(args.device), noise.to(args.device)


def make_contenders(args: argparse.Namespace, schedule: Schedule) -> list[Contender]:
    """[ddkit, diffusers] at --precision, or [ddkit fp32, ddkit --precision] (the same initial weights)."""
    if args.model == "digits":  # ddkit train's default network for the 8×8 digits
        net = UNet(
            image_size=8,
            in_channels=1,
            base_channels=32,
            channel_mult=(1, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(4,),
            dropout=0.0,
        )
    else:
        net = UNet(
            image_size=32,
            in_channels=3,
            base_channels=128,
            channel_mult=(1, 2, 2, 2),
            num_res_blocks=2,
            attn_resolutions=(16,),
            dropout=args.dropout,
        )
    call = lambda m, x, t: m(x, t)  # noqa: E731
    if args.compare == "precision":
        return [
            Contender("fp32", net, call, args, schedule, "fp32"),
            Contender(args.precision, copy.deepcopy(net), call, args, schedule),
        ]
    return [
        Contender("ddkit", net, call, args, schedule),
        Contender("diffusers", cifar10_unet2d(dropout=args.dropout), lambda m, x, t: m(x, t).sample, args, schedule),
    ]


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    schedule = Schedule.linear(1000)
    contenders = make_contenders(args, schedule)
    gen = torch.Generator().manual_seed(args.seed)
    print(
        f"model {args.model}, compare {args.compare}, device {args.device}, precision {args.precision}, batch {args.batch_size}, "
        f"warm-up {args.warmup}, timed iters {args.iters}, threads {torch.get_num_threads()}"
    )
    flops = {c.name: c.flops_per_image(*make_batch(args, gen)) for c in contenders}
    peak = matmul_flops_per_s(args.device)
    for i in range(args.warmup + args.iters):
        batch = make_batch(args, gen)
        order = contenders if i % 2 == 0 else contenders[::-1]
        step_s = {c.name: c.step(*batch) for c in order}
        if i >= args.warmup:
            for c in contenders:
                c.times.append(step_s[c.name])
        tag = " (warm-up)" if i < args.warmup else ""
        print(
            f"  iter {i + 1}/{args.warmup + args.iters}{tag}: "
            + ", ".join(f"{c.name} {step_s[c.name]:.3f} s" for c in order),
            flush=True,
        )
    peak = max(peak, matmul_flops_per_s(args.device))  # best of before and after: noise only slows
    low = PRECISIONS[args.precision]
    peak_low = matmul_flops_per_s(args.device, low) if low is not None else None
    results = {
        "device": args.device,
        "device_name": (
            torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
        ),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "iters": args.iters,
        "warmup": args.warmup,
        "dropout": args.dropout,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_fp32_flops_per_s": peak,
        "matmul_low_precision_flops_per_s": peak_low,
        "models": {},
    }
    for c in contenders:
        ips = args.batch_size / statistics.median(c.times)
        results["models"][c.name] = {
            "params": c.params,
            "images_per_s": ips,
            "images_per_s_mean": args.batch_size * len(c.times) / sum(c.times),
            "step_times_s": c.times,
            "gflop_per_image": flops[c.name] / 1e9,
            "fraction_of_matmul_peak": ips * flops[c.name] / peak,
            "fraction_of_low_precision_matmul_peak": None if peak_low is None else ips * flops[c.name] / peak_low,
        }
    m, (a, b) = results["models"], [c.name for c in contenders]
    if args.compare == "precision":  # how much faster the low precision is than fp32
        a, b = b, a
    results["ratio_name"] = f"{a} / {b}"
    results["ratio"] = m[a]["images_per_s"] / m[b]["images_per_s"]
    results["ratio_paired_median"] = statistics.median(
        tb / ta for ta, tb in zip(m[a]["step_times_s"], m[b]["step_times_s"])
    )
    if args.compare == "diffusers":
        results["ratio_ddkit_over_diffusers"] = results["ratio"]
    return results


def report(results: dict) -> None:
    print(
        f"\nfloat32 matmul rate: {results['matmul_fp32_flops_per_s'] / 1e9:,.1f} GFLOP/s "
        f"({results['device']}, {results['device_name']}, {results['threads']} threads)"
    )
    low = results["matmul_low_precision_flops_per_s"]
    if low is not None:
        print(f"{results['precision']} matmul rate: {low / 1e9:,.1f} GFLOP/s")
    extra = f" {'of ' + results['precision'] + ' rate':>15}" if low is not None else ""
    print(f"{'model':<10} {'params':>12} {'GFLOP/img':>10} {'images/s':>10} {'(mean)':>8} {'of fp32 rate':>13}{extra}")
    for name, r in results["models"].items():
        extra = f" {100 * r['fraction_of_low_precision_matmul_peak']:>14.1f}%" if low is not None else ""
        print(
            f"{name:<10} {r['params']:>12,} {r['gflop_per_image']:>10.2f} {r['images_per_s']:>10.2f} "
            f"{r['images_per_s_mean']:>8.2f} {100 * r['fraction_of_matmul_peak']:>12.1f}%{extra}"
        )
    print(
        f"ratio {results['ratio_name']}, images/s: {results['ratio']:.3f} "
        f"(median of per-iteration paired ratios: {results['ratio_paired_median']:.3f})"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    results = run(args)
    report(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
