"""``ddkit sample``: draw samples from a trained run into an NPZ (and a grid PNG), streamed batch by
batch so that memory does not grow with ``--num``; a ``--num`` whose output would not fit on the
disk is refused before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.images import save_grid, to_uint8
from ..data.npz import NpzStream, check_room, npz_bytes
from ..generate import Trajectory
from ..plots import plot_points
from .common import UsageError, atomic_savez
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
        help=f"also write a PNG grid of the first {GRID_MAX['images']} samples (or a scatter plot for 2-D data); "
        "with --trajectory, the denoising progression instead: one row per recorded sample, x̂₀ after each step "
        "left to right, then the sample (2-D data: the recorded x̂₀ of every step, coloured by step)",
    )
    p.add_argument(
        "--trajectory",
        default=None,
        metavar="FILE.npz",
        help="also save what the sampler predicts at every step for the first --trajectory-num samples: x0 and "
        "x_t float32 [S, n, ...] (S steps, the samples' own layout), t and sigma float64 [S]",
    )
    p.add_argument(
        "--trajectory-num",
        type=int,
        default=8,
        metavar="N",
        help="how many samples --trajectory records (default %(default)s)",
    )
    add_sampling_arguments(p)


def _check_paths(args) -> Path:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    if args.trajectory is not None and Path(args.trajectory).suffix != ".npz":
        raise UsageError(f"--trajectory must name a .npz file, got {args.trajectory}")
    if args.trajectory_num < 1:
        raise UsageError(f"--trajectory-num must be positive, got {args.trajectory_num}")
    for path in (out, Path(args.grid) if args.grid else None, Path(args.trajectory) if args.trajectory else None):
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
    trajectory = Trajectory(min(args.trajectory_num, args.num)) if args.trajectory else None
    with NpzStream(out) as npz:
        npz.begin(key, shape, dtype)
        for start, x in batches(args, p, step_callback=trajectory):
            rows = to_uint8(x) if p.is_image else x.numpy().astype(np.float32)
            npz.write(rows)
            if args.grid and start < GRID_MAX[key]:
                shown.append(rows[: GRID_MAX[key] - start])
        if p.labels is not None:  # made again batch by batch: memory stays that of a batch
            npz.begin("labels", (args.num,), np.int64)
            for start in range(0, args.num, args.batch_size):
                npz.write(p.labels(start, min(start + args.batch_size, args.num)).numpy())
    if trajectory is not None:
        arrays = trajectory.arrays()
        atomic_savez(Path(args.trajectory), **arrays)
        if args.grid:
            _save_progression(arrays, shown, args.grid, p.is_image)
    elif args.grid:
        shown = np.concatenate(shown)
        labels = None if p.labels is None else p.labels(0, len(shown)).numpy()
        if p.is_image:
            num_classes = getattr(config.model, "num_classes", None)
            save_grid(shown, args.grid, nrow=num_classes if labels is not None else None)
        else:
            plot_points(shown, args.grid, labels=labels)
    also = [str(v) for v in (args.grid, args.trajectory) if v]
    print(f"wrote {args.num} samples to {out}" + (f" and {' and '.join(also)}" if also else ""))
    return 0


def _save_progression(arrays: dict, shown: list, path: str, is_image: bool) -> None:
    """The denoising progression of the recorded samples: images, one row per sample (x̂₀ after
    each step, then the sample); 2-D points, the x̂₀ of every step in one scatter, coloured by step."""
    x0 = arrays["x0"]  # [S, n, ...]
    steps, n = x0.shape[:2]
    if is_image:
        per_sample = torch.from_numpy(x0).transpose(0, 1).reshape(n * steps, *x0.shape[2:])
        frames = to_uint8(per_sample).reshape(n, steps, *shown[0].shape[1:])  # [n, S, H, W, C]
        final = np.concatenate(shown)[:n, None]  # [n, 1, H, W, C]
        rows = np.concatenate([frames, final], axis=1)
        save_grid(rows.reshape(-1, *rows.shape[2:]), path, nrow=steps + 1)
    else:
        plot_points(x0.reshape(-1, x0.shape[-1]), path, labels=np.repeat(np.arange(steps), n))
