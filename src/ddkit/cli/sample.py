"""``ddkit sample``: parses the options of :func:`ddkit.sample_run`, which draws the samples into an
NPZ (and a grid PNG), streamed batch by batch."""

from __future__ import annotations

from ..tasks.sample import GRID_MAX, SampleOptions, sample_run
from .common import add_options, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="draw samples from a trained run",
        description=(
            "Sample from a run's EMA weights. Writes an NPZ (images: uint8 [N, H, W, C]; labels: int64 [N] "
            "for class-conditional runs; points: float32 [N, D] for 2-D runs), batch by batch, and optionally a "
            f"grid PNG (of the first {GRID_MAX['images']} images) or a scatter plot."
        ),
    )
    p.add_argument("run", nargs="?", default=None, help="run folder written by ddkit train (or give --diffusers)")
    p.add_argument("--out", default="samples.npz", help="NPZ file to write (default %(default)s)")
    p.set_defaults(options=add_options(p, SampleOptions))


def run(args) -> int:
    s = sample_run(args.run, out=args.out, keep=False, **given(args, args.options))
    also = " and ".join(str(path) for path in s.written[1:])
    print(f"wrote {s.num} samples to {args.out}" + (f" and {also}" if also else ""))
    return 0
