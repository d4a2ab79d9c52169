"""``ddkit train-classifier``: train a noise-conditional classifier p_φ(y | x_t, t) for classifier
guidance (``ddkit sample RUN --classifier CLS_RUN``), with the same trainer as ``ddkit train``
(EMA, checkpoints, ``--resume``, progress bar, torchrun)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from ..config import DEVICES, PRECISIONS, DataConfig, DiffusionConfig, RunConfig, TrainConfig
from ..schedule import SCHEDULES
from .common import UsageError

# defaults measured on the digits (README, "Guidance"): the classifier is the UNet's encoder half
# with one residual block per level, trained for 600 steps of batch 256 at lr 1e-3
DEFAULTS = dict(steps=600, lr=1e-3, warmup=50, ckpt_every=200, sample_every=200)
HELDOUT_FRACTION = 0.1


def add_parser(sub) -> None:
    p = sub.add_parser("train-classifier", help="train a noise-conditional classifier for classifier guidance",
                       description=(
        "Train p(y | x_t, t): the UNet's encoder half (down path and middle block, with the time embedding) "
        "and a pooled linear head, by cross-entropy on q_sample'd images at t uniform over the T steps. "
        "Writes a run folder (config.json with the schedule, image size and channels; checkpoints; log.jsonl "
        "with the held-out accuracy in four bands of t). Held out: digits:test when --data is digits:train, "
        "else a fixed 10%% slice of --data. Use it with: ddkit sample RUN --classifier CLS_RUN --classifier-scale S."))
    p.add_argument("--data", default=None, help="labelled data: digits:train (default), digits, or a folder "
                   "of images in class sub-folders")
    p.add_argument("--out", default="runs/classifier", help="run folder (default %(default)s)")
    p.add_argument("--like", metavar="RUN", default=None, help="take the schedule (and T) from this "
                   "diffusion run, the one the classifier will guide")
    p.add_argument("--image-size", type=int, help="image folders: resize and centre-crop to this size")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image folders: 1 (grey) or 3 (RGB)")
    p.add_argument("--schedule", choices=SCHEDULES, default=None, help="noise schedule (default cosine; must "
                   "match the diffusion run it guides)")
    p.add_argument("--num-timesteps", type=int, default=None, help="T (default 1000)")
    p.add_argument("--steps", type=int, help=f"optimizer steps (default {DEFAULTS['steps']} when --minutes is not given)")
    p.add_argument("--minutes", type=float, help="wall-clock budget; with --steps, whichever ends first")
    p.add_argument("--batch-size", type=int, help="global batch size (default 256, or the data set's size if smaller)")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--warmup", type=int, help=f"linear warm-up steps (default {DEFAULTS['warmup']})")
    p.add_argument("--ema-decay", type=float, help="EMA decay (default 0.999)")
    p.add_argument("--model-channels", type=int, default=32, help="base channels of the trunk (default %(default)s)")
    p.add_argument("--num-res-blocks", type=int, default=1, help="residual blocks per level (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout in the residual blocks (default %(default)s)")
    p.add_argument("--ckpt-every", type=int, help=f"checkpoint every N steps (default {DEFAULTS['ckpt_every']})")
    p.add_argument("--eval-every", type=int, help="held-out accuracy in log.jsonl every N steps "
                   f"(default {DEFAULTS['sample_every']})")
    p.add_argument("--log-every", type=int, help="log.jsonl loss line every N steps (default 25)")
    p.add_argument("--keep-checkpoints", type=int, help="keep the newest K checkpoints (default 2)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (default), bf16, or fp16 (cuda)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _train_config(args) -> TrainConfig:
    given = {k: v for k, v in dict(
        steps=args.steps, minutes=args.minutes, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
        ema_decay=args.ema_decay, ckpt_every=args.ckpt_every, sample_every=args.eval_every,
        log_every=args.log_every, keep_checkpoints=args.keep_checkpoints, seed=args.seed, device=args.device,
        precision=args.precision).items() if v is not None}
    if args.minutes is not None and args.steps is None:
        given["steps"] = None
    return TrainConfig(**{**DEFAULTS, **given})


def _new_config(args, data) -> RunConfig:
    from ..nn import ClassifierConfig
    from .train import model_config_for

    if args.like is not None:
        like = RunConfig.load(Path(args.like) / "config.json")
        diffusion = like.diffusion
        if args.schedule is not None or args.num_timesteps is not None:
            raise UsageError("--like takes the schedule from the run; drop --schedule/--num-timesteps")
    else:
        diffusion = DiffusionConfig(**{k: v for k, v in (("schedule", args.schedule),
                                                         ("num_timesteps", args.num_timesteps)) if v is not None})
    trunk = model_config_for(data, args.model_channels, args.dropout, None)
    model = ClassifierConfig(image_size=trunk.image_size, in_channels=trunk.in_channels,
                             num_classes=data.num_classes, base_channels=trunk.base_channels,
                             channel_mult=trunk.channel_mult, num_res_blocks=args.num_res_blocks,
                             attn_resolutions=trunk.attn_resolutions, dropout=args.dropout)
    return RunConfig(model=model, diffusion=diffusion,
                     data=DataConfig(source=args.data or "digits:train", image_size=args.image_size,
                                     channels=args.channels),
                     train=_train_config(args))


def _data_and_heldout(config: RunConfig):
    """(training data, held-out data): digits:test for digits:train, else a fixed slice."""
    from ..classify import split_heldout
    from ..data import load_data
    from ..train import load_run_data

    data = load_run_data(config.data, config.train.seed)
    if data.kind != "image" or data.y is None:
        raise UsageError(f"train-classifier needs labelled images; {config.data.source} has "
                         + ("no labels (use class sub-folders)" if data.kind == "image" else "2-D points"))
    if config.data.source == "digits:train":
        return data, load_data("digits:test", image_size=config.data.image_size, channels=config.data.channels)
    return split_heldout(data, HELDOUT_FRACTION, seed=config.train.seed)


def _config(args) -> tuple[RunConfig, bool]:
    saved = Path(args.out) / "config.json"
    if args.resume and saved.exists():
        config = RunConfig.load(saved)
        if type(config.model).__name__ != "ClassifierConfig":
            raise UsageError(f"--resume: {args.out} is not a classifier run")
        budget = {k: v for k, v in dict(steps=args.steps, minutes=args.minutes, device=args.device,
                                        precision=args.precision, ckpt_every=args.ckpt_every,
                                        sample_every=args.eval_every).items() if v is not None}
        return replace(config, train=replace(config.train, **budget)), True
    from ..data import load_data

    probe = load_data(args.data or "digits:train", image_size=args.image_size, channels=args.channels)
    if probe.y is None:
        raise UsageError(f"train-classifier needs labelled images; {probe.source} has no labels")
    return _new_config(args, probe), False


def run(args) -> int:
    from ..classify import ClassifierObjective, last_accuracy
    from ..train import train
    from .train import _fit_default_batch, _init_distributed

    dist, device = _init_distributed(args.device or "cpu")
    try:
        args.resume = args.resume or dist.restart_count > 0
        config, resuming = _config(args)
        data, heldout = _data_and_heldout(config)
        if not resuming and args.batch_size is None:
            config = _fit_default_batch(config, len(data.x), dist)
        if dist.world_size > 1:
            if config.train.batch_size % dist.world_size:
                raise UsageError(f"--batch-size {config.train.batch_size} must be divisible by the {dist.world_size} processes")
            config = replace(config, train=replace(config.train, device=device.split(":")[0]))
        out = train(config, args.out, resume=args.resume, dist=dist, progress=False if args.no_progress else None,
                    data=data, objective=ClassifierObjective(config, heldout))
        if dist.is_main:
            rec = last_accuracy(out)
            acc = "" if rec is None else " held-out accuracy by t: " + ", ".join(
                f"[{band}] {a:.1%}" for band, a in rec["heldout_accuracy"].items()) + f" ({rec['heldout']})"
            print(f"trained classifier {out};{acc}", file=sys.stdout)
    finally:
        if dist.world_size > 1:
            import torch.distributed as torch_dist

            torch_dist.destroy_process_group()
    return 0
