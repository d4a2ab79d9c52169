"""``ddkit distill RUN --method ect --out STUDENT``: parses the options of
:func:`ddkit.training.distill.distill` (:class:`~ddkit.training.distill.DistillOptions`), which makes
every decision: tune a one- and two-step consistency student from a trained run."""

from __future__ import annotations

import os

from ..training.distill import DistillOptions
from .common import add_options, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="tune a 1-2 step consistency student from a trained run (ECT, or consistency distillation)",
        description=(
            "Easy Consistency Tuning (Geng et al. 2024), or with --method cd consistency distillation (Song et al. "
            "2023) on ECT's schedule: the student starts from RUN's EMA weights and is tuned by the trainer (resume, "
            "EMA, torchrun) into a run folder of its own; ddkit sample STUDENT --steps 1|2 samples it. Its "
            "config.json names the method, the teacher and the SHA-256 of the teacher's weights."
        ),
    )
    p.add_argument("run", help="the teacher: a run folder written by ddkit train")
    p.set_defaults(options=add_options(p, DistillOptions))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from ..training.distill import distill

    out = distill(args.run, progress=False if args.no_progress else None, **given(args, args.options))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"distilled {args.run} into {out} (ddkit sample {out} --steps 1|2)")
    return 0
