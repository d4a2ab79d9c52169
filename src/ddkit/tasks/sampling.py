"""What ``ddkit sample``, ``ddkit eval`` and ``ddkit edit`` share: the sampling and guidance options
(:class:`SamplingOptions`, one field per option: its flag and help are in the field's metadata), which
weights to load, the sampler's options from the registry, the labels and the guidance wrappers
around the network, drawn batch by batch. Every option is checked here, before any sample is drawn;
errors name the options (:class:`ddkit.checks.ParameterError`)."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, fields, replace

import torch

from ..checks import ParameterError, integer, number
from ..generate import PRECISIONS, LabelCycle, ModelFnFor, autocast_network, generate_batches, sample_labels
from ..generate import sample_shape as _sample_shape
from ..guidance import guided_model_fn, resolve_guidance
from ..options import option
from ..samplers import SAMPLERS, get_sampler
from ..samplers.edm import PoorGridWarning, edm_points, heun_warning
from ..samplers.registry import CHURN
from ..schedule import Schedule
from ..timesteps import ALL_SPACINGS, TUNED, sampling_grid, sigma_grid_options
from ..training.config import DEVICES, RunConfig
from ..training.distill import default_sampler, student_options
from ..training.load import is_classifier, load, load_classifier, load_weak_model
from ..training.precision import resolve_precision
from ..training.rundir import RunDir
from ..training.tuned import tuned_options

CHECKPOINT_HELP = (
    "which weights: best (RUN/checkpoints/best, chosen on the validation part), last (the newest step "
    "checkpoint), or a checkpoint folder or .safetensors file (default: best when the run has one, else last)"
)


def _number(text: str) -> int | float:
    """A timestep on the command line: an int when it is one, else a float."""
    value = float(text)
    return int(value) if value.is_integer() else value


def _churn(help_: str):
    return option(None, help_, type=float, metavar="X")


def _grid(what: str, type_, metavar: str):
    """An explicit grid: the whole sequence, exclusive with the other one and with steps/spacing."""
    help_ = f"an explicit strictly decreasing sequence of {what}, instead of --steps/--spacing"
    return option(None, help_, type=type_, nargs="+", metavar=metavar, exclusive="grid")


@dataclass(frozen=True)
class SamplingOptions:
    """The options that choose the weights, the sampler, the samples drawn and their guidance
    (``ddkit sample``, ``ddkit eval``; ``ddkit edit`` without ``num``). None: the sampler's default
    (``sampler`` None: the run's, :func:`with_sampler`)."""

    sampler: str | None = option(
        None,
        "; ".join(f"{s.name}: {s.help}" for s in SAMPLERS.values())
        + " (default ddim; consistency for a student made by ddkit distill)",
        choices=tuple(SAMPLERS),
    )
    steps: int | None = option(
        None, "sampling steps S = model evaluations (default: the sampler's, 50 for ddim, 10 for dpm++ and unipc)"
    )
    eta: float | None = option(None, "DDIM η in [0, 1] (default 0: deterministic)")
    spacing: str | None = option(
        None,
        "timestep spacing, for every sampler that takes steps (default: the sampler's): index spacings "
        "leading, quadratic, trailing, linspace; logsnr (uniform in log-SNR); σ-grids karras (EDM eq. 5), "
        "exponential and kl-optimal (AYS Theorem 3.1, c = the run's σ_data or 0.5); tuned: "
        "RUN/timesteps/SAMPLER-STEPS.json, made by ddkit tune-steps",
        choices=ALL_SPACINGS + (TUNED,),
    )
    timesteps: tuple | None = _grid(
        "0-based model timesteps in [0, T-1] (fractional ones lie between steps)", _number, "T"
    )
    sigmas: tuple | None = _grid(
        "noise levels σ = √((1-ᾱ)/ᾱ) within the schedule's range (a trailing 0 is allowed)", float, "SIGMA"
    )
    sigma_min: float | None = option(
        None, "lowest σ of a σ-grid spacing (default: the schedule's σ_0)", type=float, metavar="SIGMA"
    )
    sigma_max: float | None = option(
        None,
        "highest σ of a σ-grid spacing, where sampling starts (default: min(σ at T-1, 80))",
        type=float,
        metavar="SIGMA",
    )
    order: int | None = option(
        None,
        "dpm++ and unipc solver order: 2 (default) or 3 (dpm++ 1 is DDIM; unipc 1 is DDIM plus its corrector)",
        choices=(1, 2, 3),
    )
    s_churn: float | None = _churn(
        "EDM churn S_churn >= 0 for heun and euler: noise added before each step (default 0)"
    )
    s_tmin: float | None = _churn("churn only at σ >= S_tmin (default 0)")
    s_tmax: float | None = _churn("churn only at σ <= S_tmax (default inf)")
    s_noise: float | None = _churn("scale of the churn noise S_noise (default 1)")
    gamma: float | None = option(
        None,
        "consistency sampling's re-noising in [0, 1] (CTM's γ): 1 fresh noise (Song et al. 2023), 0 the noise the "
        "model predicted, as DDIM (default: the student's recorded choice, else 1)",
    )
    precision: str = option(
        "fp32",
        "the network's arithmetic while sampling: fp32 (default), bf16 or fp16 (cuda) under autocast, "
        "auto: bf16 where the hardware computes it natively and the network is large enough (as training)",
        choices=("auto",) + PRECISIONS,
    )
    num: int = option(64, "number of samples (default 64)")
    batch_size: int = option(256, "samples per batch (default 256)")
    seed: int = option(0, "random seed; sample i depends only on (seed, i) (default 0)")
    checkpoint: str | None = option(None, CHECKPOINT_HELP, metavar="last|best|PATH")
    no_ema: bool = option(False, "use the raw weights instead of the EMA weights", switch=True)
    device: str = option("cpu", "cpu (default) or cuda", choices=DEVICES)
    progress: bool = option(False, "show a progress bar", switch=True)
    # labels and guidance (ddkit.guidance.resolve_guidance decides what they mean)
    label: int | None = option(None, "every sample of class K", metavar="K", exclusive="labels")
    labels: str | None = option(
        None,
        "all: equal numbers of every class, in order 0, 1, …, K-1, 0, … (the default on class-conditional runs)",
        choices=("all",),
        exclusive="labels",
    )
    guidance_scale: float | None = option(
        None,
        "classifier-free guidance scale on a class-conditional run (1: the plain conditional model, the default; "
        "0: unconditional; the paper's w is W - 1); with --guide-with, the autoguidance weight",
        metavar="W",
    )
    guidance_interval: tuple | None = option(
        None,
        "classifier-free guidance only at training timesteps T_LO <= t <= T_HI (plain conditional elsewhere; "
        "Kynkäänniemi et al. 2024)",
        type=int,
        nargs=2,
        metavar=("T_LO", "T_HI"),
    )
    guidance_rescale: float | None = option(
        None,
        "rescale the guided ε toward the conditional one's std, blended by PHI in [0, 1] (Lin et al. 2023; default 0)",
        metavar="PHI",
    )
    classifier: str | None = option(
        None,
        "classifier guidance with a run of ddkit train-classifier (same image size, channels and schedule); "
        "on unconditional and conditional runs",
        metavar="CLS_RUN",
    )
    classifier_scale: float | None = option(
        None, "classifier guidance scale (default 1 with --classifier)", metavar="S"
    )
    guide_with: str | None = option(
        None,
        "autoguidance (Karras et al. 2024) by a weaker model: RUN/checkpoints/step-N of the same run, or "
        "another run folder with the same data shape and schedule; weight --guidance-scale",
        metavar="WEAK",
    )

    def __post_init__(self) -> None:
        for name in ("num", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ParameterError(f"`{name}` must be a positive integer, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError(f"`seed` must be >= 0, got {self.seed!r}")
        if self.timesteps is not None and self.sigmas is not None:
            raise ParameterError("give `timesteps` or `sigmas`, not both")
        if self.label is not None and self.labels is not None:
            raise ParameterError("give `label` or `labels`, not both")

    def sampler_given(self) -> dict:
        """The sampler's options that were given (not None)."""
        names = ("steps", "eta", "spacing", "order", *CHURN, "gamma")
        return {k: getattr(self, k) for k in names if getattr(self, k) is not None}


def note(message: str) -> None:
    """One line on stderr: what was decided for the user (which weights, which precision)."""
    print(f"ddkit: {message}", file=sys.stderr)


def load_model(run, o: SamplingOptions, diffusers=None):
    """(model, schedule, config) of the run folder ``run`` or of the diffusers folder ``diffusers``
    (exactly one). The run's weights as ``checkpoint``/``no_ema`` say (a note on stderr when the best
    checkpoint is used). A diffusers model already returns ε: its config carries its shape and
    classes with the default (ε) diffusion settings."""
    if (run is None) == (diffusers is None):
        raise ParameterError("give a run folder or `diffusers` PATH (exactly one)")
    if diffusers is None:
        model, schedule, config = load(run, checkpoint=o.checkpoint, ema=not o.no_ema, device=o.device)
        if model.loaded_from.kind == "best":
            note(f"using {model.loaded_from.describe()}; --checkpoint last for the newest")
        return model, schedule, config
    from ..interop.diffusers import load_diffusers

    if o.checkpoint is not None or o.no_ema:
        raise ParameterError("`checkpoint` and `no_ema` choose a run's weights; they do not apply to `diffusers`")
    model, schedule = load_diffusers(diffusers, device=o.device)
    return model, schedule, RunConfig(model=model.config)


def with_sampler(o: SamplingOptions, config: RunConfig) -> SamplingOptions:
    """``o`` with ``sampler`` decided: the one given, else the run's default (consistency for a
    student made by ddkit distill, ddim otherwise; :func:`ddkit.training.distill.default_sampler`)."""
    return o if o.sampler is not None else replace(o, sampler=default_sampler(config))


def sampler_options(o: SamplingOptions, schedule: Schedule, run=None, sigma_data: float | None = None) -> dict:
    """The chosen sampler's options, checked against the sampler and the schedule; ``spacing`` tuned
    becomes the run's tuned ``timesteps`` (:func:`ddkit.training.tuned.tuned_options`);
    ``sigma_min``/``sigma_max``, and kl-optimal with the run's ``sigma_data``, an explicit σ-grid
    (:func:`ddkit.timesteps.sigma_grid_options`). A Heun grid known to overshoot is named in one
    line on stderr here (the sampler's own :class:`~ddkit.samplers.edm.PoorGridWarning` is then
    silenced)."""
    spec = get_sampler(o.sampler)
    given = o.sampler_given()
    unused = sorted(set(given) - set(spec.options))
    if unused:
        raise ParameterError(f"`sampler` {o.sampler} does not take {', '.join(f'`{u}`' for u in unused)}")
    if o.steps is not None:  # the samplers check these too; here they fail before the model loads
        integer("steps", o.steps, low=1, high=schedule.num_timesteps, what=f"in [1, {schedule.num_timesteps}]")
    for name in ("eta", "gamma"):
        if getattr(o, name) is not None:
            number(name, getattr(o, name), low=0.0, high=1.0, what="in [0, 1]")
    grid = {k: list(getattr(o, k)) for k in ("timesteps", "sigmas") if getattr(o, k) is not None}
    if grid and ("steps" in given or "spacing" in given):
        raise ParameterError(f"`{next(iter(grid))}` is the whole grid; drop `steps` and `spacing`")
    if grid:
        sampling_grid(schedule, **grid)  # strictly decreasing and in range, checked before any work
    if given.get("spacing") == TUNED:
        del given["spacing"]
        steps = given.pop("steps", None) or _default_steps(spec)
        order = given.pop("order", None)
        given |= tuned_options(run, o.sampler, steps, schedule, order=order, checkpoint=o.checkpoint, ema=not o.no_ema)
    given = sigma_grid_options(
        schedule,
        given | grid,
        default_spacing=str(spec.defaults.get("spacing", "")),
        points_of=lambda n: edm_points(n or _default_steps(spec), heun=o.sampler == "heun"),
        sigma_min=o.sigma_min,
        sigma_max=o.sigma_max,
        sigma_data=sigma_data,
    )
    if o.sampler == "heun":  # one line now, not the sampler's Python warning at every batch
        message = heun_warning(schedule, **{k: v for k, v in given.items() if k in HEUN_GRID_ARGS})
        if message:
            note(f"warning: {message.replace('sampler dpm++ with steps', '--sampler dpm++ --steps')}")
            warnings.filterwarnings("ignore", category=PoorGridWarning)
    return given


HEUN_GRID_ARGS = ("steps", "spacing", "timesteps", "sigmas")


def _default_steps(spec) -> int:
    return int(spec.defaults["steps"])


def sampling_precision(o: SamplingOptions, model) -> str:
    """``precision`` resolved (auto: as training decides, noted on stderr); fp16 needs cuda."""
    precision, why = resolve_precision(o.precision, o.device, model)
    if o.precision == "auto":
        note(f"precision auto -> {precision} ({why})")
    if precision == "fp16" and torch.device(o.device).type != "cuda":
        raise ParameterError("`precision` fp16 needs `device` cuda (on the CPU use bf16)")
    return precision


def _classifier_classes(o: SamplingOptions) -> int | None:
    if o.classifier is None:
        return None
    config = RunConfig.load(RunDir(o.classifier).config)
    if not is_classifier(config):
        raise ParameterError(f"`classifier` {o.classifier} is not a classifier run (made by ddkit train-classifier)")
    return config.model.num_classes


def guidance_labels(o: SamplingOptions, config: RunConfig) -> LabelCycle | None:
    """The labels by sample index: ``label`` for all, else 0, 1, …, K-1, 0, … when the run or the
    classifier has classes (K from the run, else from the classifier); None otherwise."""
    k_run, k_cls = getattr(config.model, "num_classes", None), _classifier_classes(o)
    if k_run is not None and k_cls is not None and k_run != k_cls:
        raise ParameterError(f"`classifier` has {k_cls} classes but the run has {k_run}")
    k = k_run if k_run is not None else k_cls
    if k is None and (o.label is not None or o.labels is not None):
        raise ParameterError("`label`/`labels` need a class-conditional run or a `classifier`; this run has no labels")
    return sample_labels(k, o.label)


def guided_model_fn_for(o: SamplingOptions, model, schedule: Schedule, config: RunConfig) -> ModelFnFor:
    """``y ↦ model_fn``: the network (ε) with labels bound and the guidance the options ask for
    (:func:`ddkit.guidance.resolve_guidance` decides; the guiding networks are loaded here)."""
    settings = resolve_guidance(
        conditional=getattr(config.model, "num_classes", None) is not None,
        num_timesteps=schedule.num_timesteps,
        guidance_scale=o.guidance_scale,
        classifier=o.classifier is not None,
        classifier_scale=o.classifier_scale,
        weak=o.guide_with is not None,
        interval=o.guidance_interval,
        guidance_rescale=o.guidance_rescale,
    )
    weak = classifier = None
    if settings.auto_scale is not None:
        what = f"`guide_with` {o.guide_with}"
        weak = load_weak_model(o.guide_with, config, schedule, ema=not o.no_ema, device=o.device, what=what)
    if settings.classifier_scale:
        what = f"`classifier` {o.classifier}"
        classifier, _ = load_classifier(o.classifier, config, schedule, device=o.device, what=what)
    return lambda y: guided_model_fn(model, y, settings, schedule=schedule, weak=weak, classifier=classifier)


@dataclass
class Plan:
    """What :func:`batches` will do, prepared (and every option checked) before any sample is drawn:
    the ε-network under autocast, the sampler options, the labels and ``y ↦ model_fn`` with the guidance."""

    options: SamplingOptions
    model: torch.nn.Module
    schedule: Schedule
    config: RunConfig
    sampler_options: dict
    labels: LabelCycle | None  # (start, stop) -> LongTensor
    model_fn_for: ModelFnFor
    is_image: bool
    shape: tuple[int, ...]  # one sample: (C, H, W) or (D,)


def plan(o: SamplingOptions, model, schedule: Schedule, config: RunConfig, run=None) -> Plan:
    """Check the sampling options against the run and load what guides it. A network trained to
    predict x0, v or EDM's F is converted to ε first (:meth:`DiffusionConfig.eps_network`), so every
    sampler and guidance wrapper sees ε. A student (ddkit distill) samples on its recorded σ-grid
    (:func:`ddkit.training.distill.student_options`)."""
    o = with_sampler(o, config)
    model = config.diffusion.eps_network(model, schedule)
    options = student_options(config, o.sampler, sampler_options(o, schedule, run, config.diffusion.sigma_data))
    model = autocast_network(model, sampling_precision(o, model), o.device)
    labels = guidance_labels(o, config)
    fn_for = guided_model_fn_for(o, model, schedule, config)
    is_image = hasattr(config.model, "image_size")
    return Plan(o, model, schedule, config, options, labels, fn_for, is_image, _sample_shape(model))


def batches(p: Plan, step_callback=None):
    """Yield (start, x [n, ...] float32) batch by batch (``step_callback(start, step_info)``: see
    :func:`ddkit.generate.generate_batches`)."""
    o = p.options
    yield from generate_batches(
        p.model,
        p.schedule,
        o.num,
        sampler=o.sampler,
        batch_size=o.batch_size,
        seed=o.seed,
        labels=p.labels,
        model_fn_for=p.model_fn_for,
        clip_x0=(-1.0, 1.0) if p.is_image else None,
        device=o.device,
        progress=o.progress,
        step_callback=step_callback,
        **p.sampler_options,
    )


def options_from(cls, options: dict):
    """``cls(**options)`` with an unknown keyword named among the allowed ones (a TypeError)."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    return cls(**options)


__all__ = ["SamplingOptions", "CHECKPOINT_HELP", "load_model", "with_sampler", "sampler_options", "plan", "batches"]
__all__ += ["Plan"]
