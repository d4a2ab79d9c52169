"""``ddkit edit``: parses the options of :func:`ddkit.edit_run`, which edits and restores given images
with a trained run (or a diffusers model): SDEdit, RePaint/replace inpainting, DDNM/DPS restoration,
DDIB class translation, latent interpolation."""

from __future__ import annotations

from ..edit import METHODS
from ..tasks.edit import EditOptions, edit_run
from .common import add_options, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "edit",
        help="edit or restore given images with a trained run (SDEdit, inpainting, DDNM/DPS, translation, "
        "interpolation)",
        description=(
            "Edit the images of --input with a run's EMA weights. Writes an NPZ (images: uint8 [N, H, W, C], "
            "labels: int64 [N] where they apply; M outputs per input in order, for translation to all labels "
            "and interpolation frames) and optionally a grid PNG with one row per input: input | mask, "
            "measurement or second image | output(s). Methods: "
            + "; ".join(f"{m.name}: {m.help}" for m in METHODS.values())
        ),
    )
    p.add_argument("run", nargs="?", default=None, help="run folder written by ddkit train (or give --diffusers)")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="NPZ file to write")
    p.set_defaults(options=add_options(p, EditOptions))


def run(args) -> int:
    s = edit_run(args.run, out=args.out, keep=False, **given(args, args.options))
    print(f"wrote {s.num} images to {args.out}" + (f" and {args.grid}" if args.grid else ""))
    return 0
