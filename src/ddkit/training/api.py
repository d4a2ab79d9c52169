"""``ddkit.train(...)``: training from Python with the options, defaults and decisions of ``ddkit train``.

Every option of ``ddkit train`` is a keyword here with the same name (``--batch-size`` is
``batch_size``) and the same default: :data:`TRAIN_OPTIONS` is the one table both read, and the CLI
builds its parser from it. Every decision of ``ddkit train`` is made here, not in the command line:

- the network for the data set (:func:`ddkit.nn.default_model_config`), with an augmentation layer
  as wide as the labels of the augmentation's operations;
- the augmentation's operations for the data set (:func:`~.augment.default_ops`: the digits every
  one but xflip, a folder all);
- the batch cut to a data set smaller than the default batch (:func:`~.distributed.fit_batch`);
- what ``resume`` may change (:data:`RESUME_MAY_CHANGE`; other options that contradict the run's
  config.json are a :class:`ResumeConflict`);
- the process group under torchrun (:func:`~.distributed.init_distributed`), and resuming by
  itself after torchrun restarted the group.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..checks import ParameterError
from ..data import Dataset, load_data, load_run_data
from ..losses import NOISE_LEVELS, P_MEAN, P_STD, WEIGHTINGS
from ..nn import ClassifierConfig, default_model_config
from ..parameterization import PRECONDITIONINGS, PREDICTIONS
from ..schedule import SCHEDULES
from .augment import OPS, check_ops, default_ops, label_dim
from .config import (
    DEFAULT_EVAL_EVERY,
    DEVICES,
    LOGGERS,
    PRECISIONS,
    SELECT,
    DataConfig,
    DiffusionConfig,
    RunConfig,
    TrainConfig,
)
from .distributed import DistContext, check_divisible_batch, fit_batch, init_distributed, shutdown_distributed
from .objectives import ClassifierObjective, split_heldout
from .rundir import RunDir
from .trainer import Trainer

_T = TrainConfig()


def count_or_fraction(text: str) -> int | float:
    """``val`` on the command line: "200" is a number of images (int), "0.15" a fraction (float)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def comma_list(text: str) -> tuple[str, ...]:
    """A comma-separated list on the command line (``--augment-ops translate,scale``)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Option:
    """One option of ``ddkit train`` / :func:`train`: the keyword ``name`` (``--name-with-dashes`` on
    the command line), where it goes in the config (``section``: model, diffusion, data, train, or
    run for what is not saved), its type, default and help."""

    name: str
    section: str
    type: Any = None
    default: Any = None
    help: str = ""
    choices: tuple | None = None
    metavar: str | None = None
    flag: bool = False  # a switch (store_true)
    repeat: bool = False  # may be given several times (a list)
    cli_name: str | None = None  # the flag, when it is not --name-with-dashes

    @property
    def cli(self) -> str:
        return self.cli_name or "--" + self.name.replace("_", "-")


TRAIN_OPTIONS: tuple[Option, ...] = (
    # the run and its data
    Option("out", "run", str, "runs/digits", "run folder (default runs/digits)"),
    Option(
        "data",
        "data",
        str,
        None,
        "digits (default), digits:train, toy:gmm|moons|swissroll|circles, or a folder of images",
    ),
    Option(
        "image_size", "data", int, None, "image folders: resize and centre-crop to this size (default 32; digits: 8)"
    ),
    Option("channels", "data", int, None, "image folders: 1 (grey) or 3 (RGB, default)", choices=(1, 3)),
    Option("toy_size", "data", int, None, "toy data: the number of points drawn (default 20000)"),
    Option(
        "holdout",
        "data",
        float,
        None,
        "image folders: hold this fraction of the images out (a fixed split "
        "drawn with holdout_seed, recorded in config.json); never trained on, the default reference of "
        "ddkit eval (default 0; the digits have digits:train/digits:test instead; on digits:train it "
        "carves a second held-out part, to judge model selection without touching digits:test)",
        metavar="FRACTION",
    ),
    Option("holdout_seed", "data", int, None, "seed of the holdout split (default 0)"),
    # the validation part and evaluation during training (training.validation)
    Option(
        "val",
        "data",
        count_or_fraction,
        None,
        "carve a validation part out of the training data (digits:train's 1,297, or what --holdout leaves): "
        "N images or a FRACTION, drawn with val_seed, recorded in config.json, never trained on; it is "
        f"evaluated every eval_every steps (default {DEFAULT_EVAL_EVERY}) and selects RUN/checkpoints/best",
        metavar="N|FRACTION",
    ),
    Option("val_seed", "data", int, None, "seed of the validation split (default 0)"),
    Option(
        "eval_every",
        "train",
        int,
        None,
        f"evaluate the EMA weights on the val part every N steps (default {DEFAULT_EVAL_EVERY} with --val): "
        "FID/KID against it, memorisation (closer), the val/train loss gap; to log.jsonl, RUN/val.png, TensorBoard",
        metavar="N",
    ),
    Option(
        "eval_num",
        "train",
        int,
        None,
        f"samples per evaluation (DPM-Solver++, 10 steps, fixed start noise; default {_T.eval_num})",
    ),
    Option(
        "select",
        "train",
        str,
        None,
        "what chooses RUN/checkpoints/best: the lowest val fid (default), kid or loss, or fid-fresh: the "
        "lowest fid among the evaluations whose closer (memorisation) is at most select_closer, else the "
        "lowest closer",
        choices=SELECT,
    ),
    Option(
        "select_closer",
        "train",
        float,
        None,
        f"fid-fresh's threshold on closer, the share of samples nearer a training image than the val images "
        f"are (default {_T.select_closer}; fresh samples 0.5)",
        metavar="SHARE",
    ),
    Option(
        "early_stop",
        "train",
        int,
        None,
        "stop after K evaluations without a better select score (writes the final checkpoint; needs --val)",
        metavar="K",
    ),
    # the budget and the optimiser
    Option("steps", "train", int, None, f"optimizer steps (default {_T.steps} when minutes is not given)"),
    Option("minutes", "train", float, None, "wall-clock budget; with steps, whichever ends first"),
    Option(
        "batch_size",
        "train",
        int,
        None,
        f"global batch size, split over processes (default {_T.batch_size}, or the data set's size if smaller)",
    ),
    Option("lr", "train", float, None, f"peak AdamW learning rate (default {_T.lr})"),
    Option("warmup", "train", int, None, f"linear warm-up steps (default {_T.warmup})"),
    Option("weight_decay", "train", float, None, f"AdamW weight decay (default {_T.weight_decay:g})"),
    Option("ema_decay", "train", float, None, f"EMA decay (default {_T.ema_decay})"),
    Option("grad_clip", "train", float, None, f"gradient norm clip, 0 for none (default {_T.grad_clip})"),
    # the network and the diffusion
    Option("model_channels", "model", int, None, "UNet base channels (default 32) or MLP width (default 256)"),
    Option("dropout", "model", float, None, "UNet dropout (default 0: measured best for short runs on the digits)"),
    Option(
        "schedule",
        "diffusion",
        str,
        None,
        "noise schedule: cosine (default, measured better on the digits) or linear (DDPM's)",
        choices=SCHEDULES,
    ),
    Option("num_timesteps", "diffusion", int, None, "diffusion (training) timesteps T (default 1000)"),
    Option(
        "prediction",
        "diffusion",
        str,
        None,
        "what the network predicts and the loss targets: eps (default), x0 or v = √ᾱ·ε - √(1-ᾱ)·x0",
        choices=PREDICTIONS,
    ),
    Option(
        "loss_weighting",
        "train",
        str,
        None,
        "per-timestep loss weight: uniform (the plain MSE on what the network outputs: L_simple for eps; default), "
        "min-snr (min(SNR, γ) on the x0 error, Hang et al. 2023) or edm (EDM's λ = 1/c_out², with "
        "--preconditioning edm: the same loss as uniform there)",
        choices=WEIGHTINGS,
    ),
    Option("snr_gamma", "train", float, None, f"γ of min-snr weighting (default {_T.snr_gamma:g})"),
    # EDM's training formulation (Karras et al. 2022) and non-leaking augmentation
    Option(
        "preconditioning",
        "diffusion",
        str,
        None,
        "none (default) or edm: EDM's preconditioning on this schedule (Table 1: the network F sees "
        "c_in·x̃ and c_noise = ¼ ln σ, D = c_skip·x̃ + c_out·F); sets what the network outputs, so no --prediction",
        choices=PRECONDITIONINGS,
    ),
    Option(
        "sigma_data",
        "diffusion",
        float,
        None,
        "EDM's σ_data (with --preconditioning edm; default: measured on the training data, recorded in config.json)",
    ),
    Option(
        "noise_levels",
        "train",
        str,
        None,
        "training distribution of t: uniform over the T steps (default) or lognormal "
        "(EDM's ln σ ~ N(p_mean, p_std²), carried onto the discrete t)",
        choices=NOISE_LEVELS,
    ),
    Option("p_mean", "train", float, None, f"mean of ln σ for --noise-levels lognormal (default {P_MEAN:g})"),
    Option(
        "p_std", "train", float, None, f"standard deviation of ln σ for --noise-levels lognormal (default {P_STD:g})"
    ),
    Option(
        "augment",
        "train",
        float,
        None,
        "non-leaking augmentation (EDM §5): apply each operation of --augment-ops to each image with "
        "probability P in [0, 1) (default 0: none); the network is told which it sees, samples have none",
        metavar="P",
    ),
    Option(
        "augment_ops",
        "train",
        comma_list,
        None,
        f"comma-separated operations among {','.join(OPS)} (default: all but xflip for the digits, all for a folder)",
        metavar="OPS",
    ),
    Option("class_cond", "train", bool, None, "condition on labels (with label dropout, for guidance)", flag=True),
    Option("label_dropout", "train", float, None, f"probability of the null label (default {_T.label_dropout})"),
    # bookkeeping
    Option("ckpt_every", "train", int, None, f"checkpoint every N steps (default {_T.ckpt_every})"),
    Option("sample_every", "train", int, None, f"sample grid every N steps (default {_T.sample_every})"),
    Option("log_every", "train", int, None, f"log.jsonl line every N steps (default {_T.log_every})"),
    Option(
        "keep_checkpoints",
        "train",
        int,
        None,
        f"keep the newest K checkpoints (default {_T.keep_checkpoints})",
        metavar="K",
    ),
    Option(
        "keep_steps",
        "train",
        int,
        None,
        "never prune the checkpoint of step N (repeatable; e.g. an early one to "
        "guide with: ddkit sample RUN --guide-with RUN/checkpoints/step-N)",
        metavar="N",
        repeat=True,
        cli_name="--keep-step",
    ),
    Option(
        "skip_nonfinite",
        "train",
        int,
        None,
        "skip up to K batches whose loss is NaN/inf (logged) instead of stopping at the first (default 0)",
        metavar="K",
    ),
    Option("seed", "train", int, None, f"random seed (default {_T.seed})"),
    Option("device", "train", str, None, "cpu (default) or cuda", choices=DEVICES),
    Option(
        "precision",
        "train",
        str,
        None,
        "auto (default: bf16 where the hardware has it and it measurably "
        "helps, else fp32; the log says which), fp32, bf16, or fp16 (cuda, with grad scaling)",
        choices=PRECISIONS,
    ),
    Option(
        "log_to",
        "train",
        str,
        None,
        "also log loss, lr, images/s, sample grids and metrics to TensorBoard "
        "event files in RUN/tensorboard (needs pip install ddkit[tensorboard]); default none",
        choices=LOGGERS,
    ),
    # how this process runs
    Option(
        "resume",
        "run",
        bool,
        False,
        "continue from the newest complete checkpoint in out, or start there from "
        "scratch when it has none; may extend steps/minutes, refuses options that contradict its config.json "
        "(automatic under torchrun after a restart)",
        flag=True,
    ),
    Option(
        "dist_timeout",
        "run",
        float,
        1800.0,
        "under torchrun: how long a process waits for the others to join "
        "the group and in each collective before it fails, so that torchrun can restart the group "
        "(default 1800)",
        metavar="SECONDS",
    ),
)
"""Every option of ``ddkit train`` and :func:`train`, in the order ``ddkit train --help`` shows them."""
OPTIONS_BY_NAME = {o.name: o for o in TRAIN_OPTIONS}

RESUME_MAY_CHANGE = (
    "steps",
    "minutes",
    "device",
    "precision",
    "ckpt_every",
    "sample_every",
    "log_every",
    "keep_checkpoints",
    "skip_nonfinite",
    "keep_steps",
    "log_to",
    "eval_every",
    "early_stop",
)
"""What ``resume`` may change: the budget and bookkeeping, nothing that changes the mathematics
(precision and device change the arithmetic but not the run's definition, so they may change too).
Evaluation runs on its own generators and never changes the weights, so its cadence (``eval_every``)
and ``early_stop`` (a budget) may change; ``val`` and ``val_seed`` may not (they choose the training
images), nor ``eval_num``, ``select`` and ``select_closer`` (the best checkpoint so far was chosen by them). The
augmentation, the preconditioning, ``sigma_data`` and the noise levels define the run and may not."""


class ResumeConflict(ParameterError):
    """Options given with ``resume`` that contradict the run's config.json: ``conflicts`` holds
    (option name, given value, the run's value)."""

    def __init__(self, config_path: Path, conflicts: list[tuple[str, Any, Any]]):
        self.config_path, self.conflicts = config_path, conflicts
        listed = "; ".join(f"`{k}` {v} (the run has {old})" for k, v, old in conflicts)
        super().__init__(
            f"`resume`: options contradict {config_path}: {listed}; drop them "
            "(only `steps`, `minutes` and bookkeeping options may change)"
        )


def _check_names(options: dict) -> None:
    unknown = sorted(set(options) - set(OPTIONS_BY_NAME))
    if unknown:
        raise TypeError(f"unknown training option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS_BY_NAME)}")


def _section(options: dict, section: str) -> dict:
    return {k: v for k, v in options.items() if v is not None and OPTIONS_BY_NAME[k].section == section}


def new_run_config(options: dict) -> tuple[RunConfig, Dataset]:
    """A new run's config from :func:`train`'s options (None = the default), and the data set it
    was sized from: the default network for the data, the batch cut to a smaller data set."""
    _check_names(options)
    train = _section(options, "train")
    if options.get("minutes") is not None and options.get("steps") is None:
        train["steps"] = None
    check_formulation_options(options)
    train_cfg = TrainConfig(**train)
    diff_cfg = DiffusionConfig(**_section(options, "diffusion"))
    data = _section(options, "data")
    data["source"] = data.pop("data", "digits")
    data_cfg = DataConfig(**data)
    if train_cfg.augment > 0 and train_cfg.augment_ops is None:
        train_cfg = replace(train_cfg, augment_ops=default_ops(data_cfg.source))
    dataset = load_run_data(data_cfg, train_cfg.seed)
    num_classes = dataset.num_classes if train_cfg.class_cond else None
    model_cfg = default_model_config(
        dataset.kind,
        tuple(dataset.x.shape[1:]),
        channels=options.get("model_channels"),
        dropout=options.get("dropout"),
        num_classes=num_classes,
        augment_dim=label_dim(train_cfg.augment_ops) if train_cfg.augment > 0 else 0,
    )
    return RunConfig(model=model_cfg, diffusion=diff_cfg, data=data_cfg, train=train_cfg), dataset


def check_formulation_options(options: dict) -> None:
    """Options given together that contradict each other (None = not given): EDM's preconditioning
    sets what the network outputs, so it takes no `prediction`; `p_mean`/`p_std` shape the log-normal
    noise levels only."""
    if options.get("preconditioning") == "edm" and options.get("prediction") is not None:
        raise ParameterError(
            f"`preconditioning` edm contradicts `prediction` {options['prediction']}: EDM's preconditioning sets "
            "what the network outputs (F, with D = c_skip·x̃ + c_out·F); drop `prediction`"
        )
    for name in ("p_mean", "p_std"):
        if options.get(name) is not None and options.get("noise_levels") != "lognormal":
            raise ParameterError(f"`{name}` shapes the log-normal noise levels: give `noise_levels` lognormal too")


def resume_run_config(saved: RunConfig, options: dict, config_path: Path) -> RunConfig:
    """The saved config with the new budget and bookkeeping; a :class:`ResumeConflict` naming every
    given option that contradicts it (architecture, data, schedule, optimiser, seed …)."""
    _check_names(options)
    given = {k: v for k, v in options.items() if v is not None and OPTIONS_BY_NAME[k].section != "run"}
    if given.get("augment_ops") is not None:
        given["augment_ops"] = check_ops(given["augment_ops"])
    m = saved.model
    current = {
        **{f.name: getattr(saved.train, f.name) for f in fields(TrainConfig)},
        **{f.name: getattr(saved.diffusion, f.name) for f in fields(DiffusionConfig)},
        **{f.name: getattr(saved.data, f.name) for f in fields(DataConfig)},
        "data": saved.data.source,
        "model_channels": getattr(m, "base_channels", getattr(m, "hidden", None)),
        "dropout": getattr(m, "dropout", None),
    }
    conflicts = [
        (k, v, current.get(k))
        for k, v in given.items()
        if k not in RESUME_MAY_CHANGE and (tuple(v) if isinstance(v, list) else v) != current.get(k)
    ]
    if conflicts:
        raise ResumeConflict(config_path, conflicts)
    budget = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items() if k in RESUME_MAY_CHANGE}
    if "minutes" in budget and "steps" not in budget:
        budget["steps"] = None  # a minutes budget alone replaces the step budget, as for a new run
    return replace(saved, train=replace(saved.train, **budget))


def run_config(options: dict, *, resume: bool = False) -> tuple[RunConfig, Dataset | None]:
    """The config :func:`train` would train with (and, for a new run, its data set; None on resume)."""
    out = RunDir(options.get("out") or OPTIONS_BY_NAME["out"].default)
    if resume and out.config.exists():
        return resume_run_config(RunConfig.load(out.config), options, out.config), None
    return new_run_config(options)


@contextmanager
def process_group(device: str | None, timeout_s: float, dist: DistContext | None = None):
    """``(dist, device)`` for the body: the process group under torchrun, started here and ended on
    the way out unless ``dist`` is given (then nothing is started)."""
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ParameterError(f"`dist_timeout` must be a positive number of seconds, got {timeout_s}")
    if dist is not None:
        yield dist, device or "cpu"
        return
    dist, device = init_distributed(device or "cpu", timeout_s)
    try:
        yield dist, device
    finally:
        shutdown_distributed(dist)


def _run_trainer(config: RunConfig, out: Path, dist: DistContext, **kwargs) -> Path:
    """Train; under torchrun a failed peer becomes one line (torchrun restarts the group, which resumes)."""
    if dist.world_size > 1:
        check_divisible_batch(config.train.batch_size, dist)
    try:
        return Trainer(config, out, dist=dist, **kwargs).run()
    except RuntimeError as e:
        if dist.world_size == 1:
            raise
        raise OSError(f"rank {dist.rank}: another process of the group failed: {str(e)[:300]}") from e


def train(
    config: RunConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    dist: DistContext | None = None,
    progress: bool | None = None,
    data: Dataset | str | None = None,
    objective=None,
    **options,
) -> Path:
    """Train a diffusion model into the run folder ``out`` and return its path.

    With keyword options, exactly as ``ddkit train`` (same names, same defaults, same config.json)::

        ddkit.train(out="runs/digits", data="digits:train", steps=1200)

    ``data`` is the data source (``"digits"``, ``"toy:moons"``, a folder …); every option of
    :data:`TRAIN_OPTIONS` is a keyword. Or with a ready :class:`RunConfig` as ``config`` (then
    ``data`` may be the already loaded :class:`~ddkit.data.Dataset` it names, and ``objective``
    another objective, as ``ddkit train-classifier`` uses).

    ``resume``: continue the newest complete checkpoint in ``out`` (or start there from scratch when
    it has none); only the budget and bookkeeping may change (:data:`RESUME_MAY_CHANGE`). Under
    torchrun (``WORLD_SIZE`` > 1) the process group is started here (``dist_timeout`` seconds) unless
    ``dist`` is given, and a restarted group resumes by itself. ``progress``: the progress bar
    (default: shown on a terminal).
    """
    if config is not None:
        if options:
            raise TypeError(f"give a RunConfig or options, not both (got {', '.join(sorted(options))})")
        if out is None:
            raise TypeError("train(config, out): the run folder is missing")
        return Trainer(
            config,
            out,
            resume=resume,
            dist=dist or DistContext(),
            progress=progress,
            data=data if isinstance(data, Dataset) else None,
            objective=objective,
        ).run()
    options = {**options, "out": out if out is not None else options.get("out"), "data": data}
    options = {k: v for k, v in options.items() if v is not None}
    _check_names(options)
    timeout = options.pop("dist_timeout", OPTIONS_BY_NAME["dist_timeout"].default)
    with process_group(options.get("device"), timeout, dist) as (dist, _):
        resume = resume or options.pop("resume", False) or dist.restart_count > 0
        config, dataset = run_config(options, resume=resume)
        if dataset is not None and options.get("batch_size") is None:
            config = fit_batch(config, len(dataset.x), dist)
        out = Path(options.get("out") or OPTIONS_BY_NAME["out"].default)
        return _run_trainer(config, out, dist, resume=resume, progress=progress, data=dataset)


# ---- the noisy classifier (ddkit train-classifier) ------------------------------------------------
# the classifier's defaults (chosen on the digits): the UNet's encoder half with one residual block
# per level, trained for 600 steps of batch 256 at lr 1e-3
CLASSIFIER_DEFAULTS = dict(steps=600, lr=1e-3, warmup=50, ckpt_every=200, sample_every=200)
CLASSIFIER_HELDOUT_FRACTION = 0.1


def classifier_run_config(
    *,
    data: str | None = None,
    like: str | Path | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    schedule: str | None = None,
    num_timesteps: int | None = None,
    model_channels: int = 32,
    num_res_blocks: int = 1,
    dropout: float = 0.0,
    **train_options,
) -> RunConfig:
    """A new classifier run's config: the UNet's encoder half sized for the data (as the diffusion
    network would be) with a pooled linear head; the schedule from ``like`` (a diffusion run) or
    ``schedule``/``num_timesteps``; training options over :data:`CLASSIFIER_DEFAULTS`."""
    probe = load_data(data or "digits:train", image_size=image_size, channels=channels)
    if probe.kind != "image" or probe.y is None:
        raise ValueError(
            f"train-classifier needs labelled images; {probe.source} has "
            + ("no labels (use class sub-folders)" if probe.kind == "image" else "2-D points")
        )
    if like is not None:
        if schedule is not None or num_timesteps is not None:
            raise ParameterError("`like` takes the schedule from the run; drop `schedule`/`num_timesteps`")
        diffusion = RunConfig.load(RunDir(like).config).diffusion
    else:
        diffusion = DiffusionConfig(
            **{k: v for k, v in (("schedule", schedule), ("num_timesteps", num_timesteps)) if v is not None}
        )
    trunk = default_model_config("image", tuple(probe.x.shape[1:]), channels=model_channels, dropout=dropout)
    model = ClassifierConfig(
        image_size=trunk.image_size,
        in_channels=trunk.in_channels,
        num_classes=probe.num_classes,
        base_channels=trunk.base_channels,
        channel_mult=trunk.channel_mult,
        num_res_blocks=num_res_blocks,
        attn_resolutions=trunk.attn_resolutions,
        dropout=dropout,
    )
    given = {k: v for k, v in train_options.items() if v is not None}
    if given.get("minutes") is not None and given.get("steps") is None:
        given["steps"] = None
    return RunConfig(
        model=model,
        diffusion=diffusion,
        data=DataConfig(source=data or "digits:train", image_size=image_size, channels=channels),
        train=TrainConfig(**{**CLASSIFIER_DEFAULTS, **given}),
    )


def classifier_data(config: RunConfig) -> tuple[Dataset, Dataset]:
    """(training data, held-out data) of a classifier run: digits:test for digits:train, else a
    fixed 10 % slice of the data (:func:`~ddkit.training.objectives.split_heldout`)."""
    data = load_run_data(config.data, config.train.seed)
    if data.kind != "image" or data.y is None:
        raise ValueError(
            f"train-classifier needs labelled images; {config.data.source} has "
            + ("no labels (use class sub-folders)" if data.kind == "image" else "2-D points")
        )
    if config.data.source == "digits:train":
        return data, load_data("digits:test", image_size=config.data.image_size, channels=config.data.channels)
    return split_heldout(data, CLASSIFIER_HELDOUT_FRACTION, seed=config.train.seed)


def train_classifier(
    out: str | Path = "runs/classifier",
    *,
    resume: bool = False,
    dist: DistContext | None = None,
    progress: bool | None = None,
    dist_timeout: float = 1800.0,
    **options,
) -> Path:
    """Train a noise-conditional classifier for classifier guidance into ``out`` (``ddkit
    train-classifier``): options of :func:`classifier_run_config`, and on ``resume`` only the budget
    and bookkeeping (steps, minutes, device, precision, ckpt_every, sample_every)."""

    with process_group(options.get("device"), dist_timeout, dist) as (dist, _):
        resume = resume or dist.restart_count > 0
        saved = RunDir(out).config
        if resume and saved.exists():
            config = RunConfig.load(saved)
            if type(config.model).__name__ != "ClassifierConfig":
                raise ParameterError(f"`resume`: {out} is not a classifier run")
            budget = {
                k: options[k]
                for k in ("steps", "minutes", "device", "precision", "ckpt_every", "sample_every")
                if options.get(k) is not None
            }
            config = replace(config, train=replace(config.train, **budget))
            fresh = False
        else:
            config, fresh = classifier_run_config(**options), True
        data, heldout = classifier_data(config)
        if fresh and options.get("batch_size") is None:
            config = fit_batch(config, len(data.x), dist)
        return _run_trainer(
            config,
            Path(out),
            dist,
            resume=resume,
            progress=progress,
            data=data,
            objective=ClassifierObjective(config, heldout),
        )
