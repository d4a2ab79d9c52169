"""Sampling options shared by ``ddkit sample`` and ``ddkit eval``: which weights, which sampler
(from the registry) with which options, which labels, and the guidance wrappers around the network.
Both commands read the options here, so anything added here (a sampler option, a guidance kind)
reaches both."""

from __future__ import annotations

import argparse
import inspect
import sys
import warnings
from dataclasses import dataclass

import torch

from ..generate import PRECISIONS, LabelCycle, ModelFnFor, autocast_network, generate_batches, sample_shape
from ..samplers import SAMPLERS, get_sampler
from ..samplers.edm import CHURN_OPTIONS, PoorGridWarning, edm_points, heun_warning
from ..schedule import Schedule
from ..timesteps import ALL_SPACINGS, TUNED, sampling_grid, sigma_grid_options
from ..training.config import DEVICES, RunConfig
from ..training.precision import resolve_precision
from ..training.tuned import tuned_options
from .common import UsageError
from .guidance_options import add_guidance_arguments, guidance_labels, guided_model_fn_for


def add_sampling_arguments(p: argparse.ArgumentParser, *, count: bool = True) -> None:
    """The options that choose the weights, the sampler and the samples drawn (``count``: with
    ``--num``, for commands that draw new samples rather than edit given ones)."""
    g = p.add_argument_group("sampling")
    g.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default="ddim",
        help="; ".join(f"{s.name}: {s.help}" for s in SAMPLERS.values()) + " (default %(default)s)",
    )
    g.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampling steps S = model evaluations (default: the sampler's, 50 for ddim, 10 for dpm++ and unipc)",
    )
    g.add_argument("--eta", type=float, default=None, help="DDIM η in [0, 1] (default 0: deterministic)")
    g.add_argument(
        "--spacing",
        choices=ALL_SPACINGS + (TUNED,),
        default=None,
        help="timestep spacing, for every sampler that takes steps (default: the sampler's): index spacings "
        "uniform, quadratic, trailing, linspace; logsnr (uniform in log-SNR); σ-grids karras (EDM eq. 5), "
        "exponential and kl-optimal (AYS Theorem 3.1, c = the run's σ_data or 0.5); tuned: "
        "RUN/timesteps/SAMPLER-STEPS.json, made by ddkit tune-steps",
    )
    grid = g.add_mutually_exclusive_group()
    grid.add_argument(
        "--timesteps",
        type=_number,
        nargs="+",
        metavar="T",
        default=None,
        help="an explicit strictly decreasing sequence of 0-based model timesteps in [0, T-1] (fractional "
        "ones lie between steps), instead of --steps/--spacing",
    )
    grid.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        metavar="SIGMA",
        default=None,
        help="an explicit strictly decreasing sequence of noise levels σ = √((1-ᾱ)/ᾱ) within the schedule's "
        "range (a trailing 0 is allowed), instead of --steps/--spacing",
    )
    for name, help_ in (
        ("sigma-min", "lowest σ of a σ-grid spacing (default: the schedule's σ_0)"),
        ("sigma-max", "highest σ of a σ-grid spacing, where sampling starts (default: min(σ_{T-1}, 80))"),
    ):
        g.add_argument(f"--{name}", type=float, default=None, metavar="SIGMA", help=help_)
    g.add_argument(
        "--order",
        type=int,
        choices=(1, 2, 3),
        default=None,
        help="dpm++ and unipc solver order: 2 (default) or 3 (dpm++ 1 is DDIM; unipc 1 is DDIM plus its corrector)",
    )
    for name, help_ in (
        ("s-churn", "EDM churn S_churn >= 0 for heun and euler: noise added before each step (default 0: none)"),
        ("s-tmin", "churn only at σ >= S_tmin (default 0)"),
        ("s-tmax", "churn only at σ <= S_tmax (default inf)"),
        ("s-noise", "scale of the churn noise S_noise (default 1)"),
    ):
        g.add_argument(f"--{name}", type=float, default=None, metavar="X", help=help_)
    g.add_argument(
        "--precision",
        choices=("auto",) + PRECISIONS,
        default="fp32",
        help="the network's arithmetic while sampling: fp32 (default), bf16 or fp16 (cuda) under autocast, "
        "auto: bf16 where the hardware computes it natively and the network is large enough (as training)",
    )
    if count:
        g.add_argument("--num", type=int, default=64, help="number of samples (default %(default)s)")
    g.add_argument("--batch-size", type=int, default=256, help="samples per batch (default %(default)s)")
    g.add_argument(
        "--seed", type=int, default=0, help="random seed; sample i depends only on (seed, i) (default %(default)s)"
    )
    g.add_argument("--checkpoint", default=None, metavar="last|best|PATH", help=CHECKPOINT_HELP)
    g.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA weights")
    g.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (default) or cuda")
    g.add_argument("--progress", action="store_true", help="show a progress bar")
    add_guidance_arguments(p)


CHECKPOINT_HELP = (
    "which weights: best (RUN/checkpoints/best, chosen on the validation part), last (the newest step "
    "checkpoint), or a checkpoint folder or .safetensors file (default: best when the run has one, else last)"
)


def load_run(args, run: str | None = None):
    """``ddkit.load`` of the run with ``--checkpoint``, ``--no-ema`` and ``--device``; one stderr line
    when the best checkpoint is used, saying which and how to get the newest instead."""
    from ..training.load import load

    run = run if run is not None else args.run
    model, schedule, config = load(
        run, checkpoint=args.checkpoint, ema=not args.no_ema, device=getattr(args, "device", "cpu")
    )
    weights = model.loaded_from
    if weights.kind == "best":
        print(f"ddkit: using {weights.describe()}; --checkpoint last for the newest", file=sys.stderr)
    return model, schedule, config


def add_model_source(p: argparse.ArgumentParser) -> None:
    """RUN (a run folder) or ``--diffusers PATH``, as ``ddkit sample`` and ``ddkit edit`` take them."""
    p.add_argument("run", nargs="?", default=None, help="run folder written by ddkit train (or give --diffusers)")
    p.add_argument(
        "--diffusers",
        default=None,
        metavar="PATH",
        help="use a local diffusers folder (UNet2DModel pipeline or model folder) instead of a run",
    )


def load_model(args):
    """(model, schedule, config) of the run or of ``--diffusers PATH`` (exactly one of them). A
    diffusers model already returns ε, so its config carries its shape and classes with the default
    (ε) diffusion settings."""
    if (args.run is None) == (args.diffusers is None):
        raise UsageError("give a run folder or --diffusers PATH (exactly one)")
    if args.diffusers is None:
        return load_run(args)
    from ..interop.diffusers import load_diffusers

    if args.checkpoint is not None or args.no_ema:
        raise UsageError("--checkpoint and --no-ema choose a run's weights; they do not apply to --diffusers")
    model, schedule = load_diffusers(args.diffusers, device=args.device)
    return model, schedule, RunConfig(model=model.config)


def _number(text: str) -> int | float:
    """A timestep on the command line: an int when it is one, else a float."""
    value = float(text)
    return int(value) if value.is_integer() else value


OPTION_NAMES = ("steps", "eta", "spacing", "order") + CHURN_OPTIONS


def sampler_options(args, schedule: Schedule, sigma_data: float | None = None) -> dict:
    """The chosen sampler's options from the command line, checked (one-line errors); ``--spacing
    tuned`` becomes the run's tuned ``timesteps`` (:func:`ddkit.training.tuned.tuned_options`);
    ``--sigma-min``/``--sigma-max`` and kl-optimal with the run's ``sigma_data`` an explicit σ-grid
    (:func:`ddkit.timesteps.sigma_grid_options`)."""
    spec = get_sampler(args.sampler)
    options = {name: getattr(args, name, None) for name in OPTION_NAMES}
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(set(given) - set(spec.options))
    if unused:
        raise UsageError(
            f"--sampler {args.sampler} does not take {', '.join('--' + u.replace('_', '-') for u in unused)}"
        )
    if args.steps is not None and not 1 <= args.steps <= schedule.num_timesteps:
        raise UsageError(f"--steps must be in [1, {schedule.num_timesteps}], got {args.steps}")
    if args.eta is not None and not 0.0 <= args.eta <= 1.0:
        raise UsageError(f"--eta must be in [0, 1], got {args.eta}")
    grid = {k: getattr(args, k, None) for k in ("timesteps", "sigmas") if getattr(args, k, None) is not None}
    if grid and ("steps" in given or "spacing" in given):
        raise UsageError(f"--{next(iter(grid))} is the whole grid; drop --steps and --spacing")
    if grid:
        sampling_grid(schedule, **grid)  # strictly decreasing and in range, checked before any work
    if given.get("spacing") == TUNED:
        del given["spacing"]
        steps = given.pop("steps", None) or _default_steps(spec)
        given |= tuned_options(
            getattr(args, "run", None),
            args.sampler,
            steps,
            schedule,
            order=given.pop("order", None),
            checkpoint=args.checkpoint,
            ema=not args.no_ema,
        )
    given = sigma_grid_options(
        schedule,
        given,
        default_spacing=str(getattr(inspect.signature(spec.fn).parameters.get("spacing"), "default", "")),
        points_of=lambda n: edm_points(n or _default_steps(spec), heun=args.sampler == "heun"),
        sigma_min=getattr(args, "sigma_min", None),
        sigma_max=getattr(args, "sigma_max", None),
        sigma_data=sigma_data,
    )
    if args.sampler == "heun":  # one line now, not the sampler's Python warning later
        message = heun_warning(schedule, **{k: v for k, v in (given | grid).items() if k in HEUN_GRID_ARGS})
        if message:
            print(
                f"ddkit: warning: {message.replace('sampler dpm++ with steps', '--sampler dpm++ --steps')}",
                file=sys.stderr,
            )
            warnings.filterwarnings("ignore", category=PoorGridWarning)
    return given | grid


HEUN_GRID_ARGS = ("steps", "spacing", "timesteps", "sigmas")


def _default_steps(spec) -> int:
    return int(inspect.signature(spec.fn).parameters["steps"].default)


def sampling_precision(args, model) -> str:
    """``--precision`` resolved (auto: as training decides, said on stderr); fp16 needs cuda."""
    precision, why = resolve_precision(getattr(args, "precision", "fp32"), args.device, model)
    if args.precision == "auto":
        print(f"ddkit: precision auto -> {precision} ({why})", file=sys.stderr)
    if precision == "fp16" and torch.device(args.device).type != "cuda":
        raise UsageError("--precision fp16 needs --device cuda (on the CPU use bf16)")
    return precision


def check_counts(args) -> None:
    if args.num < 1 or args.batch_size < 1:
        raise UsageError("--num and --batch-size must be positive")
    if args.seed < 0:
        raise UsageError(f"--seed must be >= 0, got {args.seed}")


def sample_labels(args, config: RunConfig) -> torch.Tensor | None:
    """Labels [num]: ``--label K``, or 0, 1, …, K-1, 0, … (``--labels all``, the default) for a
    class-conditional run or with a ``--classifier``; None otherwise."""
    cycle = guidance_labels(args, config)
    return None if cycle is None else cycle(0, args.num)


def model_fn_for(args, model, schedule: Schedule, config: RunConfig) -> ModelFnFor:
    """``y ↦ model_fn`` for the sampler: the network with the labels bound, wrapped in the guidance
    the options ask for (cli/guidance_options.py)."""
    return guided_model_fn_for(args, model, schedule, config)


@dataclass
class Plan:
    """What ``draw`` will do, prepared (and every option checked) before any sample is drawn: the
    ε-network, the sampler options, the labels and the ``y ↦ model_fn`` with the guidance."""

    model: torch.nn.Module
    schedule: Schedule
    options: dict
    labels: LabelCycle | None  # (start, stop) -> LongTensor
    model_fn_for: ModelFnFor
    is_image: bool
    shape: tuple[int, ...]


def plan(args, model, schedule: Schedule, config: RunConfig) -> Plan:
    """Check the sampling options against the run and load what guides it. A network trained to
    predict x0, v or EDM's F is converted to ε first (:meth:`DiffusionConfig.eps_network`), so every
    sampler and guidance wrapper sees ε."""

    model = config.diffusion.eps_network(model, schedule)
    options = sampler_options(args, schedule, config.diffusion.sigma_data)
    model = autocast_network(model, sampling_precision(args, model), args.device)
    labels = guidance_labels(args, config)
    fn_for = model_fn_for(args, model, schedule, config)
    return Plan(model, schedule, options, labels, fn_for, hasattr(config.model, "image_size"), sample_shape(model))


def batches(args, p: Plan, step_callback=None):
    """Yield (start, x [n, ...] float32) batch by batch, as the options say (``step_callback(start,
    step_info)``: see :func:`ddkit.generate.generate_batches`)."""
    yield from generate_batches(
        p.model,
        p.schedule,
        args.num,
        sampler=args.sampler,
        batch_size=args.batch_size,
        seed=args.seed,
        labels=p.labels,
        model_fn_for=p.model_fn_for,
        clip_x0=(-1.0, 1.0) if p.is_image else None,
        device=args.device,
        progress=args.progress,
        step_callback=step_callback,
        **p.options,
    )


@dataclass
class Drawn:
    """Samples as the sampler returned them (float32 [N, ...] in [-1, 1] for images) and their labels."""

    x: torch.Tensor
    labels: torch.Tensor | None
    is_image: bool


def draw(args, model, schedule: Schedule, config: RunConfig) -> Drawn:
    """Draw ``args.num`` samples as the sampling options say, all in memory (``ddkit eval``; ``ddkit
    sample`` streams them to disk instead)."""
    p = plan(args, model, schedule, config)
    x = torch.cat([x for _, x in batches(args, p)])
    return Drawn(x, None if p.labels is None else p.labels(0, args.num), p.is_image)
