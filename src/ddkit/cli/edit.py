"""``ddkit edit``: edit and restore given images with a trained run (or a diffusers model): SDEdit,
RePaint/replace inpainting, DDNM/DPS restoration, DDIB class translation, latent interpolation.
Parses the options and calls :func:`ddkit.edit.run_edit`; the table of methods and their options
(:data:`ddkit.edit.METHODS`), the masks and the input conversion (:mod:`ddkit.data.inputs`) are the
library's. Every option is checked before the first image is edited."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.images import save_grid, to_uint8
from ..data.inputs import load_images, load_mask
from ..data.npz import check_room, npz_bytes
from ..edit import MASK_PRESETS, METHODS, check_edit, run_edit
from ..edit.operators import OPERATOR_NAMES
from ..guidance import network_num_classes
from ..rng import SampleGenerators
from ..training.distill import refuse_student
from ..training.load import load_classifier
from .common import UsageError, atomic_savez
from .guidance_options import guidance_labels, guided_model_fn_for
from .sampling import add_model_source, add_sampling_arguments, load_model

GRID_ROWS = 64  # the grid shows the first this many inputs
# flag dests of the guidance group that translate does not take (it takes --guidance-scale, --classifier)
NOT_FOR_TRANSLATE = ("label", "labels", "guidance_interval", "guidance_rescale", "classifier_scale", "guide_with")


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
    add_model_source(p)
    p.add_argument(
        "--input",
        required=True,
        metavar="IN",
        help="a PNG, a folder of PNGs or an NPZ with images uint8 [N, H, W, C], at the run's size and channels",
    )
    p.add_argument("--method", required=True, choices=tuple(METHODS), help="the editing method")
    p.add_argument("--out", required=True, metavar="OUT.npz", help="NPZ file to write")
    p.add_argument("--grid", default=None, metavar="GRID.png", help="also write a PNG grid (first 64 inputs)")
    masks = p.add_argument_group("masks (repaint, replace; ddnm and dps as the Mask operator)")
    which = masks.add_mutually_exclusive_group()
    which.add_argument(
        "--mask", default=None, metavar="MASK", help="a PNG or an NPZ with mask uint8/bool [N or 1, H, W]: 1 = known"
    )
    which.add_argument(
        "--mask-preset",
        default=None,
        metavar="REGION",
        help=f"the region to fill: {' | '.join(MASK_PRESETS)} (random:P fills a share P of the pixels); "
        "lower-half fills the lower half and keeps the upper half exactly",
    )
    m = p.add_argument_group("method options")
    m.add_argument("--strength", type=float, default=None, help="sdedit: noise to strength·T, in (0, 1] (default 0.5)")
    m.add_argument("--invert", action="store_true", help="sdedit: reach t₀ by DDIM inversion instead of noise")
    m.add_argument("--jump-length", type=int, default=None, help="repaint: steps of each jump back (default 10)")
    m.add_argument("--resample", type=int, default=None, help="repaint: passes over each jump (default 10)")
    m.add_argument(
        "--operator",
        default=None,
        metavar="OP",
        help=f"ddnm, dps: the measurement, {' | '.join(OPERATOR_NAMES)} (K a factor, S a Gaussian σ in "
        "pixels); without it, --mask/--mask-preset; the measurement is taken of --input",
    )
    m.add_argument("--dps-scale", type=float, default=None, help="dps: step size ζ' (default 1)")
    to = m.add_mutually_exclusive_group()
    to.add_argument("--to-label", dest="target", type=int, default=None, metavar="K", help="translate: to class K")
    to.add_argument("--to-labels", choices=("all",), default=None, help="translate: every input to every class")
    m.add_argument("--with", dest="other", default=None, metavar="IMAGE2", help="interpolate: the second images")
    m.add_argument("--frames", type=int, default=None, help="interpolate: frames from input to IMAGE2 (default 8)")
    add_sampling_arguments(p, count=False)
    p.set_defaults(sampler=None)  # sdedit's sampler; given to another method, an error


# command-line dest -> run_edit's option
OPTION_OF = {
    "strength": "strength",
    "invert": "invert",
    "jump_length": "jump_length",
    "resample": "resample",
    "operator": "operator",
    "dps_scale": "dps_scale",
    "frames": "frames",
    "sampler": "sampler",
    "steps": "steps",
    "eta": "eta",
    "spacing": "spacing",
    "order": "order",
}


def _check_paths(args) -> Path:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UsageError(f"--out must name a .npz file, got {out}")
    for path in (out, Path(args.grid) if args.grid else None):
        if path is not None and not path.parent.is_dir():
            raise UsageError(f"the folder of {path} does not exist")
    if args.grid and Path(args.grid).suffix.lower() != ".png":
        raise UsageError(f"--grid must name a .png file, got {args.grid}")
    if (args.run is None) == (args.diffusers is None):
        raise UsageError("give a run folder or --diffusers PATH (exactly one)")
    if args.batch_size < 1 or args.seed < 0:
        raise UsageError("--batch-size must be positive and --seed >= 0")
    return out


def _options(args, x: torch.Tensor, image_size: int, channels: int) -> dict:
    """run_edit's options from the command line (None where not given)."""
    o = {OPTION_OF[k]: getattr(args, k) for k in OPTION_OF}
    if args.mask is not None or args.mask_preset is not None:
        o["mask"] = load_mask(args.mask, args.mask_preset, num=len(x), image_size=image_size, seed=args.seed)
    if args.target is not None:
        o["target"] = args.target
    if args.other is not None:
        other = load_images(args.other, image_size=image_size, channels=channels, what="--with image")
        if len(other) not in (1, len(x)):
            raise UsageError(f"--with has {len(other)} images for {len(x)} inputs (give 1 or {len(x)})")
        o["other"] = other.expand_as(x).contiguous()
    if args.method == "translate" and args.guidance_scale is not None:
        o["guidance_scale"] = args.guidance_scale
    return o


def _translate_setup(args, model, schedule, config, o: dict, n: int):
    """(model_fn_cond, classifier, num_classes) for translate; --to-labels all becomes targets [N, K]."""
    given = [k for k in NOT_FOR_TRANSLATE if getattr(args, k) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(
            f"--method translate takes --to-label/--to-labels, --guidance-scale and --classifier, not {flag}"
        )
    classifier = None
    if args.classifier is not None and network_num_classes(model) is None:
        classifier, _ = load_classifier(
            args.classifier, config, schedule, device=args.device, what=f"--classifier {args.classifier}"
        )
    elif args.classifier is not None:
        raise UsageError("--classifier guides translation on an unconditional run; this run is class-conditional")
    k = network_num_classes(classifier if classifier is not None else model)
    if args.to_labels == "all" and k is not None:
        o["target"] = torch.arange(k).repeat(n, 1)
    return classifier, k


def run(args) -> int:
    out = _check_paths(args)
    if args.run is not None:
        refuse_student(args.run, "ddkit edit")
    model, schedule, config = load_model(args)
    if not hasattr(config.model, "image_size"):
        raise UsageError("ddkit edit works on image runs; this run's data are points")
    size, channels = config.model.image_size, config.model.in_channels
    model = config.diffusion.eps_network(model, schedule)
    x = load_images(args.input, image_size=size, channels=channels)
    n = len(x)
    o = _options(args, x, size, channels)
    classifier = None
    num_classes = network_num_classes(model)
    if args.method == "translate":
        classifier, num_classes = _translate_setup(args, model, schedule, config, o, n)
    o = check_edit(args.method, x.shape, schedule, num_classes=num_classes, classifier=classifier is not None, **o)
    labels = None
    fn_for = None
    if args.method != "translate":
        cycle = guidance_labels(args, config) if (args.label is not None or args.labels is not None) else None
        labels = None if cycle is None else cycle(0, n)
        fn_for = guided_model_fn_for(args, model, schedule, config)
        fn_for(None if labels is None else labels[:1])  # check the guidance options before the work
    outputs_per_input = _outputs_per_input(args.method, o)
    rows = n * outputs_per_input
    arrays = {"images": ((rows, size, size, channels), np.uint8)}
    if labels is not None or args.method == "translate":
        arrays["labels"] = ((rows,), np.int64)
    try:
        check_room(out, npz_bytes(arrays), f"{rows} images")
    except ValueError as e:
        raise UsageError(str(e)) from None
    results = []
    for start in range(0, n, args.batch_size):
        stop = min(start + args.batch_size, n)
        batch = {k: _rows(v, start, stop, n) for k, v in o.items()}
        y = None if labels is None else labels[start:stop].to(args.device)
        r = run_edit(
            args.method,
            x[start:stop].to(args.device),
            schedule,
            model_fn=None if fn_for is None else fn_for(y),
            model_fn_cond=model,
            classifier=classifier,
            labels=y,
            generator=SampleGenerators(args.seed, range(start, stop), args.device),
            clip_x0=(-1.0, 1.0),
            progress=args.progress,
            **batch,
        )
        results.append(r)
    _write(args, out, x, results, size, channels)
    return 0


def _outputs_per_input(method: str, o: dict) -> int:
    if method == "interpolate":
        return int(o.get("frames", 8))
    if method == "translate":
        t = torch.as_tensor(o["target"])
        return t.shape[1] if t.ndim == 2 else 1
    return 1


def _rows(value, start: int, stop: int, n: int):
    """The batch's rows of a per-input option (a tensor with N rows); anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n and n > 1:
        return value[start:stop]
    return value


def _write(args, out: Path, x: torch.Tensor, results: list, size: int, channels: int) -> None:
    images = np.concatenate([to_uint8(r.x.reshape(-1, *r.x.shape[2:]).float().cpu()) for r in results])
    arrays = {"images": images}
    if results[0].labels is not None:
        arrays["labels"] = torch.cat([r.labels.reshape(-1) for r in results]).cpu().numpy().astype(np.int64)
    atomic_savez(out, **arrays)
    if args.grid:
        _grid(args.grid, x, results)
    print(f"wrote {len(images)} images to {out}" + (f" and {args.grid}" if args.grid else ""))


def _grid(path: str, x: torch.Tensor, results: list) -> None:
    """One row per input (the first GRID_ROWS): input | mask, measurement or second image | output(s)."""
    outs = torch.cat([r.x for r in results]).float().cpu()[:GRID_ROWS]
    shown = None if results[0].shown is None else torch.cat([r.shown for r in results]).float().cpu()[:GRID_ROWS]
    cols = [x[: len(outs)].unsqueeze(1)] + ([] if shown is None else [shown.unsqueeze(1)]) + [outs]
    table = torch.cat(cols, 1)  # [rows, columns, C, H, W]
    save_grid(to_uint8(table.reshape(-1, *table.shape[2:])), path, nrow=table.shape[1])
