"""Timesteps optimised for one model: the K points a deterministic sampler visits, chosen so that
its K-evaluation samples land where an accurate solution of the same probability-flow ODE lands.

Notation (as :mod:`ddkit.timesteps`): σ_t = √((1-ᾱ_t)/ᾱ_t), x̂₀ the data prediction at a point.

    teacher   x*₀ = DPM-Solver++(2) over ``teacher_steps`` trailing steps from x_T (at t = T-1)
    score     RMSE(seq) = √(mean (x₀(seq) − x*₀)²) over the tuning set's samples and pixels, where
              x₀(seq) is the sampler's output on the timestep sequence seq (K evaluations)

The method (two stages, the record's ``method`` says so):

1. *GITS-style dynamic programming* (Chen et al. 2024, "On the trajectory regularity of ODE-based
   diffusion sampling"): along the teacher's trajectory, at ``fine`` of its points, the cost of one
   DDIM step from the teacher's state at point i to point j is c(i, j) = mean (x̂_j − x*_j)², with
   x̂_j = √ᾱ_j·x̂₀_i + √(1-ᾱ_j)·ε_i taken from the teacher's own evaluation at i (no model call);
   a last step to σ = 0 costs mean (x̂₀_i − x*₀)². The sequence of K points that starts at T-1
   and minimises the summed cost is found exactly by dynamic programming over the fine grid.
2. *Direct search*: starting from the best of that sequence and every hand-made spacing
   (:data:`ddkit.timesteps.ALL_SPACINGS`) by RMSE, each free point moves in log σ towards a
   neighbour by a fraction of the gap, a move kept when the RMSE of the actual sampler (its order,
   warm-up and last step included) falls; the fraction halves when a sweep keeps nothing.

The dynamic programme starts at T-1; the search may lower the first point too (x_T is then read as
x at that point, as the "leading" spacings do). Points may be fractional timesteps. It uses only
``model_fn`` and the start noise: no data. :class:`TunedTimesteps` is the one owner of the JSON
record (``RUN/timesteps/NAME-K.json`` where a run keeps it).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import klub
from .checks import ParameterError, integer, is_int
from .parameterization import ModelFn
from .samplers import get_sampler, run_sampler
from .samplers.common import check_order
from .samplers.edm import PoorGridWarning, edm_points
from .schedule import Schedule
from .timesteps import ALL_SPACINGS, RENAMED_SPACINGS, kl_optimal, sampling_grid, sigma_range, t_from_sigma
from .version import __version__

FORMAT = "ddkit-tuned-timesteps"
FORMAT_VERSION = 1
TEACHER = {"sampler": "dpm++", "order": 2, "spacing": "trailing"}
TEACHER_STEPS = 500
METHOD = (
    "GITS-style dynamic programming over {fine} points of the teacher's trajectory (local DDIM errors), "
    "then a direct search of the sampler's end-point RMSE against the teacher in log σ"
)
# samplers whose grid is their own (deterministic at their defaults; ddpm has no steps)
TUNABLE = ("ddim", "dpm++", "unipc", "euler", "heun")


@dataclass(frozen=True)
class TunedTimesteps:
    """A tuned sequence and how it was made: the JSON record of ``ddkit tune-steps``.

    ``timesteps``: the K (heun: (K+1)/2) decreasing model timesteps, ints or fractional floats;
    ``sigmas``: their σ; ``score_before``: RMSE against the teacher of each hand-made spacing
    (``baseline``: the sampler's default); ``score_after``: the tuned sequence's RMSE.
    ``objective`` "klub" (:func:`tune_timesteps_klub`): ``score_before``/``score_after`` are
    validation scores, ``candidates`` maps each candidate grid to its timesteps, its KL bound and its
    validation score, and ``chosen`` names the one kept."""

    sampler: str
    nfe: int
    timesteps: tuple
    sigmas: tuple
    options: dict = field(default_factory=dict)
    method: str = ""
    teacher: dict = field(default_factory=dict)
    baseline: str = ""
    score_before: dict = field(default_factory=dict)
    score_after: float = math.nan
    num: int = 0
    num_timesteps: int = 0
    model: dict | None = None
    version: str = ""
    objective: str = "rmse"
    candidates: dict = field(default_factory=dict)
    chosen: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["timesteps"], d["sigmas"] = list(self.timesteps), list(self.sigmas)
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **d}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON (under a temporary name, then renamed: never half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, d: dict, where: str = "the record") -> TunedTimesteps:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f'{where} is not a tuned-timesteps file (no "format": "{FORMAT}")')
        if d.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where} has format_version {d.get('format_version')!r}; this ddkit reads {FORMAT_VERSION}"
            )
        names = set(cls.__dataclass_fields__)
        d = _upgrade(d)
        try:
            rec = cls(**{k: v for k, v in d.items() if k in names})
            return replace(rec, timesteps=tuple(rec.timesteps), sigmas=tuple(rec.sigmas))
        except TypeError as e:
            raise ValueError(f"{where} lacks a field: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> TunedTimesteps:
        """Read a record written by :meth:`save` (a ValueError for a file that is not one)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, str(path))

    def check(self, schedule: Schedule, *, sampler: str, nfe: int, where: str = "the record") -> list:
        """The sequence, after checking that it was made for ``sampler`` at ``nfe`` evaluations on a
        schedule of this T, and that it is strictly decreasing within [0, T-1] (ValueErrors)."""
        if self.sampler != sampler:
            raise ValueError(f"{where} was tuned for sampler {self.sampler!r}, not {sampler!r}")
        if self.nfe != nfe:
            raise ValueError(f"{where} was tuned for {self.nfe} model evaluations, not {nfe}")
        if self.num_timesteps != schedule.num_timesteps:
            raise ValueError(
                f"{where} was tuned on a schedule of T = {self.num_timesteps}, not {schedule.num_timesteps}"
            )
        seq = list(self.timesteps)
        sampling_grid(schedule, timesteps=seq)  # strictly decreasing, within [0, T-1], ᾱ > 0
        if len(seq) != _points(sampler, nfe):
            raise ValueError(
                f"{where} holds {len(seq)} timesteps; {sampler} at {nfe} evaluations needs {_points(sampler, nfe)}"
            )
        return seq


def _upgrade(d: dict) -> dict:
    """A record as this version names things: spacings renamed since it was written
    (:data:`ddkit.timesteps.RENAMED_SPACINGS`, e.g. "uniform" → "leading") take their new names."""
    new = RENAMED_SPACINGS
    before = d.get("score_before")
    if isinstance(before, dict):
        d = {**d, "score_before": {new.get(k, k): v for k, v in before.items()}}
    return {**d, "baseline": new.get(d.get("baseline"), d.get("baseline"))} if "baseline" in d else d


def tuned(path, schedule: Schedule, *, sampler: str, nfe: int) -> list:
    """The timesteps of a tuned-timesteps file (``ddkit tune-steps``, :func:`tune_timesteps`) for
    ``sampler`` at ``nfe`` model evaluations: checked to be made for them and for a schedule of
    this T, strictly decreasing within [0, T-1]. Pass them as ``timesteps=``."""
    return TunedTimesteps.load(path).check(schedule, sampler=sampler, nfe=nfe, where=str(path))


def default_spacing(sampler: str) -> str:
    """The spacing ``sampler`` uses when none is given (its registry spec's default)."""
    return str(get_sampler(sampler).defaults["spacing"])


def _points(sampler: str, nfe: int) -> int:
    """Grid points that ``nfe`` evaluations of ``sampler`` visit (heun: (nfe+1)/2)."""
    return edm_points(nfe, heun=True) if sampler == "heun" else nfe


def _order_option(sampler: str, order: int | None) -> dict:
    """``{"order": order}`` for a sampler that takes one (its default when None: recorded, so that
    sampling with another order is refused); {} for the others."""
    if order is None and "order" in get_sampler(sampler).options:
        order = get_sampler(sampler).defaults["order"]
    return {} if order is None else {"order": int(order)}


def _record(sampler: str, nfe: int, seq: list, schedule: Schedule, x_T, options, model, **fields) -> TunedTimesteps:
    """The record of ``seq`` tuned for ``sampler`` at ``nfe`` evaluations on the start noise ``x_T``,
    with the fields that depend on the objective (``method``, scores, …) passed on."""
    return TunedTimesteps(
        sampler=sampler,
        nfe=int(nfe),
        timesteps=tuple(seq),
        sigmas=tuple(sampling_grid(schedule, timesteps=seq).sigmas),
        options=options,
        baseline=default_spacing(sampler),
        num=int(x_T.shape[0]),
        num_timesteps=schedule.num_timesteps,
        model=model,
        version=__version__,
        **fields,
    )


def _per_spacing(fn) -> dict:
    """{spacing: fn(spacing)} for every hand-made spacing that applies (a ValueError: one that does
    not, e.g. a σ-grid on a zero-terminal-SNR schedule)."""
    out = {}
    for spacing in ALL_SPACINGS:
        try:
            out[spacing] = fn(spacing)
        except ValueError:
            continue
    return out


def default_teacher_steps(num_timesteps: int) -> int:
    """500, or T-1 for a schedule of fewer steps."""
    return min(TEACHER_STEPS, num_timesteps - 1)


def check_tuning(sampler: str, nfe: int, teacher_steps: int | None, num_timesteps: int, order=None) -> int:
    """The bad inputs of tuning: an untunable sampler, K < 2, K ≥ the teacher's steps, an even K
    for heun, ``order`` for a sampler without one."""
    spec = get_sampler(sampler)
    if sampler not in TUNABLE:
        raise ParameterError(
            f"`sampler` {sampler!r} cannot be tuned (it has no timestep grid); tunable: {', '.join(TUNABLE)}"
        )
    if teacher_steps is None:
        teacher_steps = default_teacher_steps(num_timesteps)
    if not is_int(teacher_steps) or not 2 < teacher_steps < num_timesteps:
        raise ParameterError(f"`teacher_steps` must be an integer in [3, {num_timesteps - 1}], got {teacher_steps!r}")
    if not is_int(nfe) or not 2 <= nfe < teacher_steps:
        raise ParameterError(
            f"`nfe` (K) must be an integer with 2 <= K < `teacher_steps` = {teacher_steps}, got {nfe!r}"
        )
    if sampler == "heun" and nfe % 2 == 0:
        raise ParameterError(
            f"`nfe` must be odd for heun: N grid points cost 2N − 1 evaluations (the last step is Euler), got {nfe}"
        )
    if order is not None and "order" not in spec.options:
        raise ParameterError(f"sampler {sampler!r} does not take `order` (it takes {', '.join(spec.options)})")
    if order is not None:
        check_order(order)
    return int(teacher_steps)


@dataclass
class Teacher:
    """The accurate solution tuning compares with: the teacher's end points ``x0`` [N, ...] (float64)
    from the start noise ``x_T``, and its states (t, ᾱ, x_t, x̂₀) at ``fine`` of its points (the
    dynamic programme's candidates). One teacher serves every sampler and NFE tuned on ``x_T``."""

    x_T: torch.Tensor
    x0: torch.Tensor
    points: list
    steps: int
    clip_x0: tuple | None
    _cost: np.ndarray | None = None

    def cost(self) -> np.ndarray:
        """c[i, j] = mean (x̂_j − x*_j)² of one DDIM step from the teacher's state at fine point i to
        point j (x̂_j = √ᾱ_j·x̂₀_i + √(1-ᾱ_j)·ε_i, DDIM eq. 12 with η = 0); c[i, M]: the last step to σ = 0."""
        if self._cost is None:
            M = len(self.points)
            cost = np.full((M, M + 1), np.inf)
            for i, (_, ab_i, x_i, x0_i) in enumerate(self.points):
                eps_i = (x_i - math.sqrt(ab_i) * x0_i) / math.sqrt(1.0 - ab_i)
                for j in range(i + 1, M):
                    _, ab_j, x_j, _ = self.points[j]
                    pred = math.sqrt(ab_j) * x0_i + math.sqrt(1.0 - ab_j) * eps_i
                    cost[i, j] = float((pred - x_j).pow(2).mean())
                cost[i, M] = float((x0_i - self.x0).pow(2).mean())
            self._cost = cost
        return self._cost


def _run_batches(name, model_fn, schedule, x_T, batch_size, clip_x0, options, callback=None, **grid):
    out = []
    with warnings.catch_warnings():  # grids tried and scored here may be poor on purpose
        warnings.simplefilter("ignore", PoorGridWarning)
        for start in range(0, x_T.shape[0], batch_size):
            cb = None if callback is None else (lambda info, s=start: callback(s, info))
            x = x_T[start : start + batch_size]
            out.append(run_sampler(name, model_fn, x, schedule, clip_x0=clip_x0, callback=cb, **options, **grid))
    return torch.cat(out)


def teacher_solution(
    model_fn: ModelFn,
    schedule: Schedule,
    x_T: torch.Tensor,
    *,
    steps: int = 500,
    clip_x0=None,
    fine: int = 100,
    batch_size: int = 256,
) -> Teacher:
    """DPM-Solver++(2) over ``steps`` trailing steps from x_T [N, ...] (x at T-1): the end points and
    the states at ``fine`` evenly chosen points of its grid."""
    integer("fine", fine, low=2)
    grid = sampling_grid(schedule, steps, TEACHER["spacing"], solver=True)
    keep = set(np.unique(np.round(np.linspace(0, len(grid) - 1, min(fine, len(grid)))).astype(int)).tolist())
    states: dict[int, list] = {i: [] for i in sorted(keep)}

    def record(start, info):
        if info.i in keep:
            states[info.i].append((info.x_t.double(), info.x0.double()))

    opts = {"order": TEACHER["order"], "steps": steps, "spacing": TEACHER["spacing"]}
    x0 = _run_batches(TEACHER["sampler"], model_fn, schedule, x_T, batch_size, clip_x0, opts, callback=record)
    points = [
        (grid.t[i], grid.alpha_bars[i], torch.cat([s[0] for s in v]), torch.cat([s[1] for s in v]))
        for i, v in states.items()
    ]
    return Teacher(x_T, x0.double(), points, int(steps), None if clip_x0 is None else tuple(clip_x0))


class _Problem:
    """The sampler, its options and the tuning set, scored against the teacher's end points."""

    def __init__(self, model_fn, schedule, sampler, options, teacher: Teacher, batch_size):
        self.model_fn, self.schedule, self.sampler, self.options = model_fn, schedule, sampler, options
        self.teacher, self.batch_size = teacher, batch_size
        self.top = schedule.num_timesteps - 1
        self.evaluations = 0

    def _run(self, x_T, batch_size, callback=None, **grid) -> torch.Tensor:
        fn, clip_x0 = self.model_fn, self.teacher.clip_x0
        return _run_batches(self.sampler, fn, self.schedule, x_T, batch_size, clip_x0, self.options, callback, **grid)

    def rmse(self, seq) -> float:
        self.evaluations += 1
        x0 = self._run(self.teacher.x_T, self.batch_size, timesteps=list(seq))
        return float((x0.double() - self.teacher.x0).pow(2).mean().sqrt())

    def grid_of(self, spacing: str, steps: int) -> list:
        """The points the sampler visits with a hand-made spacing (read from its callback)."""
        seen: list = []
        self._run(self.teacher.x_T[:1], 1, lambda start, info: seen.append(info.t), steps=steps, spacing=spacing)
        return seen


def _dp_sequence(teacher: Teacher, n: int) -> list:
    """GITS' dynamic programme: the n fine points from the first (T-1) whose summed DDIM step costs
    (then the last step to σ = 0) are least: :func:`ddkit.klub.least_cost_path` over the fine points
    and the end, which is then dropped."""
    points, cost = teacher.points, teacher.cost()  # cost: [M, M + 1], column M the step to σ = 0
    M = len(points)
    square = np.vstack([cost, np.full((1, M + 1), np.inf)])
    path = klub.least_cost_path(square, min(n, M) + 1)[:-1]
    return [points[i][0] for i in path]


def _log_sigma(schedule: Schedule, t) -> float:
    alpha_bar = sampling_grid(schedule, timesteps=[t]).alpha_bars[0]
    return 0.5 * (math.log1p(-alpha_bar) - math.log(alpha_bar))


def _search(problem: _Problem, seq: list, score: float, sweeps: int, max_evals: int) -> tuple[list, float]:
    """Coordinate search in log σ: each point moves a fraction f of the gap towards its upper or
    lower neighbour (the first one up to T-1, the last one down to σ_0); f halves after a sweep
    that keeps nothing."""
    schedule = problem.schedule
    u = [_log_sigma(schedule, t) for t in seq]
    u_floor = math.log(float(schedule.sigmas[0]))
    frac, start = 0.3, problem.evaluations

    u_top = _log_sigma(schedule, problem.top)
    for _ in range(sweeps):
        improved = False
        for k in range(len(u)):
            for direction in (1, -1):
                if problem.evaluations - start >= max_evals:
                    return seq, score
                upper = u[k - 1] if k > 0 else u_top
                lower = u[k + 1] if k + 1 < len(u) else u_floor
                if upper - u[k] < 1e-12 and direction > 0:
                    continue
                trial = list(u)
                trial[k] = u[k] + frac * ((upper - u[k]) if direction > 0 else (lower - u[k]))
                cand = _to_timesteps(schedule, np.exp(trial))
                if any(a <= b for a, b in zip(cand, cand[1:])) or cand[-1] < 0:
                    continue
                s = problem.rmse(cand)
                if s < score:
                    u, seq, score, improved = trial, cand, s, True
                    break
        if not improved:
            frac /= 2
            if frac < 0.01:
                break
    return seq, score


def tune_timesteps(
    model_fn: ModelFn,
    schedule: Schedule,
    *,
    sampler: str,
    nfe: int,
    x_T: torch.Tensor,
    order: int | None = None,
    teacher_steps: int | None = None,
    clip_x0=None,
    fine: int = 100,
    sweeps: int = 30,
    max_evals: int = 400,
    batch_size: int = 256,
    model: dict | None = None,
    teacher: Teacher | None = None,
) -> TunedTimesteps:
    """Timesteps for ``sampler`` at ``nfe`` model evaluations, optimised for ``model_fn`` on the start
    noise ``x_T`` [N, ...] (x at t = T-1; e.g. 256 draws): the module's two-stage method against a
    DPM-Solver++(2) teacher with ``teacher_steps`` steps (default 500, or T-1 when T ≤ 500).
    ``order``: for dpm++ and unipc; ``clip_x0`` as the sampling will use it (images: (-1, 1));
    ``fine``: points of the teacher's trajectory the dynamic programme chooses from;
    ``sweeps``/``max_evals`` bound the search (each evaluation is one sampling run of the tuning
    set); ``model``: any identification of the weights to keep in the record; ``teacher``: a
    :func:`teacher_solution` of this ``x_T`` to reuse (tuning several samplers on one set). Returns
    the :class:`TunedTimesteps` record (sequence, method, teacher,
    RMSE of each hand-made spacing and of the tuned sequence).
    """
    if teacher is not None:
        teacher_steps = teacher.steps
    teacher_steps = check_tuning(sampler, nfe, teacher_steps, schedule.num_timesteps, order)
    if not isinstance(x_T, torch.Tensor) or not x_T.is_floating_point() or x_T.ndim < 2:
        raise ValueError("x_T must be a floating-point tensor [N, ...] of start noise")
    options = _order_option(sampler, order)
    batch_size = integer("batch_size", batch_size, low=1)
    if teacher is None:
        teacher = teacher_solution(
            model_fn, schedule, x_T, steps=teacher_steps, clip_x0=clip_x0, fine=fine, batch_size=batch_size
        )
    elif teacher.x_T is not x_T or teacher.clip_x0 != (None if clip_x0 is None else tuple(clip_x0)):
        raise ValueError("teacher was made for another x_T or clip_x0 (teacher_solution(model_fn, schedule, x_T, ...))")
    problem = _Problem(model_fn, schedule, sampler, options, teacher, batch_size)
    candidates = {"dp": _dp_sequence(teacher, _points(sampler, nfe))}
    candidates |= _per_spacing(lambda spacing: problem.grid_of(spacing, nfe))
    before = {spacing: problem.rmse(seq) for spacing, seq in candidates.items() if spacing != "dp"}
    scores = {"dp": problem.rmse(candidates["dp"])} | before  # the dynamic programme's first, as it wins ties
    start = min(scores, key=lambda name: scores[name])
    seq, score = _search(problem, list(candidates[start]), scores[start], sweeps, max_evals)
    return _record(
        sampler,
        nfe,
        seq,
        schedule,
        x_T,
        options,
        model,
        method=METHOD.format(fine=len(teacher.points)) + f"; the search started from {start!r}",
        teacher={**TEACHER, "steps": int(teacher_steps)},
        score_before=before | {"dp": scores["dp"]},
        score_after=score,
    )


# ---- the KL upper bound (AYS): candidates made on training data, chosen on the validation part -
OBJECTIVES = ("klub", "rmse")
"""``ddkit tune-steps --objective``: klub (:func:`tune_timesteps_klub`, the default) or rmse
(:func:`tune_timesteps`)."""
KLUB_WEIGHTS = (0.25, 0.5, 0.75)  # refinements between the bound's grid and kl-optimal, in θ = atan(σ/c)
KLUB_TOPS = (20.0, 5.0, 2.0)  # lower starts tried besides min(σ_{T-1}, 80) (:func:`klub_tops`)
# samplers that step from their last point to σ = 0: an (n+1)-point candidate, its σ_min dropped
SOLVERS = ("dpm++", "unipc")
KLUB_METHOD = (
    "AYS KL upper bound (eq. 10) on {n_train} training points, estimated along Brownian paths over {fine} "
    "log-spaced σ (trapezoid in log σ) and minimised by dynamic programming; candidates, from each top σ "
    "of {tops}: that grid, kl-optimal (c = {c:.4g}) and {refine} grids between them in atan(σ/c); chosen on "
    "the validation part"
)


def check_objective(objective: str) -> str:
    if objective not in OBJECTIVES:
        raise ParameterError(f"`objective` must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    return objective


def _to_timesteps(schedule: Schedule, sigmas_desc) -> list:
    t = t_from_sigma(schedule, np.asarray(sigmas_desc, dtype=np.float64)).tolist()
    return [int(round(v)) if abs(v - round(v)) < 1e-9 else float(v) for v in t]


def klub_candidates(
    model_fn: ModelFn,
    schedule: Schedule,
    x0: torch.Tensor,
    points: int,
    *,
    sigma_data: float,
    fine: int = 64,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
) -> tuple[dict, dict]:
    """The candidate σ-grids of ``points`` points down to σ_0, from each top σ of :func:`klub_tops`:
    "klub@TOP" (the bound's dynamic-programming optimum over ``fine`` log-spaced σ, estimated on the
    training points x0 [N, ...]), "kl-optimal@TOP" (AYS Theorem 3.1 with c = ``sigma_data``) and
    "between-W@TOP" for W in :data:`KLUB_WEIGHTS`. Returns ({name: decreasing σ list}, {name: bound}).

    The bound takes the start as exact, so it cannot weigh where to start: a trained ε's error is
    multiplied by σ in x̂₀ = x̃ − σ·ε̂ at the first point, and a lower start reads the noise as x
    there. The top is therefore left to the validation score."""

    integer("points", points, low=2)
    lo = sigma_range(schedule)[0]
    tops = klub_tops(schedule)
    fine_sigmas = np.exp(np.linspace(math.log(lo), math.log(tops[0]), max(int(fine), points)))
    fine_sigmas[0], fine_sigmas[-1] = lo, tops[0]
    cost = klub.klub_costs(
        klub.denoiser(model_fn, schedule), x0, fine_sigmas, generator=generator, batch_size=batch_size
    )
    grids, bound = {}, {}
    log_fine = np.log(fine_sigmas)
    for top in tops:
        end = int(np.argmin(np.abs(log_fine - math.log(top))))
        if end + 1 < points:
            continue
        hi = float(fine_sigmas[end])
        dp = fine_sigmas[klub.least_cost_path(cost, points, end)][::-1]
        kl = kl_optimal(schedule, points, sigma_max=hi, sigma_data=sigma_data).numpy()
        mine = {"klub": dp, "kl-optimal": kl} | {
            f"between-{w:g}": klub.interpolate_theta(dp, kl, w, sigma_data) for w in KLUB_WEIGHTS
        }
        for name, g in mine.items():  # each candidate's bound, its points moved to the nearest fine σ
            key = f"{name}@{hi:.3g}"
            grids[key] = [float(v) for v in g]
            idx = sorted({int(np.argmin(np.abs(log_fine - math.log(v)))) for v in g})
            bound[key] = klub.path_cost(cost, idx) if len(idx) == points else math.nan
    return grids, bound


def klub_tops(schedule: Schedule) -> list[float]:
    """The top σ of the candidate grids: min(σ_{T-1}, 80) (where σ-grids start), and 20, 5 and 2
    where below it."""
    from .timesteps import DEFAULT_SIGMA_MAX

    lo, hi = sigma_range(schedule)
    first = min(hi, DEFAULT_SIGMA_MAX)
    return [first] + [s for s in KLUB_TOPS if lo < s < first]


def tune_timesteps_klub(
    model_fn: ModelFn,
    schedule: Schedule,
    *,
    sampler: str,
    nfe: int,
    x0: torch.Tensor,
    x_T: torch.Tensor,
    score_fn,
    sigma_data: float,
    order: int | None = None,
    clip_x0=None,
    fine: int = 64,
    seed: int = 0,
    batch_size: int = 256,
    validation: str = "",
    model: dict | None = None,
) -> TunedTimesteps:
    """Timesteps for ``sampler`` at ``nfe`` evaluations chosen on the law: the candidates of
    :func:`klub_candidates` (made on the training points x0 [N, ...]) and every hand-made spacing
    are sampled from the start noise x_T [M, ...] and scored by ``score_fn(samples) -> float`` (lower
    is better; a distance to the validation part, e.g. FID, never to the training points). The best
    best candidate is kept (hand-made spacings are scores only). dpm++ and unipc walk the first
    ``nfe`` points of (``nfe`` + 1)-point candidates, as they do a spacing's grid. ``validation`` says
    in the record what ``score_fn`` measures. Returns the :class:`TunedTimesteps` record."""
    check_tuning(sampler, nfe, None, schedule.num_timesteps, order)  # (no teacher here)
    options = _order_option(sampler, order)
    n = _points(sampler, nfe)
    # the multistep solvers step from their last point to σ = 0 themselves: as with their spacings
    # (sampling_grid's solver=True), they walk the first n points of an (n+1)-point grid to σ_min
    solver = sampler in SOLVERS
    g = torch.Generator().manual_seed(int(seed))
    grids, bound = klub_candidates(
        model_fn, schedule, x0, n + solver, sigma_data=sigma_data, fine=fine, generator=g, batch_size=batch_size
    )
    if solver:
        grids = {k: v[:-1] for k, v in grids.items()}

    def score(**grid) -> float:
        x = _run_batches(sampler, model_fn, schedule, x_T, batch_size, clip_x0, options, **grid)
        return float(score_fn(x))

    candidates = {}
    for name, sig in grids.items():
        seq = _to_timesteps(schedule, sig)
        candidates[name] = {"timesteps": seq, "klub": bound[name], "score": score(timesteps=seq)}
    before = _per_spacing(lambda spacing: score(steps=nfe, spacing=spacing))
    chosen = min(candidates, key=lambda k: candidates[k]["score"])
    seq = candidates[chosen]["timesteps"]
    return _record(
        sampler,
        nfe,
        seq,
        schedule,
        x_T,
        options,
        model,
        method=KLUB_METHOD.format(
            n_train=int(x0.shape[0]),
            fine=max(int(fine), n),
            c=sigma_data,
            refine=len(KLUB_WEIGHTS),
            tops=", ".join(f"{v:.3g}" for v in klub_tops(schedule)),
        )
        + (f" ({validation})" if validation else ""),
        teacher={},
        score_before=before,
        score_after=candidates[chosen]["score"],
        objective="klub",
        candidates=candidates,
        chosen=chosen,
    )
