"""``ddkit train``: train a diffusion model into a run folder (one process or under torchrun).

The options are the option fields of the config dataclasses
(:data:`ddkit.training.api.TRAIN_SECTIONS`); this module parses them and calls :func:`ddkit.train`,
which makes every decision."""

from __future__ import annotations

import os

from ..training.api import OPTIONS_BY_NAME, TRAIN_SECTIONS
from .common import add_options, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a diffusion model",
        description=(
            "Train a DDPM (ε-prediction, L_simple) on the built-in digits, a folder of images or 2-D toy data. "
            "Writes RUN/config.json, checkpoints, log.jsonl, sample grids and loss.png. "
            "Multi-process: torchrun --nproc_per_node=2 -m ddkit train ... Python: ddkit.train(...) takes the same "
            "options as keywords."
        ),
    )
    for section, cls in TRAIN_SECTIONS.items():
        add_options(p, cls, none=section != "run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.api import train

    out = train(progress=False if args.no_progress else None, **given(args, OPTIONS_BY_NAME))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks
        print(f"trained {out} (samples in {out / 'samples'}, log in {out / 'log.jsonl'})")
    return 0
