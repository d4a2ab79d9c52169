"""The command line: ``ddkit train`` and ``ddkit sample``.

Options map onto the config dataclasses (config.py); an option left out keeps the dataclass
default, or, with ``--resume``, the run's saved setting. Bad input ends with one line on stderr,
``ddkit: error: …``, and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from .config import DEVICES, PRECISIONS, DataConfig, DiffusionConfig, RunConfig, TrainConfig
from .generate import SAMPLERS, generate
from .images import save_grid, save_points_plot, to_uint8
from .losses import WEIGHTINGS
from .nn import MLPConfig, UNetConfig
from .schedule import SCHEDULES


class UsageError(ValueError):
    """Bad command-line input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too by default)
        raise UsageError(message)


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model", description=(
        "Train a DDPM (ε-prediction, L_simple) on the built-in digits, a folder of images or 2-D toy data. "
        "Writes RUN/config.json, checkpoints, log.jsonl, sample grids and loss.png. "
        "Multi-process: torchrun --nproc_per_node=2 -m ddkit train ..."))
    d = TrainConfig()
    p.add_argument("--data", default="digits", help="digits (default), toy:gmm|moons|swissroll|circles, or a folder of images")
    p.add_argument("--out", default="runs/digits", help="run folder (default: %(default)s)")
    p.add_argument("--image-size", type=int, help="image folders: resize and centre-crop to this size (default 32; digits: 8)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image folders: 1 (grey) or 3 (RGB, default)")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {d.steps} when --minutes is not given)")
    p.add_argument("--minutes", type=float, help="wall-clock budget; with --steps, whichever ends first")
    p.add_argument("--batch-size", type=int, help=f"global batch size, split over processes (default {d.batch_size}, "
                   "or the data set's size if smaller)")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {d.lr})")
    p.add_argument("--warmup", type=int, help=f"linear warm-up steps (default {d.warmup})")
    p.add_argument("--ema-decay", type=float, help=f"EMA decay (default {d.ema_decay})")
    p.add_argument("--grad-clip", type=float, help=f"gradient norm clip, 0 for none (default {d.grad_clip})")
    p.add_argument("--model-channels", type=int, default=None, help="UNet base channels (default 32) or MLP width (default 256)")
    p.add_argument("--dropout", type=float, default=None, help="UNet dropout (default 0: measured best for short runs on the digits)")
    p.add_argument("--schedule", choices=SCHEDULES, default=None, help="noise schedule: cosine (default, measured better on the digits) or linear (DDPM's)")
    p.add_argument("--num-timesteps", "--timesteps", dest="num_timesteps", type=int, default=None,
                   help="diffusion (training) timesteps T (default 1000)")
    p.add_argument("--loss-weighting", choices=WEIGHTINGS, help="per-timestep loss weight: uniform (L_simple, "
                   "default) or min-snr (min(SNR, γ)/SNR, Hang et al. 2023)")
    p.add_argument("--snr-gamma", type=float, help=f"γ of min-snr weighting (default {d.snr_gamma:g})")
    p.add_argument("--ckpt-every", type=int, help=f"checkpoint every N steps (default {d.ckpt_every})")
    p.add_argument("--sample-every", type=int, help=f"sample grid every N steps (default {d.sample_every})")
    p.add_argument("--log-every", type=int, help=f"log.jsonl line every N steps (default {d.log_every})")
    p.add_argument("--class-cond", action="store_true", default=None, help="condition on labels (with label dropout, for guidance)")
    p.add_argument("--label-dropout", type=float, help=f"probability of the null label (default {d.label_dropout})")
    p.add_argument("--seed", type=int, help=f"random seed (default {d.seed})")
    p.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (default), bf16, or fp16 (cuda, with grad scaling)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _sample_parser(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run", description=(
        "Sample from a run's EMA weights. Writes an NPZ (images: uint8 [N, H, W, C]; labels: int64 [N] "
        "for class-conditional runs; points: float32 [N, D] for 2-D runs) and optionally a grid PNG."))
    p.add_argument("run", help="run folder written by ddkit train")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim", help="ddim (default) or ddpm (all T steps)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default %(default)s)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM η in [0, 1] (default %(default)s)")
    p.add_argument("--num", type=int, default=64, help="number of samples (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--out", default="samples.npz", help="NPZ file to write (default %(default)s)")
    p.add_argument("--grid", default=None, help="also write a PNG grid (or a scatter plot for 2-D data)")
    p.add_argument("--checkpoint", default=None, help="a checkpoint folder or .safetensors file (default: the newest)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (default) or cuda")
    p.add_argument("--progress", action="store_true", help="show a progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddkit", description="Denoising diffusion models: train and sample (DDPM, DDIM).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _train_parser(sub)
    _sample_parser(sub)
    return parser


# ---- train --------------------------------------------------------------------------------------
def model_config_for(data, channels: int | None, dropout: float | None, num_classes: int | None):
    """The default network for a data set: DDPM's UNet sized for the image, or an MLP for points.

    Images of side s ≤ 16 get three levels (8×8 digits: 8, 4, 2 with channel_mult (1, 2, 2)) and
    self-attention at the second; larger images get levels down to 4×4 (at most five; 32×32:
    channel_mult (1, 2, 2, 2)) with self-attention at 16×16, as DDPM does on CIFAR-10.
    """
    if data.kind == "points":
        return MLPConfig(dim=data.x.shape[1], hidden=channels or 256, num_classes=num_classes)
    size, c = data.x.shape[2], data.x.shape[1]
    levels = 3 if size <= 16 else min(5, max(1, size.bit_length() - 2))
    while levels > 1 and size % 2 ** (levels - 1):
        levels -= 1
    mult = (1,) + (2,) * (levels - 1)
    resolutions = [size // 2 ** i for i in range(levels)]
    attn = (16,) if 16 in resolutions and size > 16 else (resolutions[min(1, levels - 1)],)
    return UNetConfig(image_size=size, in_channels=c, base_channels=channels or 32, channel_mult=mult,
                      num_res_blocks=2, attn_resolutions=attn, dropout=0.0 if dropout is None else dropout,
                      num_classes=num_classes)


def _given(args, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _run_config_from_args(args):
    """The run's config and, for a new run, the data set it was sized from (None on resume)."""
    from .train import load_run_data

    train_fields = [f.name for f in fields(TrainConfig)]
    given = _given(args, train_fields)
    if args.minutes is not None and args.steps is None:
        given["steps"] = None
    if args.resume and (Path(args.out) / "config.json").exists():
        saved = RunConfig.load(Path(args.out) / "config.json")
        budget = {k: given[k] for k in ("steps", "minutes", "device", "precision") if k in given}
        return replace(saved, train=replace(saved.train, **budget)), None
    train_cfg = TrainConfig(**given)
    data_cfg = DataConfig(source=args.data, image_size=args.image_size, channels=args.channels)
    diff_cfg = DiffusionConfig(**_given(args, ["schedule", "num_timesteps"]))
    data = load_run_data(data_cfg, train_cfg.seed)
    num_classes = data.num_classes if train_cfg.class_cond else None
    model_cfg = model_config_for(data, args.model_channels, args.dropout, num_classes)
    return RunConfig(model=model_cfg, diffusion=diff_cfg, data=data_cfg, train=train_cfg), data


def _init_distributed(device: str):
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; start the process group (gloo on CPU, nccl on GPU)."""
    from .train import DistContext

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext(), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistContext(rank=dist.get_rank(), world_size=world), device


def _fit_default_batch(config, n: int, dist):
    """The default batch, cut to the data set's size (a multiple of the process count) when the
    data set is smaller; a --batch-size the user gave is kept, and checked by the trainer."""
    cap = max(1, n // dist.world_size) * dist.world_size
    if config.train.batch_size <= cap:
        return config
    if dist.is_main:
        print(f"ddkit: the data set has {n} examples, fewer than the default batch of "
              f"{config.train.batch_size}; training with batches of {cap}", file=sys.stderr)
    return replace(config, train=replace(config.train, batch_size=cap))


def cmd_train(args) -> int:
    from .train import train

    dist, device = _init_distributed(args.device or "cpu")
    try:
        if args.resume and not (Path(args.out) / "config.json").exists():
            raise UsageError(f"--resume: {args.out} is not a run folder (no config.json)")
        config, data = _run_config_from_args(args)
        if data is not None and args.batch_size is None:
            config = _fit_default_batch(config, len(data.x), dist)
        if dist.world_size > 1:
            if config.train.batch_size % dist.world_size:
                raise UsageError(f"--batch-size {config.train.batch_size} must be divisible by the {dist.world_size} processes")
            config = replace(config, train=replace(config.train, device=device.split(":")[0]))
        out = train(config, args.out, resume=args.resume, dist=dist, progress=False if args.no_progress else None,
                    data=data)
        if dist.is_main:
            print(f"trained {out} (samples in {out / 'samples'}, log in {out / 'log.jsonl'})")
    finally:
        if dist.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()
    return 0


# ---- sample -------------------------------------------------------------------------------------
def _atomic_savez(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def cmd_sample(args) -> int:
    from .reporting import preview_labels
    from .runs import load

    if args.num < 1 or args.batch_size < 1:
        raise UsageError("--num and --batch-size must be positive")
    if not 0.0 <= args.eta <= 1.0:
        raise UsageError(f"--eta must be in [0, 1], got {args.eta}")
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    model, schedule, config = load(args.run, checkpoint=args.checkpoint, ema=not args.no_ema, device=args.device)
    if not 1 <= args.steps <= schedule.num_timesteps:
        raise UsageError(f"--steps must be in [1, {schedule.num_timesteps}], got {args.steps}")
    num_classes = getattr(config.model, "num_classes", None)
    labels = preview_labels(args.num, num_classes)
    images = hasattr(config.model, "image_size")
    x = generate(model, schedule, args.num, sampler=args.sampler, steps=args.steps, eta=args.eta,
                 batch_size=args.batch_size, seed=args.seed, labels=labels,
                 clip_x0=(-1.0, 1.0) if images else None, device=args.device, progress=args.progress)
    arrays = {"images": to_uint8(x)} if images else {"points": x.numpy().astype(np.float32)}
    if labels is not None:
        arrays["labels"] = labels.numpy().astype(np.int64)
    _atomic_savez(out, **arrays)
    if args.grid:
        if images:
            save_grid(arrays["images"], args.grid, nrow=num_classes if labels is not None else None)
        else:
            save_points_plot(arrays["points"], args.grid, labels=arrays.get("labels"))
    print(f"wrote {args.num} samples to {out}" + (f" and {args.grid}" if args.grid else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return {"train": cmd_train, "sample": cmd_sample}[args.command](args)
    except (ValueError, OSError) as e:  # UsageError, DataError and other bad input
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"ddkit: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ddkit: interrupted", file=sys.stderr)
        return 130
