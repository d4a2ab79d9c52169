"""Configuration: one frozen dataclass per component, defaults in one place, saved as JSON.

A run's ``config.json`` is ``RunConfig.to_dict()``: ``{"version", "model", "diffusion", "data",
"train"}``. ``version`` lets later releases load older runs. :func:`ddkit.training.api.run_config`
builds one from the options of ``ddkit train`` / :func:`ddkit.train`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import checks
from ..consistency import ConsistencyNetwork
from ..losses import NOISE_LEVELS, P_MEAN, P_STD, WEIGHTINGS
from ..nn import MLPConfig, UNetConfig, config_from_dict, config_to_dict
from ..options import option
from ..parameterization import PRECONDITIONINGS, PREDICTIONS, check_terminal_snr, eps_network, target_name
from ..schedule import SCHEDULES, Schedule
from .augment import OPS, check_ops, check_probability, label_dim
from .student import DistillConfig

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


def count_or_fraction(text: str) -> int | float:
    """``val`` on the command line: "200" is a number of images (int), "0.15" a fraction (float)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def comma_list(text: str) -> tuple[str, ...]:
    """A comma-separated list on the command line (``--augment-ops translate,scale``)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def budget(train: dict) -> dict:
    """The training options ``train`` with the budget rule applied: ``minutes`` given without
    ``steps`` replaces the step budget (steps None), for a new run and on resume alike."""
    if train.get("minutes") is not None and train.get("steps") is None:
        return {**train, "steps": None}
    return train


def with_budget(config: RunConfig, options: dict, names: tuple[str, ...]) -> RunConfig:
    """``config`` with the training options among ``names`` that ``options`` gives (not None), the
    budget rule applied (:func:`budget`): what a resumed run may change."""
    changed = {k: options[k] for k in names if options.get(k) is not None}
    return replace(config, train=replace(config.train, **budget(changed)))


def measure_sigma_data(x) -> float:
    """EDM's σ_data: the standard deviation of all the values of the training data ``x`` (a tensor;
    rounded to 4 decimals; 0.5 is EDM's choice for images in [-1, 1])."""
    return round(float(x.double().std()), 4)


@dataclass(frozen=True)
class DiffusionConfig:
    """The noise schedule over T = 1000 steps: cosine (Nichol & Dhariwal; the default, measured
    better on the 8×8 digits) or DDPM's linear β from ``beta_start`` to ``beta_end``; what the
    network predicts (``prediction``: eps, the default, x0 or v; README "Choosing the defaults"), or
    EDM's preconditioning (``preconditioning`` edm, Karras et al. 2022 Table 1, on this schedule:
    the network is EDM's F and ``prediction`` stays eps, unused) with the data's standard deviation
    ``sigma_data`` (None until the trainer measures it on the training data and records it)."""

    schedule: str = option(
        "cosine",
        "noise schedule: cosine (default, measured better on the digits) or linear (DDPM's)",
        choices=SCHEDULES,
    )
    num_timesteps: int = option(1000, "diffusion (training) timesteps T (default {default})")
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = option(
        "eps",
        "what the network predicts and the loss targets: eps (default), x0 or v = √ᾱ·ε - √(1-ᾱ)·x0",
        choices=PREDICTIONS,
    )
    preconditioning: str = option(
        "none",
        "none (default) or edm: EDM's preconditioning on this schedule (Table 1: the network F sees "
        "c_in·x̃ and c_noise = ¼ ln σ, D = c_skip·x̃ + c_out·F); sets what the network outputs, so no --prediction",
        choices=PRECONDITIONINGS,
    )
    sigma_data: float | None = option(
        None,
        "EDM's σ_data (with --preconditioning edm; default: measured on the training data, recorded in config.json)",
    )
    # set for a consistency student (ddkit distill): the network, read as `target`, is wrapped in the
    # consistency parametrisation with this σ_d (ddkit.consistency.ConsistencyNetwork)
    consistency_sigma_data: float | None = None

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
        if self.consistency_sigma_data is not None:
            checks.positive("consistency_sigma_data", self.consistency_sigma_data)
        check_terminal_snr(self.build(), self.target)  # also checks beta_start/beta_end

    @property
    def target(self) -> str:
        """The row of :data:`ddkit.parameterization.TARGETS` the network is trained on: ``prediction``,
        or "edm" under EDM's preconditioning."""
        return target_name(self.prediction, self.preconditioning)

    def eps_network(self, net, schedule: Schedule | None = None):
        """``net`` (this run's network) as an ε-network ``f(x_t, t, y=None) -> ε`` for every sampler,
        guidance wrapper and ``nll_bpd`` (:func:`ddkit.parameterization.eps_network`); a consistency
        student's is its consistency function read as ε (:class:`ddkit.consistency.ConsistencyNetwork`)."""
        if isinstance(net, ConsistencyNetwork):
            return net
        schedule = schedule or self.build()
        net = eps_network(net, self.target, schedule, sigma_data=self.sigma_data)
        if self.consistency_sigma_data is None:
            return net
        return ConsistencyNetwork(net, schedule, self.consistency_sigma_data)

    def build(self) -> Schedule:
        if self.schedule == "cosine":
            return Schedule.cosine(self.num_timesteps)
        return Schedule.linear(self.num_timesteps, self.beta_start, self.beta_end)


@dataclass(frozen=True)
class DataConfig:
    """Where the training data come from: ``digits``, ``fashion-mnist``, ``toy:NAME`` or a folder of images."""

    source: str = option(
        "digits",
        "digits (default), digits:train, fashion-mnist (its 60,000 training images), "
        "toy:gmm|moons|swissroll|circles, or a folder of images",
        name="data",
    )
    image_size: int | None = option(None, "image folders: resize and centre-crop to this size (default 32; digits: 8)")
    channels: int | None = option(None, "image folders: 1 (grey) or 3 (RGB, default)", choices=(1, 3))
    toy_size: int = option(20000, "toy data: the number of points drawn (default {default})")
    # image folders and digits:train: this fraction of the images (a fixed split drawn with holdout_seed,
    # data.holdout_split) is held out for evaluation and never trained on; on digits:train it is a second
    # held-out part beside digits:test, to judge model selection without touching the test split
    holdout: float = option(
        0.0,
        "image folders: hold this fraction of the images out (a fixed split drawn with holdout_seed, recorded "
        "in config.json); never trained on, the default reference of ddkit eval (default 0; the digits have "
        "digits:train/digits:test instead; on digits:train it carves a second held-out part, to judge model "
        "selection without touching digits:test)",
        metavar="FRACTION",
    )
    holdout_seed: int = option(0, "seed of the holdout split (default {default})")
    # the validation part: val images (a count >= 1) or a fraction in (0, 1) of the training data
    # (what holdout leaves), drawn with val_seed (data.split_val); evaluated during training
    # (training.validation), never trained on
    val: int | float = option(
        0,
        "carve a validation part out of the training data (digits:train's 1,297, or what --holdout leaves): "
        "N images or a FRACTION, drawn with val_seed, recorded in config.json, never trained on; it is "
        f"evaluated every eval_every steps (default {DEFAULT_EVAL_EVERY}) and selects RUN/checkpoints/best",
        type=count_or_fraction,
        metavar="N|FRACTION",
    )
    val_seed: int = option(0, "seed of the validation split (default {default})")

    def __post_init__(self) -> None:
        checks.fraction("holdout", self.holdout, high_open=True, what="a fraction in [0, 1)")
        val = self.val  # 0 (none), a count of images >= 1, or a fraction in (0, 1)
        if not ((checks.is_int(val) and val >= 0) or (isinstance(val, float) and 0.0 <= val < 1.0)):
            raise checks.ParameterError(
                "`val` must be a number of images (an integer >= 1) or a fraction in (0, 1) of the training data, "
                f"got {val!r}"
            )
        checks.integer("val_seed", self.val_seed, low=0, high=MAX_SEED)
        if self.val and self.source.startswith("toy:"):
            raise checks.ParameterError(
                f"`val` (evaluation during training) is for images; {self.source!r} is 2-D points drawn from a "
                "known law: score its samples after training (ddkit.eval.energy)"
            )
        if self.holdout > 0 and (
            self.source.startswith(("toy:", "fashion-mnist")) or self.source in ("digits", "digits:test")
        ):
            split = "fashion-mnist" if self.source.startswith("fashion-mnist") else "digits"
            raise ValueError(
                f"holdout is for image folders and digits:train; {self.source!r} has its own split "
                f"(train on {split}:train, evaluate on {split}:test)"
            )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings: AdamW with a linear warm-up and a cosine decay to ``min_lr_ratio``·lr,
    gradient clipping, an EMA of the weights, and the budget (``steps`` and/or ``minutes``).
    ``batch_size`` is the global batch, split over processes."""

    steps: int | None = option(1200, "optimizer steps (default {default} when --minutes is not given)", resume=True)
    minutes: float | None = option(None, "wall-clock budget; with --steps, whichever ends first", resume=True)
    batch_size: int = option(
        256, "global batch size, split over processes (default {default}, or the data set's size if smaller)"
    )
    lr: float = option(2e-3, "peak AdamW learning rate (default {default})")
    warmup: int = option(100, "linear warm-up steps (default {default})")
    min_lr_ratio: float = 0.02
    weight_decay: float = option(0.0, "AdamW weight decay (default {default:g})")
    adam_betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = option(1.0, "gradient norm clip, 0 for none (default {default})")
    ema_decay: float = option(0.999, "EMA decay (default {default})")
    ckpt_every: int = option(1000, "checkpoint every N steps (default {default})", resume=True)
    ckpt_minutes: float = option(
        10.0,
        "also checkpoint once M minutes of training have passed since the last checkpoint, so that a long "
        "step cadence on a slow machine loses little to a kill; 0: by steps only (default {default:g})",
        metavar="M",
        resume=True,
    )
    sample_every: int = option(1000, "sample grid every N steps (default {default})", resume=True)
    log_every: int = option(25, "log.jsonl line every N steps (default {default})", resume=True)
    keep_checkpoints: int = option(2, "keep the newest K checkpoints (default {default})", metavar="K", resume=True)
    loss_weighting: str = option(
        "uniform",
        "per-timestep loss weight: uniform (the plain MSE on what the network outputs: L_simple for eps; default), "
        "min-snr (min(SNR, γ) on the x0 error, Hang et al. 2023) or edm (EDM's λ = 1/c_out², with "
        "--preconditioning edm: the same loss as uniform there)",
        choices=WEIGHTINGS,
    )
    snr_gamma: float = option(5.0, "γ of min-snr weighting (default {default:g})")
    class_cond: bool = option(False, "condition on labels (with label dropout, for guidance)", switch=True)
    label_dropout: float = option(0.1, "probability of the null label (default {default})")
    seed: int = option(0, "random seed (default {default})")
    device: str = option("cpu", "cpu (default) or cuda", choices=DEVICES, resume=True)
    precision: str = option(
        "auto",
        "auto (default: bf16 where the hardware has it and it measurably helps, else fp32; the log says which), "
        "fp32, bf16, or fp16 (cuda, with grad scaling)",
        choices=PRECISIONS,
        resume=True,
    )
    log_to: str = option(
        "none",
        "also log loss, lr, images/s, sample grids and metrics to TensorBoard event files in RUN/tensorboard "
        "(needs pip install ddkit[tensorboard]); default none",
        choices=LOGGERS,
        resume=True,
    )
    skip_nonfinite: int = option(
        0,
        "skip up to K batches whose loss is NaN/inf (logged) instead of stopping at the first (default 0)",
        metavar="K",
        resume=True,
    )
    keep_steps: tuple[int, ...] = option(
        (),
        "never prune the checkpoint of step N (repeatable; e.g. an early one to guide with: ddkit sample RUN "
        "--guide-with RUN/checkpoints/step-N)",
        flag="--keep-step",
        type=int,
        metavar="N",
        repeat=True,
        resume=True,
    )
    # evaluation during training on the data's val part (training.validation): every eval_every
    # steps (default DEFAULT_EVAL_EVERY when there is a val part), eval_num samples; the best by
    # `select` is RUN/checkpoints/best; stop after early_stop evaluations without a better one.
    # Evaluation runs on its own generators and never changes the weights, so its cadence and
    # early_stop (a budget) may change on resume; val, eval_num and select may not (the best
    # checkpoint so far was chosen by them)
    eval_every: int | None = option(
        None,
        f"evaluate the EMA weights on the val part every N steps (default {DEFAULT_EVAL_EVERY} with --val): "
        "FID/KID against it, memorisation (closer), the val/train loss gap; to log.jsonl, RUN/val.png, TensorBoard",
        metavar="N",
        resume=True,
    )
    eval_num: int = option(500, "samples per evaluation (DPM-Solver++, 10 steps, fixed start noise; default {default})")
    select: str = option(
        "fid",
        "what chooses RUN/checkpoints/best: the lowest val fid (default), kid or loss, or fid-fresh: the lowest "
        "fid among the evaluations whose closer (memorisation) is at most --select-closer, else the lowest closer",
        choices=SELECT,
    )
    select_closer: float = option(
        DEFAULT_SELECT_CLOSER,
        "fid-fresh's threshold on closer, the share of samples nearer a training image than the val images are "
        "(default {default}; fresh samples 0.5)",
        metavar="SHARE",
    )
    early_stop: int | None = option(
        None,
        "stop after K evaluations without a better select score (writes the final checkpoint; needs --val)",
        metavar="K",
        resume=True,
    )
    # non-leaking augmentation (training.augment): each operation of augment_ops (None: the data
    # set's default, resolved and recorded when the run starts) with probability augment
    augment: float = option(
        0.0,
        "non-leaking augmentation (EDM §5): apply each operation of --augment-ops to each image with "
        "probability P in [0, 1) (default 0: none); the network is told which it sees, samples have none",
        metavar="P",
    )
    augment_ops: tuple[str, ...] | None = option(
        None,
        f"comma-separated operations among {','.join(OPS)} (default: all but xflip for the digits, all for a folder)",
        type=comma_list,
        metavar="OPS",
    )
    # the training distribution of t (losses.timestep_probs): uniform, or EDM's log-normal σ
    noise_levels: str = option(
        "uniform",
        "training distribution of t: uniform over the T steps (default) or lognormal "
        "(EDM's ln σ ~ N(p_mean, p_std²), carried onto the discrete t)",
        choices=NOISE_LEVELS,
    )
    p_mean: float = option(P_MEAN, "mean of ln σ for --noise-levels lognormal (default {default:g})")
    p_std: float = option(P_STD, "standard deviation of ln σ for --noise-levels lognormal (default {default:g})")

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise ValueError("give a training budget: steps or minutes")
        checks.optional_positive_int("steps", self.steps)
        if self.minutes is not None:
            checks.positive("minutes", self.minutes)
        for name in ("batch_size", "ckpt_every", "sample_every", "log_every", "keep_checkpoints"):
            checks.positive_int(name, getattr(self, name))
        checks.number("ckpt_minutes", self.ckpt_minutes, low=0.0, what=">= 0")
        checks.positive("lr", self.lr)
        for name in ("warmup", "grad_clip", "weight_decay"):
            checks.number(name, getattr(self, name), low=0.0, what=">= 0")
        for name in ("ema_decay", "label_dropout", "min_lr_ratio"):
            checks.fraction(name, getattr(self, name), what="in [0, 1]")
        checks.choice("loss_weighting", self.loss_weighting, WEIGHTINGS)
        checks.positive("snr_gamma", self.snr_gamma)
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
    # a consistency student (ddkit distill): its teacher, the teacher's weights' hash, its σ-grid
    distill: DistillConfig | None = None

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
        diffusion = asdict(self.diffusion)
        if diffusion["consistency_sigma_data"] is None:  # a teacher's config.json stays as it was
            del diffusion["consistency_sigma_data"]
        out = {
            "version": self.version,
            "model": config_to_dict(self.model),
            "diffusion": diffusion,
            "data": asdict(self.data),
            "train": asdict(self.train),
        }
        if self.distill is not None:
            out["distill"] = asdict(self.distill)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Validate and build: unknown sections or keys, wrong value types and unsupported versions
        raise one ValueError line naming the key, before anything is built from it."""
        if not isinstance(d, dict):
            raise ValueError(f"config must be a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - {"version", "model", "diffusion", "data", "train", "distill"})
        if unknown:
            raise ValueError(
                f"unknown config section(s) {', '.join(unknown)}; allowed: version, model, diffusion, data, train, "
                "distill"
            )
        version = d.get("version")
        if version == 1:
            d = _upgrade_v1(d)
            version = CONFIG_VERSION
        if version != CONFIG_VERSION:
            raise ValueError(f"unsupported config version {version!r}; this ddkit reads version {CONFIG_VERSION}")
        for section in ("diffusion", "data", "train", "distill"):
            if not isinstance(d.get(section, {}), dict):
                raise ValueError(f"config section {section!r} must be a JSON object, got {type(d[section]).__name__}")
        try:
            return cls(
                model=config_from_dict(d["model"]),
                diffusion=_build(DiffusionConfig, d.get("diffusion", {})),
                data=_build(DataConfig, d.get("data", {})),
                train=_build(TrainConfig, d.get("train", {})),
                distill=_build(DistillConfig, d["distill"]) if "distill" in d else None,
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
