"""``ddkit train-classifier``: train a noise-conditional classifier p_φ(y | x_t, t) for classifier
guidance (``ddkit sample RUN --classifier CLS_RUN``), with the same trainer as ``ddkit train``
(EMA, checkpoints, ``--resume``, progress bar, torchrun). The options are read from the config
dataclasses' fields, as ``ddkit train``'s (:data:`ddkit.training.api.CLASSIFIER_SECTIONS`)."""

from __future__ import annotations

import os

from ..training.api import CLASSIFIER_DEFAULTS, CLASSIFIER_HELP, CLASSIFIER_SECTIONS, ClassifierOptions
from .common import add_options, given


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
    names = add_options(p, ClassifierOptions)
    for cls, only in CLASSIFIER_SECTIONS.items():
        names += add_options(p, cls, only=only, none=True, helps=CLASSIFIER_HELP, shown=CLASSIFIER_DEFAULTS)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(options=names)


def run(args) -> int:
    from ..training.api import train_classifier
    from ..training.objectives import last_accuracy

    options = given(args, args.options)
    out = train_classifier(
        options.pop("out"), resume=options.pop("resume"), progress=False if args.no_progress else None, **options
    )
    if int(os.environ.get("RANK", "0")) == 0:
        rec = last_accuracy(out)
        acc = (
            ""
            if rec is None
            else " held-out accuracy by t: "
            + ", ".join(f"[{band}] {a:.1%}" for band, a in rec["heldout_accuracy"].items())
            + f" ({rec['heldout']})"
        )
        print(f"trained classifier {out};{acc}")
    return 0
