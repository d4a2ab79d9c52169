"""``ddkit sample``: draw samples from a trained run into an NPZ (and a grid PNG), streamed batch by
batch so that memory does not grow with ``--num``; a ``--num`` whose output would not fit on the
disk is refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.images import save_grid, save_points_plot, to_uint8
from ..data.npz import NpzStream, check_room, npz_bytes
from .common import UsageError
from .sampling import add_sampling_arguments, batches, check_counts, load_model, plan

GRID_MAX = {"images": 1024, "points": 100_000}  # the grid or scatter shows at most the first this many


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
    p.add_argument(
        "--diffusers",
        default=None,
        metavar="PATH",
        help="sample a local diffusers folder (UNet2DModel pipeline or model folder) instead of a run",
    )
    p.add_argument("--out", default="samples.npz", help="NPZ file to write (default %(default)s)")
    p.add_argument(
        "--grid",
        default=None,
        help=f"also write a PNG grid of the first {GRID_MAX['images']} samples (or a scatter plot for 2-D data)",
    )
    add_sampling_arguments(p)


def _check_paths(args) -> Path:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    for path in (out, Path(args.grid) if args.grid else None):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"the folder of {path} does not exist")
    if (args.run is None) == (args.diffusers is None):
        raise UsageError("give a run folder or --diffusers PATH (exactly one)")
    return out


def run(args) -> int:
    check_counts(args)
    out = _check_paths(args)
    model, schedule, config = load_model(args)
    p = plan(args, model, schedule, config)
    key = "images" if p.is_image else "points"
    shape = (args.num, p.shape[1], p.shape[2], p.shape[0]) if p.is_image else (args.num, *p.shape)
    dtype = np.uint8 if p.is_image else np.float32
    arrays = {key: (shape, dtype)} | ({"labels": ((args.num,), np.int64)} if p.labels is not None else {})
    try:
        check_room(out, npz_bytes(arrays), f"--num {args.num} samples")
    except ValueError as e:
        raise UsageError(str(e)) from None
    shown = []
    with NpzStream(out) as npz:
        npz.begin(key, shape, dtype)
        for start, x in batches(args, p):
            rows = to_uint8(x) if p.is_image else x.numpy().astype(np.float32)
            npz.write(rows)
            if args.grid and start < GRID_MAX[key]:
                shown.append(rows[: GRID_MAX[key] - start])
        if p.labels is not None:  # made again batch by batch: memory stays that of a batch
            npz.begin("labels", (args.num,), np.int64)
            for start in range(0, args.num, args.batch_size):
                npz.write(p.labels(start, min(start + args.batch_size, args.num)).numpy())
    if args.grid:
        shown = np.concatenate(shown)
        labels = None if p.labels is None else p.labels(0, len(shown)).numpy()
        if p.is_image:
            num_classes = getattr(config.model, "num_classes", None)
            save_grid(shown, args.grid, nrow=num_classes if labels is not None else None)
        else:
            save_points_plot(shown, args.grid, labels=labels)
    print(f"wrote {args.num} samples to {out}" + (f" and {args.grid}" if args.grid else ""))
    return 0
