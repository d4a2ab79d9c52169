"""``ddkit train``: train a diffusion model into a run folder (one process or under torchrun).

The options are :data:`ddkit.training.TRAIN_OPTIONS`; this module parses them and calls
:func:`ddkit.train`, which makes every decision."""

from __future__ import annotations

import argparse
import os

from ..training.api import TRAIN_OPTIONS, Option


def add_option(p: argparse.ArgumentParser, option: Option) -> None:
    """One library option as a command-line flag (``batch_size`` → ``--batch-size``)."""
    kwargs = {"dest": option.name, "help": option.help}
    if option.flag:
        kwargs.update(action="store_true", default=None if option.default is None else option.default)
    else:
        kwargs.update(type=option.type, default=option.default)
        if option.repeat:
            kwargs["action"] = "append"
        if option.choices is not None:
            kwargs["choices"] = option.choices
        if option.metavar is not None:
            kwargs["metavar"] = option.metavar
    p.add_argument(option.cli, **kwargs)


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
    for option in TRAIN_OPTIONS:
        add_option(p, option)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.api import train

    options = {o.name: getattr(args, o.name) for o in TRAIN_OPTIONS}
    out = train(progress=False if args.no_progress else None, **options)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks
        print(f"trained {out} (samples in {out / 'samples'}, log in {out / 'log.jsonl'})")
    return 0
