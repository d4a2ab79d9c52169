"""``ddkit sample``: draw samples from a trained run into an NPZ (and a grid PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import save_grid, save_points_plot, to_uint8
from .common import UsageError, atomic_savez
from .sampling import add_sampling_arguments, check_counts, draw


def add_parser(sub) -> None:
    p = sub.add_parser("sample", help="draw samples from a trained run", description=(
        "Sample from a run's EMA weights. Writes an NPZ (images: uint8 [N, H, W, C]; labels: int64 [N] "
        "for class-conditional runs; points: float32 [N, D] for 2-D runs) and optionally a grid PNG."))
    p.add_argument("run", nargs="?", default=None, help="run folder written by ddkit train (or give --diffusers)")
    p.add_argument("--diffusers", default=None, metavar="PATH",
                   help="sample a local diffusers folder (UNet2DModel pipeline or model folder) instead of a run")
    p.add_argument("--out", default="samples.npz", help="NPZ file to write (default %(default)s)")
    p.add_argument("--grid", default=None, help="also write a PNG grid (or a scatter plot for 2-D data)")
    add_sampling_arguments(p)


def _load_diffusers(args):
    """The diffusers model as (model, schedule, config) for ``draw``: the model already returns ε,
    so the config carries its shape and classes with the default (ε) diffusion settings."""
    from ..config import RunConfig
    from ..diffusers_io import load_diffusers

    if args.checkpoint is not None or args.no_ema:
        raise UsageError("--checkpoint and --no-ema choose a run's weights; they do not apply to --diffusers")
    model, schedule = load_diffusers(args.diffusers, device=args.device)
    return model, schedule, RunConfig(model=model.config)


def run(args) -> int:
    from ..runs import load

    check_counts(args)
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    for path in (out, Path(args.grid) if args.grid else None):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"the folder of {path} does not exist")
    if (args.run is None) == (args.diffusers is None):
        raise UsageError("give a run folder or --diffusers PATH (exactly one)")
    if args.diffusers is not None:
        model, schedule, config = _load_diffusers(args)
    else:
        model, schedule, config = load(args.run, checkpoint=args.checkpoint, ema=not args.no_ema, device=args.device)
    drawn = draw(args, model, schedule, config)
    arrays = {"images": to_uint8(drawn.x)} if drawn.is_image else {"points": drawn.x.numpy().astype(np.float32)}
    if drawn.labels is not None:
        arrays["labels"] = drawn.labels.numpy().astype(np.int64)
    atomic_savez(out, **arrays)
    if args.grid:
        if drawn.is_image:
            num_classes = getattr(config.model, "num_classes", None)
            save_grid(arrays["images"], args.grid, nrow=num_classes if drawn.labels is not None else None)
        else:
            save_points_plot(arrays["points"], args.grid, labels=arrays.get("labels"))
    print(f"wrote {args.num} samples to {out}" + (f" and {args.grid}" if args.grid else ""))
    return 0
