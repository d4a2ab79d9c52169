"""Guidance options shared by ``ddkit sample``, ``ddkit eval`` and ``ddkit edit`` (through
cli/sampling.py): the flags, parsed into the library's :func:`ddkit.guidance.resolve_guidance`,
:func:`ddkit.guidance.guided_model_fn` and the loaders of the guiding networks, which decide."""

from __future__ import annotations

import argparse

from ..generate import sample_labels
from ..guidance import guided_model_fn, resolve_guidance
from ..schedule import Schedule
from ..training.config import RunConfig
from ..training.load import load_classifier, load_weak_model
from ..training.rundir import RunDir
from .common import UsageError


def add_guidance_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("labels and guidance")
    labels = g.add_mutually_exclusive_group()
    labels.add_argument("--label", type=int, metavar="K", default=None, help="every sample of class K")
    labels.add_argument(
        "--labels",
        choices=("all",),
        default=None,
        help="all: equal numbers of every class, in order 0, 1, …, K-1, 0, … (the default on class-conditional runs)",
    )
    g.add_argument(
        "--guidance-scale",
        type=float,
        metavar="W",
        default=None,
        help="classifier-free guidance scale on a class-conditional run (1: the plain conditional "
        "model, the default; 0: unconditional; the paper's w is W - 1); with --guide-with, the "
        "autoguidance weight",
    )
    g.add_argument(
        "--guidance-interval",
        type=int,
        nargs=2,
        metavar=("T_LO", "T_HI"),
        default=None,
        help="classifier-free guidance only at training timesteps T_LO <= t <= T_HI (plain "
        "conditional elsewhere; Kynkäänniemi et al. 2024)",
    )
    g.add_argument(
        "--guidance-rescale",
        type=float,
        metavar="PHI",
        default=None,
        help="rescale the guided ε toward the conditional one's std, blended by PHI in [0, 1] "
        "(Lin et al. 2023; default 0)",
    )
    g.add_argument(
        "--classifier",
        metavar="CLS_RUN",
        default=None,
        help="classifier guidance with a run of ddkit train-classifier (same image size, channels "
        "and schedule); on unconditional and conditional runs",
    )
    g.add_argument(
        "--classifier-scale",
        type=float,
        metavar="S",
        default=None,
        help="classifier guidance scale (default 1 with --classifier)",
    )
    g.add_argument(
        "--guide-with",
        metavar="WEAK",
        default=None,
        help="autoguidance (Karras et al. 2024) by a weaker model: RUN/checkpoints/step-N of the same "
        "run, or another run folder with the same data shape and schedule; weight --guidance-scale",
    )


def _num_classes(config: RunConfig) -> int | None:
    return getattr(config.model, "num_classes", None)


def _classifier_classes(args) -> int | None:
    if args.classifier is None:
        return None
    config = RunConfig.load(RunDir(args.classifier).config)
    if type(config.model).__name__ != "ClassifierConfig":
        raise UsageError(f"--classifier {args.classifier} is not a classifier run (made by ddkit train-classifier)")
    return config.model.num_classes


def guidance_labels(args, config: RunConfig):
    """The labels by sample index (a :class:`ddkit.generate.LabelCycle`): ``--label K`` for all, else
    0, 1, …, K-1, 0, … when the run or the classifier has classes (K from the run, else from the
    classifier); None otherwise."""
    k_run, k_cls = _num_classes(config), _classifier_classes(args)
    if k_run is not None and k_cls is not None and k_run != k_cls:
        raise UsageError(f"--classifier has {k_cls} classes but the run has {k_run}")
    k = k_run if k_run is not None else k_cls
    if k is None and (args.label is not None or args.labels is not None):
        raise UsageError("--label/--labels need a class-conditional run or a --classifier; this run has no labels")
    return sample_labels(k, args.label)


def guided_model_fn_for(args, model, schedule: Schedule, config: RunConfig):
    """``y ↦ model_fn``: the network (ε) with labels bound and the guidance the options ask for."""
    settings = resolve_guidance(
        conditional=_num_classes(config) is not None,
        num_timesteps=schedule.num_timesteps,
        guidance_scale=args.guidance_scale,
        classifier=args.classifier is not None,
        classifier_scale=args.classifier_scale,
        weak=args.guide_with is not None,
        interval=args.guidance_interval,
        guidance_rescale=args.guidance_rescale,
    )
    weak = classifier = None
    if settings.auto_scale is not None:
        weak = load_weak_model(
            args.guide_with,
            config,
            schedule,
            ema=not args.no_ema,
            device=args.device,
            what=f"--guide-with {args.guide_with}",
        )
    if settings.classifier_scale:
        classifier, _ = load_classifier(
            args.classifier, config, schedule, device=args.device, what=f"--classifier {args.classifier}"
        )
    return lambda y: guided_model_fn(model, y, settings, schedule=schedule, weak=weak, classifier=classifier)
