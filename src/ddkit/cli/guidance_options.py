"""Guidance options shared by ``ddkit sample`` and ``ddkit eval`` (through cli/sampling.py): which
labels, classifier-free guidance, classifier guidance and autoguidance, composed into the
``y ↦ model_fn`` that :func:`ddkit.generate.generate` calls per batch.

Composition, innermost first: the network with the labels bound (classifier-free guidance with
``--guidance-scale`` on a class-conditional run; or autoguidance by ``--guide-with``, where
``--guidance-scale`` is the autoguidance weight), then classifier guidance (``--classifier``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import RunConfig
from ..guidance import autoguidance, classifier_free_guidance, classifier_guidance, network_num_classes
from ..parameterization import eps_network
from ..schedule import Schedule
from .common import UsageError


def add_guidance_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("labels and guidance")
    labels = g.add_mutually_exclusive_group()
    labels.add_argument("--label", type=int, metavar="K", default=None, help="every sample of class K")
    labels.add_argument("--labels", choices=("all",), default=None,
                        help="all: equal numbers of every class, in order 0, 1, …, K-1, 0, … (the default on "
                             "class-conditional runs)")
    g.add_argument("--guidance-scale", type=float, metavar="W", default=None,
                   help="classifier-free guidance scale on a class-conditional run (1: the plain conditional "
                        "model, the default; 0: unconditional; the paper's w is W - 1); with --guide-with, the "
                        "autoguidance weight")
    g.add_argument("--guidance-interval", type=int, nargs=2, metavar=("T_LO", "T_HI"), default=None,
                   help="classifier-free guidance only at training timesteps T_LO <= t <= T_HI (plain "
                        "conditional elsewhere; Kynkäänniemi et al. 2024)")
    g.add_argument("--guidance-rescale", type=float, metavar="PHI", default=None,
                   help="rescale the guided ε toward the conditional one's std, blended by PHI in [0, 1] "
                        "(Lin et al. 2023; default 0)")
    g.add_argument("--classifier", metavar="CLS_RUN", default=None,
                   help="classifier guidance with a run of ddkit train-classifier (same image size, channels "
                        "and schedule); on unconditional and conditional runs")
    g.add_argument("--classifier-scale", type=float, metavar="S", default=None,
                   help="classifier guidance scale (default 1 with --classifier)")
    g.add_argument("--guide-with", metavar="WEAK", default=None,
                   help="autoguidance (Karras et al. 2024) by a weaker model: RUN/checkpoints/step-N of the same "
                        "run, or another run folder with the same data shape and schedule; weight --guidance-scale")


def _num_classes(config: RunConfig) -> int | None:
    return getattr(config.model, "num_classes", None)


def _classifier_config(args) -> RunConfig | None:
    if args.classifier is None:
        return None
    config = RunConfig.load(Path(args.classifier) / "config.json")
    if type(config.model).__name__ != "ClassifierConfig":
        raise UsageError(f"--classifier {args.classifier} is not a classifier run (made by ddkit train-classifier)")
    return config


def guidance_labels(args, config: RunConfig) -> torch.Tensor | None:
    """Labels [num]: ``--label K`` for all, else 0, 1, …, K-1, 0, … when the run or the classifier
    has classes (K from the run, else from the classifier), else None."""
    cls = _classifier_config(args)
    k_run, k_cls = _num_classes(config), None if cls is None else cls.model.num_classes
    if k_run is not None and k_cls is not None and k_run != k_cls:
        raise UsageError(f"--classifier has {k_cls} classes but the run has {k_run}")
    k = k_run if k_run is not None else k_cls
    if k is None:
        if args.label is not None or args.labels is not None:
            raise UsageError("--label/--labels need a class-conditional run or a --classifier; this run has no labels")
        return None
    if args.label is not None:
        if not 0 <= args.label < k:
            raise UsageError(f"--label must be in [0, {k - 1}], got {args.label}")
        return torch.full((args.num,), args.label, dtype=torch.long)
    return torch.arange(args.num) % k


@dataclass(frozen=True)
class GuidanceSettings:
    cfg_scale: float | None  # classifier-free guidance scale (None: no CFG)
    auto_scale: float | None  # autoguidance weight (None: no weak model)
    classifier_scale: float  # 0: no classifier guidance
    interval: tuple[int, int] | None
    rescale: float


def _nonnegative(name: str, value: float) -> float:
    if not value >= 0 or value == float("inf"):
        raise UsageError(f"{name} must be a finite number >= 0, got {value}")
    return value


def guidance_settings(args, config: RunConfig, schedule: Schedule) -> GuidanceSettings:
    """Check the guidance options against the run (one-line errors) and say which guidance applies."""
    cond = _num_classes(config) is not None
    w = _nonnegative("--guidance-scale", 1.0 if args.guidance_scale is None else args.guidance_scale)
    s = None if args.classifier_scale is None else _nonnegative("--classifier-scale", args.classifier_scale)
    if s is not None and args.classifier is None:
        raise UsageError("--classifier-scale needs --classifier CLS_RUN")
    cfg = auto = None
    if args.guide_with is not None:
        auto = w
    elif cond:
        cfg = w
    elif args.classifier is not None and s is None:
        s, w = w, 1.0  # an unconditional run guided by a classifier: --guidance-scale is its scale
    elif w != 1.0:
        raise UsageError(f"--guidance-scale {w:g} needs labels: this run is unconditional; use a class-conditional "
                         "run, --classifier CLS_RUN or --guide-with WEAK")
    interval = None
    if args.guidance_interval is not None:
        lo, hi = args.guidance_interval
        last = schedule.num_timesteps - 1
        if not 0 <= lo <= hi <= last:
            raise UsageError(f"--guidance-interval must satisfy 0 <= T_LO <= T_HI <= {last}, got {lo} {hi}")
        interval = (lo, hi)
    rescale = 0.0 if args.guidance_rescale is None else args.guidance_rescale
    if not 0.0 <= rescale <= 1.0:
        raise UsageError(f"--guidance-rescale must be in [0, 1], got {rescale}")
    if cfg is None and (interval is not None or rescale):
        raise UsageError("--guidance-interval/--guidance-rescale apply to classifier-free guidance: they need "
                         "a class-conditional run without --guide-with")
    return GuidanceSettings(cfg, auto, 0.0 if args.classifier is None else (1.0 if s is None else s), interval, rescale)


def _check_same_shape(what: str, other: RunConfig, other_schedule: Schedule, config: RunConfig,
                      schedule: Schedule) -> None:
    m, o = config.model, other.model
    for name, label in (("image_size", "image size"), ("in_channels", "channel count")):
        if getattr(o, name, None) != getattr(m, name, None):
            raise UsageError(f"{what} has {label} {getattr(o, name, None)} but the run has {getattr(m, name, None)}")
    if other_schedule.num_timesteps != schedule.num_timesteps or not torch.allclose(
            other_schedule.alpha_bars, schedule.alpha_bars, rtol=0, atol=1e-12):
        raise UsageError(f"{what} was trained with another schedule ({other_schedule!r}) than the run ({schedule!r})")


def _load_weak(args, config: RunConfig, schedule: Schedule):
    """The --guide-with network as an ε-network (run folder, or RUN/checkpoints/step-N)."""
    from ..runs import load

    path = Path(args.guide_with)
    if (path / "config.json").is_file():
        run, ckpt = path, None
    elif path.is_dir() and path.parent.name == "checkpoints" and (path.parent.parent / "config.json").is_file():
        run, ckpt = path.parent.parent, path
    else:
        raise UsageError(f"--guide-with {path}: not a run folder nor a checkpoint folder RUN/checkpoints/step-N")
    weak, weak_schedule, weak_config = load(run, checkpoint=ckpt, ema=not args.no_ema, device=args.device)
    if type(weak_config.model).__name__ == "ClassifierConfig":
        raise UsageError(f"--guide-with {path} is a classifier run; use --classifier for it")
    _check_same_shape(f"--guide-with {path}", weak_config, weak_schedule, config, schedule)
    return eps_network(weak, weak_config.diffusion.prediction, weak_schedule)


def _load_classifier(args, config: RunConfig, schedule: Schedule):
    from ..runs import load

    classifier, cls_schedule, cls_config = load(args.classifier, device=args.device)
    _check_same_shape(f"--classifier {args.classifier}", cls_config, cls_schedule, config, schedule)
    return classifier


def guided_model_fn_for(args, model, schedule: Schedule, config: RunConfig):
    """``y ↦ model_fn``: the network (ε) with labels bound and the guidance the options ask for."""
    settings = guidance_settings(args, config, schedule)
    cond = _num_classes(config) is not None
    weak = None if settings.auto_scale is None else _load_weak(args, config, schedule)
    classifier = None if settings.classifier_scale == 0 else _load_classifier(args, config, schedule)

    def model_fn_for(y):
        if settings.cfg_scale is not None:
            base = classifier_free_guidance(model, y, settings.cfg_scale, interval=settings.interval,
                                            rescale=settings.rescale)
        else:
            base = (lambda x, t: model(x, t, y)) if cond else (lambda x, t: model(x, t))
        if weak is not None:
            weak_y = y if cond and network_num_classes(weak) is not None else None
            weak_fn = (lambda x, t: weak(x, t, weak_y)) if weak_y is not None else (lambda x, t: weak(x, t))
            base = autoguidance(base, weak_fn, settings.auto_scale)
        if classifier is not None:
            base = classifier_guidance(base, classifier, y, settings.classifier_scale, schedule)
        return base

    return model_fn_for
