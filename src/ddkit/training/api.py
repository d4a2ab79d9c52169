"""``ddkit.train(...)``: training from Python with the options, defaults and decisions of ``ddkit train``.

Every option of ``ddkit train`` is a keyword here with the same name (``--batch-size`` is
``batch_size``) and the same default: both read the option fields of the config dataclasses
(:data:`TRAIN_SECTIONS`; help, flag and resume rule in each field's metadata, :mod:`ddkit.options`),
listed in :data:`TRAIN_OPTIONS`. Every decision of ``ddkit train`` is made here, not in the command line:

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
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..checks import ParameterError
from ..data import Dataset, load_data, load_run_data
from ..nn import ClassifierConfig, default_model_config
from ..options import OptionSpec, field_default, option, option_fields, option_name
from .augment import check_ops, default_ops, label_dim
from .config import DataConfig, DiffusionConfig, RunConfig, TrainConfig, budget, with_budget
from .distributed import DistContext, check_divisible_batch, fit_batch, init_distributed, shutdown_distributed
from .load import is_classifier
from .objectives import ClassifierObjective, split_heldout
from .rundir import RunDir
from .trainer import Trainer


@dataclass(frozen=True)
class RunOptions:
    """The options of ``ddkit train`` / :func:`train` that are not saved in config.json: where and how
    this process runs."""

    out: str = option("runs/digits", "run folder (default {default})")
    resume: bool = option(
        False,
        "continue from the newest complete checkpoint in out, or start there from scratch when it has none; "
        "may extend steps/minutes, refuses options that contradict its config.json (automatic under torchrun "
        "after a restart)",
        switch=True,
    )
    dist_timeout: float = option(
        1800.0,
        "under torchrun: how long a process waits for the others to join the group and in each collective "
        "before it fails, so that torchrun can restart the group (default {default:g})",
        metavar="SECONDS",
    )


@dataclass(frozen=True)
class ModelOptions:
    """The options of ``ddkit train`` that size the network (:func:`ddkit.nn.default_model_config`
    chooses the rest for the data set)."""

    model_channels: int | None = option(None, "UNet base channels (default 32) or MLP width (default 256)")
    dropout: float | None = option(None, "UNet dropout (default 0: measured best for short runs on the digits)")


# config section → the dataclass whose option fields are ``ddkit train``'s options, in --help's order
TRAIN_SECTIONS = {
    "run": RunOptions,
    "data": DataConfig,
    "train": TrainConfig,
    "model": ModelOptions,
    "diffusion": DiffusionConfig,
}


@dataclass(frozen=True)
class Option:
    """One option of ``ddkit train`` / :func:`train`, read from its field: the keyword ``name``,
    where it goes (``section``: model, diffusion, data, train, or run for what is not saved), its
    default as a keyword (None: not given, the config's default applies) and its spec."""

    name: str
    section: str
    default: Any
    spec: OptionSpec


TRAIN_OPTIONS: tuple[Option, ...] = tuple(
    Option(option_name(f, spec), section, field_default(f) if section == "run" else None, spec)
    for section, cls in TRAIN_SECTIONS.items()
    for f, spec in option_fields(cls)
)
"""Every option of ``ddkit train`` and :func:`train`, read from the fields of :data:`TRAIN_SECTIONS`."""
OPTIONS_BY_NAME = {o.name: o for o in TRAIN_OPTIONS}

RESUME_MAY_CHANGE = tuple(o.name for o in TRAIN_OPTIONS if o.spec.resume)
"""What ``resume`` may change (the fields marked ``resume=True``): the budget and bookkeeping, nothing
that changes the mathematics (precision and device change the arithmetic but not the run's
definition, so they may change too). Evaluation runs on its own generators and never changes the
weights, so its cadence (``eval_every``) and ``early_stop`` (a budget) may change; ``val`` and
``val_seed`` may not (they choose the training images), nor ``eval_num`` and ``select`` (the best
checkpoint so far was chosen by them). The augmentation, the preconditioning, ``sigma_data`` and the
noise levels define the run and may not."""


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
    train = budget(_section(options, "train"))
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
        **asdict(saved.train),
        **asdict(saved.diffusion),
        **asdict(saved.data),
        "data": saved.data.source,
        "model_channels": getattr(m, "base_channels", getattr(m, "hidden", None)),
        "dropout": getattr(m, "dropout", None),
    }
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in given.items()}
    conflicts = [(k, v, current.get(k)) for k, v in given.items() if k not in RESUME_MAY_CHANGE and v != current.get(k)]
    if conflicts:
        raise ResumeConflict(config_path, conflicts)
    return with_budget(saved, given, RESUME_MAY_CHANGE)


def run_config(options: dict, *, resume: bool = False) -> tuple[RunConfig, Dataset | None]:
    """The config :func:`train` would train with (and, for a new run, its data set; None on resume)."""
    out = RunDir(options.get("out") or OPTIONS_BY_NAME["out"].default)
    if resume and out.config.exists():
        return resume_run_config(RunConfig.load(out.config), options, out.config), None
    return new_run_config(options)


@contextmanager
def process_group(device: str | None, timeout_s: float, dist: DistContext | None = None):
    """The :class:`DistContext` for the body: the process group under torchrun (on ``device``),
    started here and ended on the way out unless ``dist`` is given (then nothing is started)."""
    if not (isinstance(timeout_s, (int, float)) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ParameterError(f"`dist_timeout` must be a positive number of seconds, got {timeout_s}")
    if dist is not None:
        yield dist
        return
    dist, _ = init_distributed(device or "cpu", timeout_s)  # cuda: this process's GPU is made current
    try:
        yield dist
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
        data = data if isinstance(data, Dataset) else None
        return _run_trainer(
            config, Path(out), dist or DistContext(), resume=resume, progress=progress, data=data, objective=objective
        )
    options = {**options, "out": out if out is not None else options.get("out"), "data": data}
    options = {k: v for k, v in options.items() if v is not None}
    _check_names(options)
    timeout = options.pop("dist_timeout", OPTIONS_BY_NAME["dist_timeout"].default)
    with process_group(options.get("device"), timeout, dist) as dist:
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


@dataclass(frozen=True)
class ClassifierOptions:
    """The options of ``ddkit train-classifier`` that are not fields of the config dataclasses (the
    others: :data:`CLASSIFIER_SECTIONS`)."""

    out: str = option("runs/classifier", "run folder (default {default})")
    like: str | None = option(
        None, "take the schedule (and T) from this diffusion run, the one the classifier will guide", metavar="RUN"
    )
    model_channels: int = option(32, "base channels of the trunk (default {default})")
    num_res_blocks: int = option(1, "residual blocks per level (default {default})")
    dropout: float = option(0.0, "dropout in the residual blocks (default {default})")
    resume: bool = option(False, "continue from the newest checkpoint in --out", switch=True)


# the config fields that are options of ddkit train-classifier, by section
CLASSIFIER_SECTIONS = {
    DataConfig: ("data", "image_size", "channels"),
    DiffusionConfig: ("schedule", "num_timesteps"),
    TrainConfig: (
        "steps",
        "minutes",
        "batch_size",
        "lr",
        "warmup",
        "ema_decay",
        "ckpt_every",
        "ckpt_minutes",
        "sample_every",
        "log_every",
        "keep_checkpoints",
        "seed",
        "device",
        "precision",
    ),
}
# where the classifier's options mean something else than a diffusion run's
CLASSIFIER_HELP = {
    "data": "labelled data: digits:train (default), digits, or a folder of images in class sub-folders",
    "schedule": "noise schedule (default cosine; must match the diffusion run it guides)",
    "sample_every": "held-out accuracy in log.jsonl every N steps (default {default})",
}


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
    probe = _labelled_images(load_data(data or "digits:train", image_size=image_size, channels=channels))
    if like is not None:
        if schedule is not None or num_timesteps is not None:
            raise ParameterError("`like` takes the schedule from the run; drop `schedule`/`num_timesteps`")
        diffusion = RunConfig.load(RunDir(like).config).diffusion
    else:
        diffusion = DiffusionConfig(
            **{k: v for k, v in (("schedule", schedule), ("num_timesteps", num_timesteps)) if v is not None}
        )
    trunk = default_model_config("image", tuple(probe.x.shape[1:]), channels=model_channels, dropout=dropout)
    own = {"num_classes": probe.num_classes, "num_res_blocks": num_res_blocks, "dropout": dropout}
    model = ClassifierConfig(**{f.name: own.get(f.name, getattr(trunk, f.name)) for f in fields(ClassifierConfig)})
    given = budget({k: v for k, v in train_options.items() if v is not None})
    return RunConfig(
        model=model,
        diffusion=diffusion,
        data=DataConfig(source=data or "digits:train", image_size=image_size, channels=channels),
        train=TrainConfig(**{**CLASSIFIER_DEFAULTS, **given}),
    )


def classifier_data(config: RunConfig) -> tuple[Dataset, Dataset]:
    """(training data, held-out data) of a classifier run: digits:test for digits:train, else a
    fixed 10 % slice of the data (:func:`~ddkit.training.objectives.split_heldout`)."""
    data = _labelled_images(load_run_data(config.data, config.train.seed))
    if config.data.source == "digits:train":
        return data, load_data("digits:test", image_size=config.data.image_size, channels=config.data.channels)
    return split_heldout(data, CLASSIFIER_HELDOUT_FRACTION, seed=config.train.seed)


def _labelled_images(data: Dataset) -> Dataset:
    """``data``, or a ValueError when it is not labelled images (a classifier's training data)."""
    if data.kind != "image" or data.y is None:
        raise ValueError(
            f"train-classifier needs labelled images; {data.source} has "
            + ("no labels (use class sub-folders)" if data.kind == "image" else "2-D points")
        )
    return data


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
    and bookkeeping (:data:`RESUME_MAY_CHANGE`)."""

    with process_group(options.get("device"), dist_timeout, dist) as dist:
        resume = resume or dist.restart_count > 0
        saved = RunDir(out).config
        if resume and saved.exists():
            config = RunConfig.load(saved)
            if not is_classifier(config):
                raise ParameterError(f"`resume`: {out} is not a classifier run")
            config = with_budget(config, options, RESUME_MAY_CHANGE)
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
