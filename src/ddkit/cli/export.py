"""``ddkit export RUN --diffusers OUT``: write a run as a diffusers DDPMPipeline folder."""

from __future__ import annotations

import sys

from ..tasks.sampling import CHECKPOINT_HELP
from .common import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to another format (diffusers)",
        description=(
            "Write a run's network and schedule as a diffusers DDPMPipeline folder (unet/ with config.json and "
            "diffusion_pytorch_model.safetensors, scheduler/scheduler_config.json, model_index.json) that "
            "DDPMPipeline.from_pretrained(OUT) and DDIMPipeline.from_pretrained(OUT) load. diffusers itself is "
            "not needed to write it."
        ),
    )
    p.add_argument("run", help="run folder written by ddkit train")
    p.add_argument("--diffusers", required=True, metavar="OUT", help="the folder to write (new or empty)")
    p.add_argument("--checkpoint", default=None, metavar="last|best|PATH", help=CHECKPOINT_HELP)
    p.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA weights")


def run(args) -> int:
    from ..interop.diffusers import export_diffusers

    if not args.diffusers:
        raise UsageError("--diffusers needs a folder")
    from ..training.load import resolve_weights

    weights = resolve_weights(args.run, args.checkpoint, not args.no_ema)
    if weights.kind == "best":
        print(f"ddkit: exporting {weights.describe()}; --checkpoint last for the newest", file=sys.stderr)
    out = export_diffusers(args.run, args.diffusers, checkpoint=weights.path, ema=not args.no_ema)
    print(f"wrote {out} (diffusers DDPMPipeline: unet/, scheduler/, model_index.json)")
    return 0
