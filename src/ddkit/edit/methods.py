"""The table of editing methods (:data:`METHODS`) and one entry point for all of them
(:func:`run_edit`), which ``ddkit edit`` calls: which options each method takes, what it needs
(a mask, a measurement, target labels, a second image), and the defaults of the command line."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import ParameterError, choice, integer, number
from ..checks import labels as check_labels
from ..guidance import network_num_classes
from ..parameterization import ModelFn
from ..rng import Generator
from ..samplers import get_sampler
from ..schedule import Schedule
from ..timesteps import ALL_SPACINGS
from .inpaint import inpaint
from .masks import check_mask
from .operators import Mask, check_operator, parse_operator
from .restore import restore
from .sdedit import sdedit, strength_timestep
from .translate import DEFAULT_GUIDANCE_SCALE, interpolate, translate

DEFAULT_STRENGTH = 0.5  # sdedit's strength when none is given (ddkit edit)
SAMPLING_OPTIONS = ("sampler", "steps", "eta", "spacing", "order")
DDIM_OPTIONS = ("steps", "eta", "spacing")  # the sampling options of the methods built on DDIM steps


@dataclass(frozen=True)
class EditMethod:
    """An editing method: the options it takes (``run_edit``'s parameter names; the sampling ones
    from :data:`SAMPLING_OPTIONS` apart), what it needs besides the input, one line of help."""

    name: str
    options: tuple[str, ...]
    sampling: tuple[str, ...]
    needs: str | None
    help: str


METHODS: dict[str, EditMethod] = {
    m.name: m
    for m in (
        EditMethod(
            "sdedit",
            ("strength", "invert"),
            SAMPLING_OPTIONS,
            None,
            "SDEdit (Meng et al. 2022): noise to strength·T, denoise with any sampler",
        ),
        EditMethod(
            "repaint",
            ("mask", "jump_length", "resample"),
            DDIM_OPTIONS,
            "mask",
            "RePaint inpainting (Lugmayr et al. 2022): replacement plus jumps back, resampled",
        ),
        EditMethod("replace", ("mask",), DDIM_OPTIONS, "mask", "inpainting by replacing the known values"),
        EditMethod(
            "ddnm",
            ("operator", "mask"),
            DDIM_OPTIONS,
            "measurement",
            "DDNM (Wang et al. 2023): range–null-space projection of x̂₀ at each DDIM step",
        ),
        EditMethod(
            "dps",
            ("operator", "mask", "dps_scale"),
            DDIM_OPTIONS,
            "measurement",
            "DPS (Chung et al. 2023): a gradient step on ‖y − A(x̂₀)‖ at each step",
        ),
        EditMethod(
            "translate",
            ("target", "source", "guidance_scale"),
            ("steps", "spacing"),
            "target",
            "class translation by DDIB (Su et al. 2023): invert, then sample the target class",
        ),
        EditMethod(
            "interpolate",
            ("other", "frames"),
            ("steps", "spacing"),
            "other",
            "interpolation of DDIM latents by slerp (DDIM §5.3)",
        ),
    )
}


def get_method(name: str) -> EditMethod:
    """The method called ``name``; the error lists them."""
    choice("method", name, METHODS)
    return METHODS[name]


def check_options(method: str, given) -> EditMethod:
    """Refuse an option the method does not take (``given``: the names of the options set)."""
    spec = get_method(method)
    takes = spec.options + spec.sampling
    for name in given:
        if name not in takes:
            listed = ", ".join(f"`{n}`" for n in takes)
            raise ParameterError(f"`{name}` does not apply to method {method} (it takes {listed})")
    return spec


@dataclass
class EditResult:
    """What :func:`run_edit` made: ``x`` [N, M, ...] (M outputs per input: 1, the frames of an
    interpolation, or the targets of a translation), ``labels`` [N, M] (the targets, or the labels
    the caller conditioned on) or None, and ``shown`` [N, ...]: what the method got besides the
    input, for a grid (the masked input with the unknown values at 0, A⁺y of a measurement, the
    second image of an interpolation), or None."""

    x: torch.Tensor
    labels: torch.Tensor | None
    shown: torch.Tensor | None


def measurement_operator(operator=None, mask=None, shape=None):
    """The operator of ddnm/dps: ``operator`` (an object or a name for
    :func:`~ddkit.edit.operators.parse_operator`), or :class:`~ddkit.edit.operators.Mask` of ``mask``."""
    if (operator is None) == (mask is None):
        raise ParameterError("methods ddnm and dps need an `operator` or a `mask` (one of them)")
    if operator is None:
        return Mask(check_mask(mask, shape))
    return parse_operator(operator) if isinstance(operator, str) else operator


def _check_sampling(method: str, o: dict, schedule: Schedule) -> None:
    if "steps" in o:
        integer("steps", o["steps"], low=1, high=schedule.num_timesteps)
    if "eta" in o:
        number("eta", o["eta"], low=0.0, high=1.0)
    if "spacing" in o:
        choice("spacing", o["spacing"], ALL_SPACINGS)
    if method == "sdedit":
        spec = get_sampler(o.get("sampler", "ddim"))
        unused = [k for k in ("steps", "eta", "spacing", "order") if k in o and k not in spec.options]
        if unused:
            raise ParameterError(
                f"sampler {spec.name} does not take {', '.join(f'`{k}`' for k in unused)} "
                f"(it takes {', '.join(spec.options) or 'no options'})"
            )


def check_edit(
    method: str, shape, schedule: Schedule, *, num_classes: int | None = None, classifier: bool = False, **options
) -> dict:
    """Check every option of ``method`` for inputs of ``shape`` [N, ...] before any work, as
    :func:`run_edit` takes them (None: the default): a ParameterError naming the option otherwise.
    ``num_classes``: the network's classes (or the classifier's), for translate's labels;
    ``classifier``: whether a classifier guides an unconditional network (translate). Returns the
    options set, with the mask as a bool tensor and the operator as an object."""
    shape = tuple(shape)
    o = {k: v for k, v in options.items() if v is not None and v is not False}
    spec = check_options(method, o)
    _check_sampling(method, o, schedule)
    if method == "sdedit":
        strength_timestep(schedule, o.get("strength", DEFAULT_STRENGTH))
    if spec.needs == "mask":
        if "mask" not in o:
            raise ParameterError(f"method {method} needs a `mask` (1 = known)")
        o["mask"] = check_mask(o["mask"], shape)
        for name in ("jump_length", "resample"):
            if name in o:
                integer(name, o[name], low=1)
    if spec.needs == "measurement":
        o["operator"] = measurement_operator(o.pop("operator", None), o.pop("mask", None), shape)
        check_operator(o["operator"], shape, pinv=method == "ddnm")
        if "dps_scale" in o:
            number("dps_scale", o["dps_scale"], low=0.0)
    if method == "translate":
        if num_classes is None and not classifier:
            raise ParameterError("method translate needs a class-conditional network or a `classifier`")
        if "target" not in o:
            raise ParameterError("method translate needs a `target` class")
        target = torch.as_tensor(o["target"])
        flat = target.reshape(-1) if target.ndim == 2 else target
        check_labels(flat, num_classes, "target")
        if target.ndim and target.shape[0] != shape[0]:
            raise ParameterError(f"`target` has {target.shape[0]} rows for {shape[0]} inputs")
        number("guidance_scale", o.get("guidance_scale", DEFAULT_GUIDANCE_SCALE), low=0.0)
    if method == "interpolate":
        if "other" not in o:
            raise ParameterError("method interpolate needs a second image (`other`) for each input")
        if tuple(o["other"].shape) != shape:
            raise ParameterError(
                f"`other` images must have the inputs' shape {list(shape)}, got {list(o['other'].shape)}"
            )
        integer("frames", o.get("frames", 8), low=2)
    return o


def run_edit(
    method: str,
    x: torch.Tensor,
    schedule: Schedule,
    *,
    model_fn: ModelFn | None = None,
    model_fn_cond=None,
    classifier=None,
    labels: torch.Tensor | None = None,
    generator: Generator = None,
    clip_x0=None,
    progress: bool = False,
    **options,
) -> EditResult:
    """Run the editing method ``method`` on inputs x [N, ...] with its ``options`` (those of
    :data:`METHODS`; None means the method's default; :func:`check_edit` checks them first): the one
    entry point of ``ddkit edit``.

    ``model_fn`` (any, guidance wrappers included: ``labels`` [N] says which labels it has bound,
    for the result) serves every method but translate, which takes ``model_fn_cond(x_t, t, y)``
    (a class-conditional network), or an unconditional one and a ``classifier``. Options: sdedit
    ``strength`` (default 0.5), ``invert``; repaint/replace ``mask``, ``jump_length``, ``resample``;
    ddnm/dps ``operator`` (an object or a name such as "downsample:2") or ``mask``, ``dps_scale``;
    translate ``target`` (int, [N] or [N, M]), ``source``, ``guidance_scale``; interpolate ``other``
    (the second images [N, ...]), ``frames``; and the sampling options ``sampler`` (sdedit),
    ``steps``, ``eta``, ``spacing``, ``order``.
    """
    if method == "translate":
        num_classes = network_num_classes(classifier if classifier is not None else model_fn_cond)
    else:
        num_classes = None
        if model_fn is None:
            raise ParameterError(f"method {method} needs a `model_fn`")
    o = check_edit(method, x.shape, schedule, num_classes=num_classes, classifier=classifier is not None, **options)
    common = dict(generator=generator, clip_x0=clip_x0, progress=progress)
    spec = METHODS[method]
    shown = None
    if spec.needs == "mask":
        mask = o.pop("mask")
        out = inpaint(model_fn, x, mask, schedule, method=method, **o, **common)
        shown = torch.where(mask.to(x.device), x, torch.zeros((), dtype=x.dtype, device=x.device))
    elif spec.needs == "measurement":
        operator = o.pop("operator")
        y = operator.A(x)
        scale = o.pop("dps_scale", None)
        out = restore(model_fn, y, operator, schedule, method=method, scale=scale, shape=x.shape, **o, **common)
        shown = operator.A_pinv(y) if callable(getattr(operator, "A_pinv", None)) else None
    elif method == "sdedit":
        o.setdefault("strength", DEFAULT_STRENGTH)
        out = sdedit(model_fn, x, schedule, **o, **common)
    elif method == "translate":
        o.setdefault("guidance_scale", DEFAULT_GUIDANCE_SCALE)
        del common["generator"]  # deterministic both ways
        out = translate(model_fn_cond, x, schedule, classifier=classifier, **o, **common)
        target = torch.as_tensor(o["target"])
        if out.ndim == x.ndim:
            out, target = out.unsqueeze(1), target.expand(x.shape[0]).unsqueeze(1)
        return EditResult(out, target, None)
    else:  # interpolate
        other = o.pop("other").to(x)
        del common["generator"]
        out = interpolate(model_fn, x, other, schedule, **o, **common)
        shown = other
    out = out if out.ndim > x.ndim else out.unsqueeze(1)
    labels_out = None if labels is None else torch.as_tensor(labels).reshape(-1, 1).expand(-1, out.shape[1])
    return EditResult(out, labels_out, shown)
