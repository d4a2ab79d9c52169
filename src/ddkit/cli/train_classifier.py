"""``ddkit train-classifier``: train a noise-conditional classifier p_φ(y | x_t, t) for classifier
guidance (``ddkit sample RUN --classifier CLS_RUN``), with the same trainer as ``ddkit train``
(EMA, checkpoints, ``--resume``, progress bar, torchrun)."""

from __future__ import annotations

import os
import sys

from ..schedule import SCHEDULES
from ..training.api import CLASSIFIER_DEFAULTS as DEFAULTS
from ..training.config import DEVICES, PRECISIONS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train-classifier",
        help="train a noise-conditional classifier for classifier guidance",
        description=(
            "Train p(y | x_t, t): the UNet's encoder half (down path and middle block, with the time embedding) "
            "and a pooled linear head, by cross-entropy on q_sample'd images at t uniform over the T steps. "
            "Writes a run folder (config.json with the schedule, image size and channels; checkpoints; log.jsonl "
            "with the held-out accuracy in four bands of t). Held out: digits:test when --data is digits:train, "
            "else a fixed 10% slice of --data. Use it with: ddkit sample RUN --classifier CLS_RUN "
            "--classifier-scale S."
        ),
    )
    p.add_argument(
        "--data",
        default=None,
        help="labelled data: digits:train (default), digits, or a folder of images in class sub-folders",
    )
    p.add_argument("--out", default="runs/classifier", help="run folder (default %(default)s)")
    p.add_argument(
        "--like",
        metavar="RUN",
        default=None,
        help="take the schedule (and T) from this diffusion run, the one the classifier will guide",
    )
    p.add_argument("--image-size", type=int, help="image folders: resize and centre-crop to this size")
    p.add_argument("--channels", type=int, choices=(1, 3), help="image folders: 1 (grey) or 3 (RGB)")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None,
        help="noise schedule (default cosine; must match the diffusion run it guides)",
    )
    p.add_argument("--num-timesteps", type=int, default=None, help="T (default 1000)")
    p.add_argument(
        "--steps", type=int, help=f"optimizer steps (default {DEFAULTS['steps']} when --minutes is not given)"
    )
    p.add_argument("--minutes", type=float, help="wall-clock budget; with --steps, whichever ends first")
    p.add_argument("--batch-size", type=int, help="global batch size (default 256, or the data set's size if smaller)")
    p.add_argument("--lr", type=float, help=f"peak AdamW learning rate (default {DEFAULTS['lr']})")
    p.add_argument("--warmup", type=int, help=f"linear warm-up steps (default {DEFAULTS['warmup']})")
    p.add_argument("--ema-decay", type=float, help="EMA decay (default 0.999)")
    p.add_argument("--model-channels", type=int, default=32, help="base channels of the trunk (default %(default)s)")
    p.add_argument("--num-res-blocks", type=int, default=1, help="residual blocks per level (default %(default)s)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout in the residual blocks (default %(default)s)")
    p.add_argument("--ckpt-every", type=int, help=f"checkpoint every N steps (default {DEFAULTS['ckpt_every']})")
    p.add_argument(
        "--eval-every",
        type=int,
        help=f"held-out accuracy in log.jsonl every N steps (default {DEFAULTS['sample_every']})",
    )
    p.add_argument("--log-every", type=int, help="log.jsonl loss line every N steps (default 25)")
    p.add_argument("--keep-checkpoints", type=int, help="keep the newest K checkpoints (default 2)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    p.add_argument("--precision", choices=PRECISIONS, help="fp32 (default), bf16, or fp16 (cuda)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.api import train_classifier
    from ..training.objectives import last_accuracy

    options = dict(
        data=args.data,
        like=args.like,
        image_size=args.image_size,
        channels=args.channels,
        schedule=args.schedule,
        num_timesteps=args.num_timesteps,
        model_channels=args.model_channels,
        num_res_blocks=args.num_res_blocks,
        dropout=args.dropout,
        steps=args.steps,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        ckpt_every=args.ckpt_every,
        sample_every=args.eval_every,
        log_every=args.log_every,
        keep_checkpoints=args.keep_checkpoints,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )
    out = train_classifier(args.out, resume=args.resume, progress=False if args.no_progress else None, **options)
    if int(os.environ.get("RANK", "0")) == 0:
        rec = last_accuracy(out)
        acc = (
            ""
            if rec is None
            else " held-out accuracy by t: "
            + ", ".join(f"[{band}] {a:.1%}" for band, a in rec["heldout_accuracy"].items())
            + f" ({rec['heldout']})"
        )
        print(f"trained classifier {out};{acc}", file=sys.stdout)
    return 0
