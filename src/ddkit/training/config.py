"""Configuration: one frozen dataclass per component, defaults in one place, saved as JSON.

A run's ``config.json`` is ``RunConfig.to_dict()``: ``{"version", "model", "diffusion", "data",
"train"}``. ``version`` lets later releases load older runs. :func:`ddkit.training.api.run_config`
builds one from the options of ``ddkit train`` / :func:`ddkit.train`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import checks
from ..losses import NOISE_LEVELS, P_MEAN, P_STD, WEIGHTINGS
from ..nn import MLPConfig, UNetConfig, config_from_dict, config_to_dict
from ..parameterization import PRECONDITIONINGS, PREDICTIONS, check_terminal_snr, eps_network, target_name
from ..schedule import SCHEDULES, Schedule
from .augment import check_ops, check_probability, label_dim

CONFIG_VERSION = 2
MAX_TIMESTEPS = 100_000  # T beyond this is a typo (the schedule alone would take T·48 bytes)
MAX_SEED = 2**32 - 1
DEVICES = ("cpu", "cuda")
# "auto": bf16 where the hardware has it and it measurably helps, else fp32 (ddkit.training.precision);
# a run's config.json records the resolved choice
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
LOGGERS = ("none", "tensorboard")
# evaluation during training (training.validation): what selects the best checkpoint, and the
# cadence a validation part gets when none is given (measured at about 5 % of the default digits
# run's wall time: docs/generalisation.md)
SELECT = ("fid", "kid", "loss", "fid-fresh")  # fid-fresh: fid among evaluations with closer <= select_closer
DEFAULT_SELECT_CLOSER = 0.55
DEFAULT_EVAL_EVERY = 200
MAX_EVAL_NUM = 100_000


@dataclass(frozen=True)
class DiffusionConfig:
    """The noise schedule over T = 1000 steps: cosine (Nichol & Dhariwal; the default, measured
    better on the 8×8 digits) or DDPM's linear β from ``beta_start`` to ``beta_end``; what the
    network predicts (``prediction``: eps, the default, x0 or v; README "Choosing the defaults"), or
    EDM's preconditioning (``preconditioning`` edm, Karras et al. 2022 Table 1, on this schedule:
    the network is EDM's F and ``prediction`` stays eps, unused) with the data's standard deviation
    ``sigma_data`` (None until the trainer measures it on the training data and records it)."""

    schedule: str = "cosine"
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "eps"
    preconditioning: str = "none"
    sigma_data: float | None = None

    def __post_init__(self) -> None:
        checks.choice("schedule", self.schedule, SCHEDULES)
        checks.choice("prediction", self.prediction, PREDICTIONS)
        checks.choice("preconditioning", self.preconditioning, PRECONDITIONINGS)
        checks.integer("num_timesteps", self.num_timesteps, low=1, high=MAX_TIMESTEPS)
        if self.preconditioning == "edm" and self.prediction != "eps":
            raise checks.ParameterError(
                f"`preconditioning` edm contradicts `prediction` {self.prediction}: EDM's preconditioning sets "
                "what the network outputs (F, with D = c_skip·x̃ + c_out·F); drop one of them"
            )
        if self.sigma_data is not None:
            if self.preconditioning != "edm":
                raise checks.ParameterError(
                    "`sigma_data` is EDM's σ_data, the data's standard deviation: it goes with `preconditioning` edm"
                )
            checks.positive("sigma_data", self.sigma_data)
        check_terminal_snr(self.build(), self.target)  # also checks beta_start/beta_end

    @property
    def target(self) -> str:
        """The row of :data:`ddkit.parameterization.TARGETS` the network is trained on: ``prediction``,
        or "edm" under EDM's preconditioning."""
        return target_name(self.prediction, self.preconditioning)

    def eps_network(self, net, schedule: Schedule | None = None):
        """``net`` (this run's network) as an ε-network ``f(x_t, t, y=None) -> ε`` for every sampler,
        guidance wrapper and ``nll_bpd`` (:func:`ddkit.parameterization.eps_network`)."""
        return eps_network(net, self.target, schedule or self.build(), sigma_data=self.sigma_data)

    def build(self) -> Schedule:
        if self.schedule == "cosine":
            return Schedule.cosine(self.num_timesteps)
        return Schedule.linear(self.num_timesteps, self.beta_start, self.beta_end)


@dataclass(frozen=True)
class DataConfig:
    """Where the training data come from: ``digits``, ``toy:NAME`` or a folder of images."""

    source: str = "digits"
    image_size: int | None = None
    channels: int | None = None
    toy_size: int = 20000
    # image folders and digits:train: this fraction of the images (a fixed split drawn with holdout_seed,
    # data.holdout_split) is held out for evaluation and never trained on; on digits:train it is a second
    # held-out part beside digits:test, to judge model selection without touching the test split
    holdout: float = 0.0
    holdout_seed: int = 0
    # the validation part: val images (a count >= 1) or a fraction in (0, 1) of the training data
    # (what holdout leaves), drawn with val_seed (data.split_val); evaluated during training
    # (training.validation), never trained on
    val: int | float = 0
    val_seed: int = 0

    def __post_init__(self) -> None:
        checks.fraction("holdout", self.holdout, high_open=True, what="a fraction in [0, 1)")
        check_val(self.val)
        checks.integer("val_seed", self.val_seed, low=0, high=MAX_SEED)
        if self.val and self.source.startswith("toy:"):
            raise checks.ParameterError(
                f"`val` (evaluation during training) is for images; {self.source!r} is 2-D points drawn from a "
                "known law: score its samples after training (ddkit.eval.energy)"
            )
        if self.holdout > 0 and (self.source.startswith("toy:") or self.source in ("digits", "digits:test")):
            raise ValueError(
                f"holdout is for image folders and digits:train; {self.source!r} has its own split "
                "(train on digits:train, evaluate on digits:test)"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: AdamW with a linear warm-up and a cosine decay to ``min_lr_ratio``·lr,
    gradient clipping, an EMA of the weights, and the budget (``steps`` and/or ``minutes``).
    ``batch_size`` is the global batch, split over processes."""

    steps: int | None = 1200
    minutes: float | None = None
    batch_size: int = 256
    lr: float = 2e-3
    warmup: int = 100
    min_lr_ratio: float = 0.02
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 1000
    sample_every: int = 1000
    log_every: int = 25
    keep_checkpoints: int = 2
    loss_weighting: str = "uniform"
    snr_gamma: float = 5.0
    class_cond: bool = False
    label_dropout: float = 0.1
    seed: int = 0
    device: str = "cpu"
    precision: str = "auto"
    log_to: str = "none"
    skip_nonfinite: int = 0
    keep_steps: tuple[int, ...] = ()
    # evaluation during training on the data's val part (training.validation): every eval_every
    # steps (default DEFAULT_EVAL_EVERY when there is a val part), eval_num samples; the best by
    # `select` is RUN/checkpoints/best; stop after early_stop evaluations without a better one
    eval_every: int | None = None
    eval_num: int = 500
    select: str = "fid"
    select_closer: float = DEFAULT_SELECT_CLOSER  # fid-fresh's threshold on closer_than_real
    early_stop: int | None = None
    # non-leaking augmentation (training.augment): each operation of augment_ops (None: the data
    # set's default, resolved and recorded when the run starts) with probability augment
    augment: float = 0.0
    augment_ops: tuple[str, ...] | None = None
    # the training distribution of t (losses.timestep_probs): uniform, or EDM's log-normal σ
    noise_levels: str = "uniform"
    p_mean: float = P_MEAN
    p_std: float = P_STD

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a training budget: steps or minutes")
        checks.optional_positive_int("steps", self.steps)
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ValueError(f"minutes must be a positive number, got {self.minutes}")
        for name in ("batch_size", "ckpt_every", "sample_every", "log_every", "keep_checkpoints"):
            checks.positive_int(name, getattr(self, name))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        for name in ("ema_decay", "label_dropout", "min_lr_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        checks.choice("loss_weighting", self.loss_weighting, WEIGHTINGS)
        if not (self.snr_gamma > 0 and math.isfinite(self.snr_gamma)):
            raise ValueError(f"snr_gamma must be a positive number, got {self.snr_gamma}")
        checks.choice("device", self.device, DEVICES)
        checks.choice("precision", self.precision, PRECISIONS)
        checks.choice("log_to", self.log_to, LOGGERS)
        checks.integer("skip_nonfinite", self.skip_nonfinite, low=0)
        checks.integer("seed", self.seed, low=0, high=MAX_SEED)
        if isinstance(self.keep_steps, list):
            object.__setattr__(self, "keep_steps", tuple(self.keep_steps))
        if not isinstance(self.keep_steps, tuple) or any(not checks.is_int(k) or k < 1 for k in self.keep_steps):
            raise ValueError(f"keep_steps must be a tuple of positive step numbers, got {self.keep_steps!r}")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("precision fp16 needs --device cuda (use fp32 or bf16 on the CPU)")
        checks.optional_positive_int("eval_every", self.eval_every)
        checks.integer("eval_num", self.eval_num, low=2, high=MAX_EVAL_NUM)
        checks.choice("select", self.select, SELECT)
        checks.fraction("select_closer", self.select_closer, what="a share in [0, 1]")
        checks.optional_positive_int("early_stop", self.early_stop)
        check_probability(self.augment)
        if self.augment_ops is not None:
            if self.augment == 0:
                raise checks.ParameterError("`augment_ops` needs `augment` > 0 (the probability of each operation)")
            object.__setattr__(self, "augment_ops", check_ops(self.augment_ops))
        checks.choice("noise_levels", self.noise_levels, NOISE_LEVELS)
        checks.number("p_mean", self.p_mean)
        checks.positive("p_std", self.p_std)


@dataclass(frozen=True)
class RunConfig:
    """Everything a run needs, saved as RUN/config.json."""

    model: UNetConfig | MLPConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        """Evaluation during training needs a validation part; a validation part is evaluated every
        ``DEFAULT_EVAL_EVERY`` steps unless ``eval_every`` says otherwise (recorded in config.json)."""
        val, tc = getattr(self.data, "val", 0), self.train
        if tc.eval_every is not None and not val:
            raise checks.ParameterError(
                "`eval_every` evaluates on a validation part: give `val` (N images or a fraction of the training data)"
            )
        if val and tc.eval_every is None:
            object.__setattr__(self, "train", replace(tc, eval_every=DEFAULT_EVAL_EVERY))
        if tc.early_stop is not None and not val:
            raise checks.ParameterError(
                "`early_stop` counts evaluations during training: give `val` (and `eval_every`, "
                f"default {DEFAULT_EVAL_EVERY} steps) or drop `early_stop`"
            )
        check_formulation(self)

    @property
    def evaluates(self) -> bool:
        """Whether the trainer evaluates on a validation part (training.validation)."""
        return self.train.eval_every is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "model": config_to_dict(self.model),
            "diffusion": asdict(self.diffusion),
            "data": asdict(self.data),
            "train": asdict(self.train),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Validate and build: unknown sections or keys, wrong value types and unsupported versions
        raise one ValueError line naming the key, before anything is built from it."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"version", "model", "diffusion", "data", "train"})
        if unknown:
            raise ValueError(
                f"unknown config section(s) {', '.join(unknown)}; allowed: version, model, diffusion, data, train"
            )
        version = d.get("version")
        if version == 1:
            d = _upgrade_v1(d)
            version = CONFIG_VERSION
        if version != CONFIG_VERSION:
            raise ValueError(f"unsupported config version {version!r}; this ddkit reads version {CONFIG_VERSION}")
        for section in ("diffusion", "data", "train"):
            if not isinstance(d.get(section, {}), dict):
                raise ValueError(f"config section {section!r} must be a JSON object, got {type(d[section]).__name__}")
        try:
            return cls(
                model=config_from_dict(d["model"]),
                diffusion=_build(DiffusionConfig, d.get("diffusion", {})),
                data=_build(DataConfig, d.get("data", {})),
                train=_build(TrainConfig, d.get("train", {})),
            )
        except KeyError as e:
            raise ValueError(f"config is missing the section {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temporary name, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"no config.json in {Path(path).parent}: not a ddkit run folder") from None
        except IsADirectoryError:
            raise ValueError(f"{path} is a folder, not a config.json") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(d)

    def replace(self, **sections) -> RunConfig:
        return replace(self, **sections)


def check_val(val) -> None:
    """``val``: 0 (none), a count of images >= 1, or a fraction in (0, 1)."""
    if checks.is_int(val) and val >= 0:
        return
    if isinstance(val, float) and 0.0 <= val < 1.0:
        return
    raise checks.ParameterError(
        f"`val` must be a number of images (an integer >= 1) or a fraction in (0, 1) of the training data, got {val!r}"
    )


def check_formulation(config: RunConfig) -> None:
    """What the training formulation's options need of each other: EDM's loss weighting needs EDM's
    preconditioning (λ = 1/c_out² is the weight that gives its F unit weight); augmentation needs
    images and a network whose augmentation layer (if any) fits the labels of its operations."""
    tc, m = config.train, config.model
    if tc.loss_weighting == "edm" and config.diffusion.preconditioning != "edm":
        raise checks.ParameterError(
            "`loss_weighting` edm is EDM's λ(σ) = 1/c_out², the weight that gives its preconditioned network "
            "unit weight at every σ: it needs `preconditioning` edm"
        )
    augment_dim = getattr(m, "augment_dim", 0)
    if tc.augment > 0 and not hasattr(m, "augment_dim"):
        raise checks.ParameterError(
            f"`augment` (geometric augmentation) is for images; this run's network is a {type(m).__name__}"
        )
    if tc.augment > 0 and tc.augment_ops is not None and augment_dim not in (0, label_dim(tc.augment_ops)):
        raise ValueError(
            f"model augment_dim={augment_dim} does not fit the labels of augment_ops {', '.join(tc.augment_ops)} "
            f"(width {label_dim(tc.augment_ops)}; 0 trains without telling the network, and leaks)"
        )


def _upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """Version 1 named T ``diffusion.timesteps``; version 2 calls it ``num_timesteps``."""
    diffusion = dict(d.get("diffusion", {}))
    if "timesteps" in diffusion:
        diffusion["num_timesteps"] = diffusion.pop("timesteps")
    return {**d, "diffusion": diffusion, "version": CONFIG_VERSION}


def _build(cls, values: dict[str, Any]):
    """Build a config dataclass from a dict, naming unknown keys; lists become tuples."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    types = {f.name: f.type for f in fields(cls)}
    for key, value in values.items():
        if not _type_ok(value, str(types[key])):
            raise ValueError(f"config {cls.__name__}.{key} must be {types[key]}, got {value!r}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def _type_ok(value, annotation: str) -> bool:
    """Does a JSON value fit a field annotation such as ``int | None`` or ``tuple[float, float]``?"""
    for part in (a.strip() for a in annotation.split("|")):
        if part == "None" and value is None:
            return True
        if part == "bool" and isinstance(value, bool):
            return True
        if part == "int" and isinstance(value, int) and not isinstance(value, bool):
            return True
        if part == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if part == "str" and isinstance(value, str):
            return True
        if part.startswith("tuple[") and isinstance(value, (list, tuple)):
            inner = [a.strip() for a in part[6:-1].split(",")]
            if len(inner) == 2 and inner[1] == "...":  # tuple[X, ...]: any length
                return all(_type_ok(v, inner[0]) for v in value)
            return len(inner) == len(value) and all(_type_ok(v, a) for v, a in zip(value, inner))
    return False
