"""``ddkit train``: train a diffusion model into a run folder (one process or under torchrun)."""

from __future__ import annotations

import datetime
import math
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import torch

from ..config import DEVICES, LOGGERS, PRECISIONS, DataConfig, DiffusionConfig, RunConfig, TrainConfig
from ..losses import WEIGHTINGS
from ..nn import MLPConfig, UNetConfig
from ..parameterization import PREDICTIONS
from ..schedule import SCHEDULES
from .common import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a diffusion model", description=(
        "Train a DDPM (ε-prediction, L_simple) on the built-in digits, a folder of images or 2-D toy data. "
        "Writes RUN/config.json, checkpoints, log.jsonl, sample grids and loss.png. "
        "Multi-process: torchrun --nproc_per_node=2 -m ddkit train ..."))
    d = TrainConfig()
    p.add_argument("--data", default=None, help="digits (default), toy:gmm|moons|swissroll|circles, or a folder of images")
    p.add_argument("--out", default="runs/digits", help="run folder (default: %(default)s)")
    p.add_argument("--image-size", type=int, help="image folders: resize and centre-crop to this size (default 32; digits: 8)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image folders: 1 (grey) or 3 (RGB, default)")
    p.add_argument("--holdout", type=float, default=None, metavar="FRACTION",
                   help="image folders: hold this fraction of the images out (a fixed split drawn with "
                        "--holdout-seed, recorded in config.json); never trained on, the default reference "
                        "of ddkit eval (default 0; the digits have digits:train/digits:test instead)")
    p.add_argument("--holdout-seed", type=int, default=None, help="seed of the --holdout split (default 0)")
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
    p.add_argument("--prediction", choices=PREDICTIONS, default=None,
                   help="what the network predicts and the loss targets: eps (default), x0 or v = √ᾱ·ε - √(1-ᾱ)·x0")
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
    p.add_argument("--precision", choices=PRECISIONS, help="auto (default: bf16 where the hardware has it and it "
                   "measurably helps, else fp32; the log says which), fp32, bf16, or fp16 (cuda, with grad scaling)")
    p.add_argument("--log-to", choices=LOGGERS, help="also log loss, lr, images/s, sample grids and metrics to "
                   "TensorBoard event files in RUN/tensorboard (needs pip install ddkit[tensorboard]); default none")
    p.add_argument("--keep-checkpoints", type=int, metavar="K",
                   help=f"keep the newest K checkpoints (default {d.keep_checkpoints})")
    p.add_argument("--keep-step", dest="keep_steps", type=int, action="append", metavar="N",
                   help="never prune the checkpoint of step N (repeatable; e.g. an early one to guide with: "
                        "ddkit sample RUN --guide-with RUN/checkpoints/step-N)")
    p.add_argument("--skip-nonfinite", type=int, metavar="K", help="skip up to K batches whose loss is NaN/inf "
                   "(logged) instead of stopping at the first (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out, or "
                   "start there from scratch when it has none; may extend --steps/--minutes, refuses options that "
                   "contradict its config.json (automatic under torchrun after a restart)")
    p.add_argument("--dist-timeout", type=float, default=1800.0, metavar="SECONDS",
                   help="under torchrun: how long a process waits for the others to join the group and in each "
                        "collective before it fails, so that torchrun can restart the group (default 1800)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")



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
    from ..train import load_run_data

    train_fields = [f.name for f in fields(TrainConfig)]
    given = _given(args, train_fields)
    if args.minutes is not None and args.steps is None:
        given["steps"] = None
    if args.resume and (Path(args.out) / "config.json").exists():
        return _resume_config(args, given), None
    if args.model_channels is not None and not 1 <= args.model_channels <= 4096:
        raise UsageError(f"--model-channels must be in [1, 4096], got {args.model_channels}")
    train_cfg = TrainConfig(**given)
    data_cfg = DataConfig(source=args.data or "digits", image_size=args.image_size, channels=args.channels,
                          **_given(args, ["holdout", "holdout_seed"]))
    diff_cfg = DiffusionConfig(**_given(args, ["schedule", "num_timesteps", "prediction"]))
    data = load_run_data(data_cfg, train_cfg.seed)
    num_classes = data.num_classes if train_cfg.class_cond else None
    model_cfg = model_config_for(data, args.model_channels, args.dropout, num_classes)
    return RunConfig(model=model_cfg, diffusion=diff_cfg, data=data_cfg, train=train_cfg), data


# what --resume may change: the budget and bookkeeping, nothing that changes the mathematics
# (precision and device change the arithmetic but not the run's definition, so they may change too)
RESUME_MAY_CHANGE = ("steps", "minutes", "device", "precision", "ckpt_every", "sample_every", "log_every",
                     "keep_checkpoints", "skip_nonfinite", "keep_steps", "log_to")


def _resume_config(args, given: dict) -> RunConfig:
    """The saved config with the new budget; a ValueError naming every given option that
    contradicts RUN/config.json (architecture, data, schedule, optimiser, seed…)."""
    saved = RunConfig.load(Path(args.out) / "config.json")
    m = saved.model
    pairs = [(k, v, getattr(saved.train, k)) for k, v in given.items() if k not in RESUME_MAY_CHANGE]
    pairs += [(k, v, getattr(saved.diffusion, k, None))
              for k, v in _given(args, [f.name for f in fields(DiffusionConfig)]).items()]
    pairs += [(k, v, getattr(saved.data, k))
              for k, v in _given(args, ["image_size", "channels", "holdout", "holdout_seed"]).items()] + \
             [("data", v, saved.data.source) for v in [args.data] if v is not None]
    pairs += [("model_channels", v, getattr(m, "base_channels", getattr(m, "hidden", None)))
              for v in [args.model_channels] if v is not None]
    pairs += [("dropout", v, getattr(m, "dropout", None)) for v in [args.dropout] if v is not None]
    differ = [f"--{k.replace('_', '-')} {v} (the run has {old})" for k, v, old in pairs
              if (tuple(v) if isinstance(v, list) else v) != old]
    if differ:
        raise UsageError(f"--resume: options contradict {Path(args.out) / 'config.json'}: {'; '.join(differ)}; "
                         "drop them (only --steps, --minutes and bookkeeping options may change)")
    budget = {k: given[k] for k in RESUME_MAY_CHANGE if k in given}
    return replace(saved, train=replace(saved.train, **budget))


def _init_distributed(device: str, timeout_s: float = 1800.0):
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; start the process group (gloo on CPU, nccl on GPU)
    with ``timeout_s`` for joining and for every collective."""
    from ..train import DistContext

    world = int(os.environ.get("WORLD_SIZE", "1"))
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if world == 1:
        return DistContext(restart_count=restarts), device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(rank=dist.get_rank(), world_size=world, restart_count=restarts), device


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


def run(args) -> int:
    from ..train import train

    if not (math.isfinite(args.dist_timeout) and args.dist_timeout > 0):
        raise UsageError(f"--dist-timeout must be a positive number of seconds, got {args.dist_timeout}")
    dist, device = _init_distributed(args.device or "cpu", args.dist_timeout)
    try:
        # torchrun --max-restarts: a restarted group continues the newest checkpoint by itself
        args.resume = args.resume or dist.restart_count > 0
        config, data = _run_config_from_args(args)
        if data is not None and args.batch_size is None:
            config = _fit_default_batch(config, len(data.x), dist)
        if dist.world_size > 1:
            if config.train.batch_size % dist.world_size:
                raise UsageError(f"--batch-size {config.train.batch_size} must be divisible by the {dist.world_size} processes")
            config = replace(config, train=replace(config.train, device=device.split(":")[0]))
        try:
            out = train(config, args.out, resume=args.resume, dist=dist,
                        progress=False if args.no_progress else None, data=data)
        except RuntimeError as e:  # a peer died (torchrun restarts the group, which resumes)
            if dist.world_size == 1:
                raise
            raise OSError(f"rank {dist.rank}: another process of the group failed: {str(e)[:300]}") from e
        if dist.is_main:
            print(f"trained {out} (samples in {out / 'samples'}, log in {out / 'log.jsonl'})")
    finally:
        if dist.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()
    return 0


