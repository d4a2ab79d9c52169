"""``ddkit distill RUN --method ect --out STUDENT``: tune a one- and two-step consistency student
from a trained run (:func:`ddkit.training.distill.distill`, which makes every decision)."""

from __future__ import annotations

import os

from ..training.api import count_or_fraction
from ..training.config import DEVICES, PRECISIONS
from ..training.distill import DISTILL_DEFAULTS
from ..training.student import METHODS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="tune a 1-2 step consistency student from a trained run (ECT)",
        description=(
            "Easy Consistency Tuning (Geng et al. 2024): the student starts from RUN's EMA weights and is tuned by "
            "the trainer (resume, EMA, torchrun) into a run folder of its own; ddkit sample STUDENT --steps 1|2 "
            "samples it. Its config.json names the teacher and the SHA-256 of the teacher's weights."
        ),
    )
    p.add_argument("run", help="the teacher: a run folder written by ddkit train")
    p.add_argument("--method", choices=METHODS, default="ect", help="the distillation method (default %(default)s)")
    p.add_argument("--out", required=True, help="the student's run folder")
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default {DISTILL_DEFAULTS['steps']})")
    p.add_argument("--minutes", type=float, default=None, help="a wall-clock budget instead of (or with) --steps")
    p.add_argument(
        "--batch-size", type=int, default=None, help=f"global batch (default {DISTILL_DEFAULTS['batch_size']})"
    )
    p.add_argument("--lr", type=float, default=None, help=f"constant learning rate (default {DISTILL_DEFAULTS['lr']})")
    p.add_argument(
        "--val",
        type=count_or_fraction,
        default=None,
        metavar="N|FRACTION",
        help="a validation part of the training data (default: the teacher's): evaluation during tuning, the best "
        "checkpoint, and the choice of the two-step σ",
    )
    p.add_argument(
        "--double-every",
        type=int,
        default=None,
        help="steps between ECT's halvings of t - r (default: a quarter of --steps; 250 with --minutes only)",
    )
    p.add_argument(
        "--checkpoint", default=None, metavar="last|best|PATH", help="which teacher weights (as ddkit sample)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--device", choices=DEVICES, default=None, help="cpu (default) or cuda")
    p.add_argument(
        "--precision",
        choices=tuple(x for x in PRECISIONS if x != "fp16"),
        default=None,
        help="fp32 (default: an ε-network's denoiser at σ = 80 multiplies ε's rounding by 80), bf16, or auto: "
        "bf16 where native and it helps; fp16 is not offered (NaN in ECT)",
    )
    p.add_argument("--resume", action="store_true", help="continue the student in --out (only the budget may change)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.distill import distill

    options = {k: getattr(args, k) for k in ("steps", "minutes", "batch_size", "lr", "val", "double_every", "seed")}
    options |= {k: getattr(args, k) for k in ("device", "precision")}
    out = distill(
        args.run,
        args.out,
        method=args.method,
        resume=args.resume,
        checkpoint=args.checkpoint,
        progress=False if args.no_progress else None,
        **{k: v for k, v in options.items() if v is not None},
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"distilled {args.run} into {out} (ddkit sample {out} --steps 1|2)")
    return 0
