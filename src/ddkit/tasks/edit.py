"""``ddkit.edit_run``: what ``ddkit edit`` does, from Python. Given images edited or restored with a
run (or a diffusers model) by one of :data:`ddkit.edit.METHODS`, batch by batch; every option is
checked before the first image is edited."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checks import ParameterError
from ..data.images import save_grid, to_uint8
from ..data.inputs import load_images, load_mask
from ..data.npz import check_room, npz_bytes, savez_atomic
from ..edit import MASK_PRESETS, METHODS, check_edit, run_edit
from ..edit.methods import SAMPLING_OPTIONS
from ..edit.operators import OPERATOR_NAMES
from ..guidance import network_num_classes
from ..options import option
from ..rng import SampleGenerators
from ..samplers import SAMPLERS
from ..training.distill import refuse_student
from ..training.load import load_classifier
from .sample import Samples, check_output
from .sampling import SamplingOptions, guidance_labels, guided_model_fn_for, load_model, options_from

GRID_ROWS = 64  # the grid shows the first this many inputs
# options of run_edit (None: the method's default)
METHOD_OPTIONS = ("strength", "invert", "jump_length", "resample", "operator", "dps_scale", "frames")
# guidance options that translate does not take (it takes guidance_scale and classifier)
NOT_FOR_TRANSLATE = ("label", "labels", "guidance_interval", "guidance_rescale", "classifier_scale", "guide_with")


@dataclass(frozen=True)
class EditOptions(SamplingOptions):
    """:class:`SamplingOptions` (no ``num``: one output per input) and the editing method's."""

    num: int = 1  # not an option of ddkit edit: the inputs are the samples
    sampler: str | None = option(None, "sdedit's sampler (default ddim)", choices=tuple(SAMPLERS))
    input: str | None = option(
        None,
        "a PNG, a folder of PNGs or an NPZ with images uint8 [N, H, W, C], at the run's size and channels",
        metavar="IN",
        required=True,
    )
    method: str | None = option(None, "the editing method", choices=tuple(METHODS), required=True)
    diffusers: str | None = option(
        None, "use a local diffusers folder (UNet2DModel pipeline or model folder) instead of a run", metavar="PATH"
    )
    grid: str | None = option(None, "also write a PNG grid (first 64 inputs)", metavar="GRID.png")
    mask: str | None = option(
        None, "a PNG or an NPZ with mask uint8/bool [N or 1, H, W]: 1 = known", metavar="MASK", exclusive="mask"
    )
    mask_preset: str | None = option(
        None,
        f"the region to fill: {' | '.join(MASK_PRESETS)} (random:P fills a share P of the pixels); "
        "lower-half fills the lower half and keeps the upper half exactly",
        metavar="REGION",
        exclusive="mask",
    )
    strength: float | None = option(None, "sdedit: noise to strength·T, in (0, 1] (default 0.5)")
    invert: bool = option(False, "sdedit: reach t₀ by DDIM inversion instead of noise", switch=True)
    jump_length: int | None = option(None, "repaint: steps of each jump back (default 10)")
    resample: int | None = option(None, "repaint: passes over each jump (default 10)")
    operator: str | None = option(
        None,
        f"ddnm, dps: the measurement, {' | '.join(OPERATOR_NAMES)} (K a factor, S a Gaussian σ in "
        "pixels); without it, --mask/--mask-preset; the measurement is taken of --input",
        metavar="OP",
    )
    dps_scale: float | None = option(None, "dps: step size ζ' (default 1)")
    target: int | None = option(None, "translate: to class K", flag="--to-label", metavar="K", exclusive="to")
    to_labels: str | None = option(None, "translate: every input to every class", choices=("all",), exclusive="to")
    other: str | None = option(None, "interpolate: the second images", flag="--with", metavar="IMAGE2")
    frames: int | None = option(None, "interpolate: frames from input to IMAGE2 (default 8)")


def edit_run(run=None, *, out=None, keep: bool = True, **options) -> Samples:
    """Edit the images of ``input`` as ``ddkit edit`` does, with its options as keywords
    (:class:`EditOptions`; ``method`` and ``input`` are required). Returns the outputs (``images``
    uint8 [N·M, H, W, C], M outputs per input in order; ``labels`` where they apply) and writes them
    to the NPZ ``out`` and the PNG ``grid`` when given::

        ddkit.edit_run("runs/digits", input="in.npz", method="sdedit", strength=0.4).images
    """
    o = options_from(EditOptions, options)
    if o.input is None or o.method is None:
        raise ParameterError("give `input` and `method`")
    out = check_output("out", out, ".npz")
    grid = check_output("grid", o.grid, ".png")
    if run is not None:
        refuse_student(run, "ddkit edit")
    model, schedule, config = load_model(run, o, o.diffusers)
    if not hasattr(config.model, "image_size"):
        raise ParameterError("editing works on image runs; this run's data are points")
    size, channels = config.model.image_size, config.model.in_channels
    model = config.diffusion.eps_network(model, schedule)
    x = load_images(o.input, image_size=size, channels=channels)
    n = len(x)
    e = _method_options(o, x, size, channels)
    classifier = None
    num_classes = network_num_classes(model)
    if o.method == "translate":
        classifier, num_classes = _translate_setup(o, model, schedule, config, e, n)
    e = check_edit(o.method, x.shape, schedule, num_classes=num_classes, classifier=classifier is not None, **e)
    labels = fn_for = None
    if o.method != "translate":
        cycle = guidance_labels(o, config) if (o.label is not None or o.labels is not None) else None
        labels = None if cycle is None else cycle(0, n)
        fn_for = guided_model_fn_for(o, model, schedule, config)
        fn_for(None if labels is None else labels[:1])  # check the guidance options before the work
    rows = n * _outputs_per_input(o.method, e)
    layout = {"images": ((rows, size, size, channels), np.uint8)}
    if labels is not None or o.method == "translate":
        layout["labels"] = ((rows,), np.int64)
    if out is not None:
        check_room(out, npz_bytes(layout), f"{rows} images")
    results = []
    for start in range(0, n, o.batch_size):
        stop = min(start + o.batch_size, n)
        y = None if labels is None else labels[start:stop].to(o.device)
        results.append(
            run_edit(
                o.method,
                x[start:stop].to(o.device),
                schedule,
                model_fn=None if fn_for is None else fn_for(y),
                model_fn_cond=model,
                classifier=classifier,
                labels=y,
                generator=SampleGenerators(o.seed, range(start, stop), o.device),
                clip_x0=(-1.0, 1.0),
                progress=o.progress,
                **{k: _rows(v, start, stop, n) for k, v in e.items()},
            )
        )
    return _write(out, grid, keep, x, results)


def _method_options(o: EditOptions, x: torch.Tensor, image_size: int, channels: int) -> dict:
    """run_edit's options from ``o`` (None where not given): the mask and the second images loaded."""
    e = {k: getattr(o, k) for k in METHOD_OPTIONS + SAMPLING_OPTIONS}
    if o.mask is not None or o.mask_preset is not None:
        e["mask"] = load_mask(o.mask, o.mask_preset, num=len(x), image_size=image_size, seed=o.seed)
    if o.target is not None:
        e["target"] = o.target
    if o.other is not None:
        other = load_images(o.other, image_size=image_size, channels=channels, what="second image (`other`)")
        if len(other) not in (1, len(x)):
            raise ParameterError(f"`other` has {len(other)} images for {len(x)} inputs (give 1 or {len(x)})")
        e["other"] = other.expand_as(x).contiguous()
    if o.method == "translate" and o.guidance_scale is not None:
        e["guidance_scale"] = o.guidance_scale
    return e


def _translate_setup(o: EditOptions, model, schedule, config, e: dict, n: int):
    """(classifier, num_classes) for translate; ``to_labels`` all becomes targets [N, K]."""
    given = [k for k in NOT_FOR_TRANSLATE if getattr(o, k) not in (None, False)]
    if given:
        raise ParameterError(
            f"`method` translate takes `target`/`to_labels`, `guidance_scale` and `classifier`, not `{given[0]}`"
        )
    classifier = None
    if o.classifier is not None and network_num_classes(model) is None:
        what = f"`classifier` {o.classifier}"
        classifier, _ = load_classifier(o.classifier, config, schedule, device=o.device, what=what)
    elif o.classifier is not None:
        raise ParameterError("`classifier` guides translation on an unconditional run; this run is class-conditional")
    k = network_num_classes(classifier if classifier is not None else model)
    if o.to_labels == "all" and k is not None:
        e["target"] = torch.arange(k).repeat(n, 1)
    return classifier, k


def _outputs_per_input(method: str, e: dict) -> int:
    if method == "interpolate":
        return int(e.get("frames", 8))
    if method == "translate":
        t = torch.as_tensor(e["target"])
        return t.shape[1] if t.ndim == 2 else 1
    return 1


def _rows(value, start: int, stop: int, n: int):
    """The batch's rows of a per-input option (a tensor with N rows); anything else as it is."""
    if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n and n > 1:
        return value[start:stop]
    return value


def _write(out: Path | None, grid: Path | None, keep: bool, x: torch.Tensor, results: list) -> Samples:
    arrays = {"images": np.concatenate([to_uint8(r.x.reshape(-1, *r.x.shape[2:]).float().cpu()) for r in results])}
    if results[0].labels is not None:
        arrays["labels"] = torch.cat([r.labels.reshape(-1) for r in results]).cpu().numpy().astype(np.int64)
    written = []
    if out is not None:
        savez_atomic(out, **arrays)
        written.append(out)
    if grid is not None:
        outs = torch.cat([r.x for r in results]).float().cpu()[:GRID_ROWS]
        shown = None if results[0].shown is None else torch.cat([r.shown for r in results]).float().cpu()[:GRID_ROWS]
        cols = [x[: len(outs)].unsqueeze(1)] + ([] if shown is None else [shown.unsqueeze(1)]) + [outs]
        table = torch.cat(cols, 1)  # one row per input: input | mask, measurement or second image | output(s)
        save_grid(to_uint8(table.reshape(-1, *table.shape[2:])), grid, nrow=table.shape[1])
        written.append(grid)
    return Samples(arrays if keep else {}, len(arrays["images"]), written)


__all__ = ["edit_run", "EditOptions"]
