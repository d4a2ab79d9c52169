"""``ddkit distill RUN --method ect|cd --out STUDENT``: Easy Consistency Tuning (Geng et al. 2024,
"Consistency models made easy"; the authors' locuslab/ect, ``training/loss.py``), or consistency
distillation (Song et al. 2023, Algorithm 2) on ECT's schedule of pairs, run by the
:class:`~ddkit.training.trainer.Trainer` (kill -9 safe resume, EMA, torchrun) with the
:class:`ECTObjective` below.

The student is a run folder like any other: its network has the teacher's architecture and starts
from the teacher's EMA weights; its config.json's ``diffusion.consistency_sigma_data`` makes every
reader wrap it in the consistency parametrisation (:class:`ddkit.consistency.ConsistencyNetwork`),
and its ``distill`` section (:class:`~ddkit.training.student.DistillConfig`) names the teacher, the
SHA-256 of the teacher's weights and the σ-grid of one- and two-step sampling.

ECT's loss, with σ for EDM's t (VP schedule read as x̃ = x₀ + σ·ε, :mod:`ddkit.consistency`):

    t ~ exp(N(P_mean, P_std²))                                  log-normal, clamped to the schedule
    r = max(t·(1 − (1 + k·sigmoid(−b·t))/q^(stage+1)), σ_min)   stage = step // double_every
    x̃_t = x₀ + t·z,  x̃_r = x₀ + r·z                             one z for both
    L = (√(‖f_θ(x̃_t, t) − sg[f_θ(x̃_r, r)]‖² + c²) − c)/(t − r)

Both evaluations use the current weights and the same dropout mask (the torch RNG state is restored
before the second); the second is under ``no_grad``. Method cd (consistency distillation) takes
x̃_r from the teacher instead: one Euler step of its probability-flow ODE from x̃_t,
x̃_r = x̃_t + (r − t)·ε_T(x̃_t, t) (:func:`teacher_step`), so the student learns the teacher's flow
where ECT learns the data's; everything else is ECT's. At r = σ_min the boundary gives f = x̃_r, which
is ECT's "target = x₀ at r = 0" moved to this schedule's smallest σ.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checks import ParameterError, choice, positive_int
from ..consistency import ConsistencyNetwork, eps_at_sigma
from ..data import Dataset, load_run_data, take
from ..generate import generate
from ..nn import build_model
from ..options import option
from ..samplers.consistency import SIGMA_MID, consistency_grid
from .checkpoint import latest_checkpoint, load_matching, load_weights
from .config import (
    DEVICES,
    PRECISIONS,
    RunConfig,
    TrainConfig,
    budget,
    count_or_fraction,
    measure_sigma_data,
    with_budget,
)
from .load import is_classifier, resolve_weights
from .reporting import write_progress_images
from .rundir import RunDir
from .student import METHODS, WEIGHTINGS, DistillConfig, check_teacher, sha256_file

T_FLOOR = 1.001
"""t is clamped to at least T_FLOOR·σ_min, so that t > r = σ_min (the pair never degenerates)."""
SIGMA_MID_CANDIDATES = (0.1, 0.2, 0.4, SIGMA_MID, 1.5, 3.0, 6.0, 12.0)
"""The intermediate σ of two-step sampling is chosen among these (ECT's 0.821 among them)."""
GAMMA_CANDIDATES = (1.0, 0.0)
"""... with the re-noising γ among these (CTM's γ: 1 the consistency models' fresh noise, 0 DDIM's)."""
OWN = ("dropout",)
"""The network settings a student may set apart from its teacher (``--dropout``): no weight depends on them."""
CHOOSE_NUM = 1000
"""Samples per candidate when choosing σ_mid."""
DOUBLE_EVERY = 250
"""Steps per ECT stage when the budget is in minutes (:func:`default_double_every`)."""
STAGE_MAX = 500
"""The longest default stage when the budget is in steps (:func:`default_double_every`)."""
# ECT-tuning's optimiser defaults: a constant learning rate (ECT: 1e-4 with RAdam at batch 128, for a
# budget 100x longer; here AdamW at 2e-3 without warm-up or decay, chosen among five rates on the
# digits' training slice: docs/distill.md), the teacher's EMA decay and gradient clipping;
# precision auto, as ddkit train: bf16 where native (measured on the digits, with an EDM and an ε
# teacher, to tune as well as fp32; docs/distill.md), else fp32, never fp16
DISTILL_DEFAULTS = dict(steps=2000, batch_size=256, lr=2e-3, warmup=0, min_lr_ratio=1.0, precision="auto", seed=0)


# ---- the loss ---------------------------------------------------------------------------------------
def ect_r(t: torch.Tensor, stage: int, sigma_min: float, q: float = 2.0, k: float = 8.0, b: float = 1.0):
    """ECT's sigmoid mapping r(t) = t·(1 − (1 + k·sigmoid(−b·t))/q^(stage+1)), here clamped below at
    σ_min instead of 0 (``t_to_r_sigmoid``)."""
    ratio = 1 - (1 + k * torch.sigmoid(-b * t)) / q ** (stage + 1)
    return (t * ratio).clamp(min=sigma_min)


def sample_t(
    n: int, generator: torch.Generator, device, p_mean: float, p_std: float, lo: float, hi: float, uniform: float = 0.0
):
    """t = exp(P_mean + P_std·N(0, 1)) [n] (float64), clamped to [lo, hi]; with ``uniform`` > 0, that
    share of the draws (on average) is log-uniform on [lo, hi] instead (drawn after the normals, so
    ``uniform`` = 0 draws exactly what it always did)."""
    rnd = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
    t = (rnd * p_std + p_mean).exp().clamp(lo, hi)
    if uniform > 0:
        pick, v = torch.rand(2, n, generator=generator, device=device, dtype=torch.float64)
        t = torch.where(pick < uniform, lo * (hi / lo) ** v, t)
    return t


def tuning_range(schedule, t_max: float | None = None) -> tuple[float, float]:
    """(lo, hi) of the noise levels t that tuning draws on ``schedule``: lo = T_FLOOR·σ_min, hi = the
    schedule's largest finite σ, or ``t_max`` below it; a ``t_max`` not above lo is refused."""
    lo = T_FLOOR * float(schedule.sigmas[0])
    if t_max is not None and t_max <= lo:
        raise ParameterError(f"`t_max` must be above the schedule's smallest tuning σ {lo:.4g}, got {t_max:g}")
    finite = schedule.sigmas[torch.isfinite(schedule.sigmas)]
    return lo, min(float(finite[-1]), t_max or math.inf)


def ect_loss(
    denoise,
    x0: torch.Tensor,
    y,
    t: torch.Tensor,
    r: torch.Tensor,
    z: torch.Tensor,
    c: float = 0.0,
    ode_step=None,
    *,
    weighting: str = "gap",
    sigma_data: float = 0.5,
):
    """ECT's per-sample loss [N] (module docstring) for a consistency function ``denoise(x̃, σ, y)``:
    x0, z: [N, ...]; t, r: [N] with t > r. The pair shares z and the dropout mask; the target is
    computed with the same weights, without gradient. ``ode_step(x̃_t, t, r, y) -> x̃_r`` (method cd:
    :func:`teacher_step`) gives the pair's second point instead of x₀ + r·z. ``weighting`` (and
    ``sigma_data`` for it): :func:`ect_weight`."""
    shape = (-1,) + (1,) * (x0.ndim - 1)
    x_t = x0 + t.reshape(shape).to(x0.dtype) * z
    if ode_step is None:
        x_r = x0 + r.reshape(shape).to(x0.dtype) * z
    else:
        with torch.no_grad():
            x_r = ode_step(x_t, t, r, y)
    with torch.random.fork_rng(devices=[x0.device] if x0.device.type == "cuda" else []):
        d_t = denoise(x_t, t, y)  # then torch's generator as it was: the same dropout mask again
    with torch.no_grad():
        d_r = denoise(x_r, r, y)
    sq = (d_t.float() - d_r.float()).pow(2).flatten(1).sum(1)
    if c > 0:
        loss = (sq + c * c).sqrt() - c
    else:  # √0 has no gradient: a pair that rounds to the same output (tiny t − r) contributes 0
        zero = sq == 0
        loss = torch.where(zero, 0.0, torch.where(zero, 1.0, sq).sqrt())
    if weighting == "gap":  # a division, as the authors write it
        return loss / (t - r).to(loss.dtype)
    return loss * ect_weight(t, r, weighting, sigma_data).to(loss.dtype)


def ect_weight(t: torch.Tensor, r: torch.Tensor, weighting: str = "gap", sigma_data: float = 0.5) -> torch.Tensor:
    """The weight [N] of a pair (t, r) in ECT's loss: ``gap`` 1/(t − r) (the authors' CIFAR-10 code),
    ``snr`` SNR(t) + 1/σ_d² = (t² + σ_d²)/(t·σ_d)² (their ImageNet code, ``wt='snrpk'``), which does not
    grow as the stages shrink t − r."""
    choice("weighting", weighting, WEIGHTINGS)
    if weighting == "gap":
        return 1.0 / (t - r)
    return (t * t + sigma_data**2) / (t * sigma_data) ** 2


def teacher_step(teacher_eps, schedule):
    """Method cd's ``ode_step`` for :func:`ect_loss`: one Euler step of the teacher's probability-flow
    ODE dx̃/dσ = (x̃ − D)/σ = ε from (x̃_t, t) to r, x̃_r = x̃_t + (r − t)·ε_T(√ᾱ_t·x̃_t, t(σ = t)) (DDIM
    η = 0 in x̃; LCM's solver). ``teacher_eps(x_t, t, y)``: the teacher read as an ε-network."""

    def step(x: torch.Tensor, t: torch.Tensor, r: torch.Tensor, y) -> torch.Tensor:
        eps = eps_at_sigma(teacher_eps, schedule, x, t, y)
        return x + (r - t).reshape((-1,) + (1,) * (x.ndim - 1)).to(x.dtype) * eps.to(x.dtype)

    return step


class ECTObjective:
    """ECT's loss for the :class:`~ddkit.training.trainer.Trainer` (``loss``, ``per_sample_loss``,
    ``preview``), the stage read from the trainer's step (:meth:`bind`). With ``distill.method`` cd
    the pair's second point is the teacher's ODE step (:func:`teacher_step`); the teacher's weights
    are read on first use, checked against the recorded hash, and never trained."""

    def __init__(self, config: RunConfig):
        self.config, self.d = config, config.distill
        self.schedule = config.diffusion.build()
        self.sigma_min = float(self.schedule.sigmas[0])
        self.t_lo, self.sigma_hi = tuning_range(self.schedule, self.d.t_max)  # t's clamp
        self.step_of = lambda: 0
        self._ode_step = None
        self._weighting = {"weighting": self.d.weighting, "sigma_data": config.diffusion.consistency_sigma_data}

    def bind(self, step_of) -> None:
        """``step_of()`` gives the optimiser steps taken so far (the trainer's ``step``)."""
        self.step_of = step_of

    @property
    def stage(self) -> int:
        return self.step_of() // self.d.double_every

    def student(self, net: nn.Module) -> ConsistencyNetwork:
        """``net`` read as the consistency student (:meth:`~ddkit.training.config.DiffusionConfig.eps_network`)."""
        return self.config.diffusion.eps_network(net, self.schedule)

    def _labels(self, y):
        return y if self.config.train.class_cond else None

    def _r(self, t: torch.Tensor) -> torch.Tensor:
        return ect_r(t, self.stage, self.sigma_min, self.d.q, self.d.k, self.d.b)

    def ode_step(self, device):
        """None for ECT; for cd the teacher's :func:`teacher_step`, its network read onto ``device``
        at the first call (the training device; validation runs there too)."""
        if self.d.method == "cd" and self._ode_step is None:
            check_teacher(self.d, "being tuned")
            net = build_model(self.config.model)
            load_matching(net, Path(self.d.teacher_weights), self.config.to_dict()["model"], device, ignore=OWN)
            net = net.to(device).eval().requires_grad_(False)
            teacher = dataclasses.replace(self.config.diffusion, consistency_sigma_data=None)
            self._ode_step = teacher_step(teacher.eps_network(net, self.schedule), self.schedule)
        return self._ode_step

    def loss(self, net: nn.Module, x0: torch.Tensor, y, generator: torch.Generator) -> torch.Tensor:
        """The batch mean of :func:`ect_loss`: t from ``generator``, then z."""
        d = self.d
        t = sample_t(x0.shape[0], generator, x0.device, d.p_mean, d.p_std, self.t_lo, self.sigma_hi, d.t_uniform)
        z = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        step, labels = self.ode_step(x0.device), self._labels(y)
        return ect_loss(self.student(net).denoise, x0, labels, t, self._r(t), z, d.c, step, **self._weighting).mean()

    def per_sample_loss(self, net: nn.Module, x0, y, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """:func:`ect_loss` per example [N] at σ of the timesteps ``t`` [N] (validation)."""
        sigma = self.schedule.on(self.schedule.sigmas, t.device)[t].clamp(self.t_lo, self.sigma_hi)
        step = self.ode_step(x0.device)
        labels, r = self._labels(y), self._r(sigma)
        return ect_loss(self.student(net).denoise, x0, labels, sigma, r, noise, self.d.c, step, **self._weighting)

    def eval_sampling(self) -> dict:
        """How validation draws the student's samples: one consistency step from σ_max."""
        return {"sampler": "consistency", "sigmas": [self.d.sigma_max]}

    def preview(self, out: Path, step: int, ema_model: nn.Module, data: Dataset, history) -> None:
        """RUN/samples/step-N.png (one-step samples, fixed seed) and RUN/loss.png."""
        write_progress_images(
            out, step, self.student(ema_model), self.schedule, data, self.config.train, history, **self.eval_sampling()
        )


# ---- the student run ---------------------------------------------------------------------------------
def is_student(config: RunConfig) -> bool:
    """A run made by ``ddkit distill`` (a consistency student)."""
    return config.distill is not None or config.diffusion.consistency_sigma_data is not None


def student_config(
    teacher: str | Path,
    *,
    method: str = "ect",
    checkpoint=None,
    val=None,
    double_every: int | None = None,
    t_max=None,
    t_uniform=None,
    weighting=None,
    dropout=None,
    **train,
) -> tuple[RunConfig, Dataset]:
    """The student's RunConfig and its training data: the teacher's network, schedule and data (``val``
    may add a validation part), ECT-tuning's optimiser defaults (:data:`DISTILL_DEFAULTS`) under
    ``train`` (TrainConfig fields; None keeps the default), and the ``distill`` section with the
    ``method`` (ect or cd) and the teacher's weights' hash; ``dropout`` replaces the network's (the
    weights do not depend on it). Refuses a student, a classifier and a run with no checkpoint yet,
    before the data are loaded."""
    teacher = Path(teacher)
    tconfig = RunConfig.load(RunDir(teacher).config)
    if is_student(tconfig):
        raise ParameterError(
            f"{teacher} is a consistency student already; distil its teacher {tconfig.distill.teacher}"
        )
    if is_classifier(tconfig):
        raise ParameterError(f"{teacher} is a classifier run, not a diffusion model")
    model = tconfig.model
    if dropout is not None:  # the UNet's config checks the rate
        if not hasattr(model, "dropout"):
            raise ParameterError(f"`dropout` is for a UNet student; {teacher}'s network is an MLP without dropout")
        model = dataclasses.replace(model, dropout=dropout)
    weights = resolve_weights(teacher, checkpoint, ema=True)
    if not weights.path.is_file():
        raise ValueError(f"{teacher} has no weights at {weights.path}")
    given = budget({k: v for k, v in train.items() if v is not None})
    refuse_fp16(given)
    data_cfg = tconfig.data if val is None else dataclasses.replace(tconfig.data, val=val)
    tc = dataclasses.replace(
        tconfig.train, augment=0.0, augment_ops=None, keep_steps=(), eval_every=None, early_stop=None,
        **{**DISTILL_DEFAULTS, **given},
    )  # fmt: skip
    d = tconfig.diffusion
    distill = DistillConfig(
        teacher=str(teacher.resolve()),
        teacher_weights=str(weights.path.resolve()),
        teacher_sha256=sha256_file(weights.path),
        method=method,
        double_every=default_double_every(tc.steps)
        if double_every is None
        else positive_int("double_every", double_every),
        **{k: v for k, v in (("t_max", t_max), ("t_uniform", t_uniform), ("weighting", weighting)) if v is not None},
    )
    tuning_range(d.build(), t_max)  # a t_max the schedule cannot honour fails here, before the data load
    data = load_run_data(data_cfg, tc.seed)  # the seed resume reloads them with
    config = RunConfig(
        model=model,
        diffusion=dataclasses.replace(d, consistency_sigma_data=d.sigma_data or measure_sigma_data(data.x)),
        data=data_cfg,
        train=TrainConfig(**dataclasses.asdict(tc)),
        distill=distill,
    )
    return config, data


def refuse_fp16(options: dict) -> None:
    """fp16 is not offered for consistency tuning, new or resumed (ECT's authors report NaN)."""
    if options.get("precision") == "fp16":
        raise ParameterError(
            "`precision` fp16 is not offered for consistency tuning (ECT's authors report NaN): use fp32 or bf16"
        )


def default_double_every(steps: int | None) -> int:
    """ECT's stage length when none is given: a quarter of the step budget (four stages, the last
    with t − r ≈ t/16) up to :data:`STAGE_MAX` steps, or :data:`DOUBLE_EVERY` steps for a budget in
    minutes. ECT's CIFAR-10 run has eight stages over 200k iterations. On budgets 100× shorter, the
    later stages' gradient noise (it grows as 1/(t − r)) undid the tuning of an ε-teacher's student
    on the 2-D mixture; an EDM-preconditioned teacher's digits student did better with more stages
    past 2,000 steps (at 4,000: one step FID 19.6 with 8 stages of 500, 31.5 with 4 of 1,000;
    docs/distill.md)."""
    return DOUBLE_EVERY if steps is None else max(1, min(steps // 4, STAGE_MAX))


def start_from_teacher(trainer) -> None:
    """A fresh student's network and EMA take the teacher's EMA weights (checked against its hash)."""
    d = trainer.config.distill
    check_teacher(d, trainer.out)
    model = trainer.config.to_dict()["model"]
    load_matching(trainer.model, Path(d.teacher_weights), model, trainer.device, ignore=OWN)
    trainer.ema.load_state_dict(load_weights(Path(d.teacher_weights), trainer.device), 0)


@dataclasses.dataclass(frozen=True)
class DistillOptions:
    """The options of :func:`distill` (and ``ddkit distill``), one field each; None: the default of
    :data:`DISTILL_DEFAULTS`, or the teacher's."""

    method: str | None = option(
        None,
        "ect: consistency tuning, the pair's second point the same noise at a lower level (default; on --resume the "
        "student's own); cd: consistency distillation, the second point the teacher's ODE step",
        choices=METHODS,
    )
    out: str | None = option(None, "the student's run folder", required=True)
    steps: int | None = option(None, f"optimiser steps (default {DISTILL_DEFAULTS['steps']})")
    minutes: float | None = option(None, "a wall-clock budget instead of (or with) --steps")
    batch_size: int | None = option(None, f"global batch (default {DISTILL_DEFAULTS['batch_size']})")
    lr: float | None = option(None, f"constant learning rate (default {DISTILL_DEFAULTS['lr']})")
    val: int | float | None = option(
        None,
        "a validation part of the training data (default: the teacher's): evaluation during tuning, the best "
        "checkpoint, and the choice of the two-step σ",
        type=count_or_fraction,
        metavar="N|FRACTION",
    )
    double_every: int | None = option(
        None,
        f"steps between ECT's halvings of t - r (default: a quarter of --steps, at most {STAGE_MAX}; "
        f"{DOUBLE_EVERY} with --minutes only)",
    )
    t_max: float | None = option(
        None, "the largest noise level σ that tuning draws (default: the schedule's largest)", metavar="SIGMA"
    )
    t_uniform: float | None = option(
        None, "the share of tuning pairs whose σ is log-uniform up to --t-max instead of ECT's log-normal (default 0)"
    )
    weighting: str | None = option(
        None,
        "ECT's loss weight: gap 1/(t - r), the authors' CIFAR-10 code (default); snr (t² + σ_d²)/(t·σ_d)², their "
        "ImageNet code",
        choices=WEIGHTINGS,
    )
    dropout: float | None = option(
        None, "dropout in the student's residual blocks (default: the teacher's; ECT's CIFAR-10 run uses 0.2)"
    )
    ckpt_every: int | None = option(None, "checkpoint every N steps (default: the teacher's)")
    ckpt_minutes: float | None = option(
        None,
        "also checkpoint M minutes of tuning after the last checkpoint; 0: by steps only (default: the teacher's)",
        metavar="M",
    )
    checkpoint: str | None = option(None, "which teacher weights (as ddkit sample)", metavar="last|best|PATH")
    seed: int | None = option(None, "random seed (default 0)")
    device: str | None = option(None, "cpu (default) or cuda", choices=DEVICES)
    precision: str | None = option(
        None,
        "auto (default: bf16 where native and it helps, else fp32; the log says which), fp32 or bf16; "
        "fp16 is not offered (NaN in ECT)",
        choices=tuple(x for x in PRECISIONS if x != "fp16"),
    )
    resume: bool = option(False, "continue the student in --out (only the budget may change)", switch=True)


def distill(
    run: str | Path,
    out: str | Path,
    *,
    method: str | None = None,
    resume: bool = False,
    checkpoint=None,
    progress: bool | None = None,
    dist=None,
    **options,
) -> Path:
    """Tune a consistency student from the run ``run`` into the run folder ``out`` (ECT, module
    docstring) and return ``out``. ``options``: TrainConfig fields (``steps``, ``minutes``,
    ``batch_size``, ``lr``, ``seed``, ``device``, ``precision``, …; defaults :data:`DISTILL_DEFAULTS`),
    ``val`` (a validation part: evaluation during training, the best checkpoint, and the choice of
    σ_mid) and ``double_every``. ``method``: ect (the default for a new student) or cd.
    ``checkpoint``: which teacher weights (as :func:`ddkit.load`). ``resume`` continues ``out`` with
    its own method and settings; only the budget may change (a contradicting option is a
    :class:`~ddkit.training.api.ResumeConflict`). After training, σ_mid of two-step
    sampling is chosen (:func:`choose_sigma_mid`) and recorded in config.json. Options set to None
    take their defaults (:class:`DistillOptions`)."""
    from .api import OPTIONS_BY_NAME, process_group
    from .trainer import Trainer

    options = {k: v for k, v in options.items() if v is not None}
    if method is not None:
        options["method"] = choice("method", method, METHODS)
    out, run = Path(out), Path(run)
    if options.get("steps") is not None:
        positive_int("steps", options["steps"])  # --steps 0 fails here, before the teacher is read
    with process_group(options.get("device"), OPTIONS_BY_NAME["dist_timeout"].default, dist) as dist:
        resume = resume or dist.restart_count > 0
        if out.resolve() == run.resolve():
            raise ParameterError("`out` must be a new folder for the student, not the teacher's run")
        saved = RunDir(out).config
        if resume and saved.exists():
            config = RunConfig.load(saved)
            if not is_student(config):
                raise ParameterError(f"{out} is not a consistency student; `resume` continues a student")
            check_resume(config, options, saved)
            refuse_fp16(options)
            config = with_budget(config, options, RESUME_MAY_CHANGE)
            data = load_run_data(config.data, config.train.seed)
        else:
            if not resume and latest_checkpoint(out) is not None:
                raise ParameterError(f"{out} already holds a run with checkpoints; continue it with `resume`")
            config, data = student_config(run, checkpoint=checkpoint, **options)  # its method defaults to ect
            if dist.is_main and (message := teacher_note(config, run)):
                print(f"ddkit: note: {message}", file=sys.stderr)
        objective = ECTObjective(config)
        trainer = Trainer(config, out, resume=resume, dist=dist, progress=progress, data=data, objective=objective)
        objective.bind(lambda: trainer.step)
        if trainer.step == 0:
            start_from_teacher(trainer)
        trainer.run()
        if dist.is_main:
            record_sigma_mid(out, device=config.train.device)
    return out


RESUME_MAY_CHANGE = ("steps", "minutes", "ckpt_every", "ckpt_minutes", "device", "precision")
"""What ``distill(..., resume=True)`` may change: the budget and bookkeeping (as ``ddkit train``)."""


def check_resume(config: RunConfig, options: dict, config_path: Path) -> None:
    """A :class:`~ddkit.training.api.ResumeConflict` naming every option given to resume the student
    ``config`` that contradicts it (the optimiser, the seed, the validation part, ECT's settings)."""
    from .api import ResumeConflict

    current = dataclasses.asdict(config.train) | dataclasses.asdict(config.distill)
    current |= {"val": config.data.val, "dropout": getattr(config.model, "dropout", None)}
    given = {k: v for k, v in options.items() if k not in RESUME_MAY_CHANGE}
    conflicts = [(k, v, current.get(k)) for k, v in given.items() if v != current.get(k)]
    if conflicts:
        raise ResumeConflict(config_path, conflicts)


def teacher_note(config: RunConfig, teacher: str | Path) -> str | None:
    """One line for a teacher whose network predicts ε without EDM's preconditioning, or None: its
    student's one step from σ = 80 reads the network's ε multiplied by about 160 (docs/distill.md)."""
    d = config.diffusion
    if d.prediction != "eps" or d.preconditioning == "edm":
        return None
    return (
        f"{teacher} predicts ε without EDM's preconditioning; on the digits such a teacher's student scored 17.7x "
        "its teacher's DDIM-50 FID in one step where an EDM-preconditioned teacher's scored 3.2x (train the "
        "teacher with --preconditioning edm; docs/distill.md)"
    )


# ---- two-step sampling: σ_mid chosen on held-out data ------------------------------------------------
def sigma_mid_scorer(config: RunConfig, num: int = CHOOSE_NUM):
    """(score, num, image) for choosing σ_mid: ``score(x)`` is the FID against ``num`` images of the
    validation part (or, without one, a fixed slice of the training data), ``num`` raised to what FID
    needs; for 2-D points the energy distance to ``num`` fresh draws of the data's law."""
    from ..data import load_data
    from ..eval.energy import energy_distance
    from .validation import fid_scorer

    tc = config.train
    if config.data.val:
        ref = load_run_data(config.data, tc.seed, "val")
    else:
        ref = load_run_data(config.data, tc.seed)
        if ref.kind != "image":  # the law is known: fresh draws (another seed)
            dc = config.data
            ref = load_data(dc.source, seed=tc.seed + 1, toy_size=dc.toy_size)
    if ref.kind != "image":
        return (lambda x: energy_distance(x, ref.x[:num].to(x.dtype))), num, False
    pick = np.random.default_rng(tc.seed + 1).permutation(len(ref.x))[:num]
    score, need = fid_scorer(config, take(ref, np.sort(pick), ref.source))
    return score, max(num, need), True


def choose_sigma_mid(
    net: nn.Module,
    schedule,
    config: RunConfig,
    *,
    candidates=SIGMA_MID_CANDIDATES,
    gammas=GAMMA_CANDIDATES,
    num: int = CHOOSE_NUM,
    device="cpu",
) -> tuple[str, list[float], list[float]]:
    """(metric, candidates, scores) of two-step sampling [σ_max, σ_mid] for each re-noising γ of
    ``gammas`` and, within it, each candidate σ_mid (scores γ-major), the student ``net`` read as ε:
    FID against the validation part (or, without one, a fixed slice of the training data: see
    docs/distill.md) for images; for 2-D points the energy distance to fresh draws of the data's
    law. Same start noise for every candidate; lower is better."""
    d, tc = config.distill, config.train
    cands = [float(s) for s in candidates if float(schedule.sigmas[0]) < s < d.sigma_max]
    score, num, image = sigma_mid_scorer(config, num)
    scores = []
    for gamma in gammas:
        for s in cands:
            x = generate(net, schedule, num, sampler="consistency", sigmas=[d.sigma_max, s], gamma=gamma,
                         seed=tc.seed, clip_x0=(-1.0, 1.0) if image else None, device=device)  # fmt: skip
            scores.append(score(x))
    return ("fid" if image else "energy"), cands, scores


def record_sigma_mid(out: str | Path, *, gammas=GAMMA_CANDIDATES, **kwargs) -> DistillConfig:
    """Choose σ_mid and γ for the student ``out`` (its best checkpoint, else the newest) and record
    them, with the candidates and their scores, in its config.json."""
    from .load import load

    model, schedule, config = load(out)
    gammas = tuple(float(g) for g in gammas)
    net = config.diffusion.eps_network(model, schedule)
    metric, cands, scores = choose_sigma_mid(net, schedule, config, gammas=gammas, **kwargs)
    gamma, best = divmod(int(np.argmin(scores)), len(cands))
    distill = dataclasses.replace(
        config.distill, sigma_mid=cands[best], gamma=gammas[gamma], gamma_candidates=gammas,
        sigma_mid_metric=metric, sigma_mid_candidates=tuple(cands), sigma_mid_scores=tuple(float(v) for v in scores),
    )  # fmt: skip
    config.replace(distill=distill).save(RunDir(out).config)
    return distill


# ---- sampling a student -------------------------------------------------------------------------------
def default_sampler(config: RunConfig) -> str:
    """The sampler a run gets when none is named: consistency for a student, else ddim."""
    return "consistency" if is_student(config) else "ddim"


def student_options(config: RunConfig, sampler: str, options: dict) -> dict:
    """A student's sampler options: consistency sampling without a grid gets the student's recorded
    one, [σ_max] for ``steps`` 1 (the default) or [σ_max, σ_mid] for 2, and without ``gamma`` its
    recorded re-noising γ."""
    if config.distill is None or sampler != "consistency":
        return options
    d = config.distill
    options = {"gamma": d.gamma} | options
    if "sigmas" in options:
        return options
    steps = options.pop("steps", None) or 1
    return options | {"sigmas": consistency_grid(steps, d.sigma_max, d.sigma_mid or SIGMA_MID)}


def refuse_student(run: str | Path, what: str) -> None:
    """One line for the commands that are not defined for a student yet (``ddkit edit``): a
    ParameterError when the run folder ``run`` holds a consistency student."""
    saved = RunDir(run).config
    if saved.exists() and is_student(RunConfig.load(saved)):
        raise ParameterError(
            f"{what} is not defined for a consistency student (made by ddkit distill) yet; use its teacher"
        )


__all__ = [
    "DISTILL_DEFAULTS",
    "DistillOptions",
    "ECTObjective",
    "GAMMA_CANDIDATES",
    "RESUME_MAY_CHANGE",
    "choose_sigma_mid",
    "default_sampler",
    "distill",
    "ect_loss",
    "ect_r",
    "ect_weight",
    "is_student",
    "record_sigma_mid",
    "refuse_student",
    "sample_t",
    "student_config",
    "sigma_mid_scorer",
    "student_options",
    "tuning_range",
]
