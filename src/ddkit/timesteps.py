"""Timestep and noise-level grids: the one home of every sequence a sampler walks.

Notation (VP schedule, float64):

    ᾱ_t                      ``schedule.alpha_bars[t]`` for 0-based training timesteps t = 0 … T-1
    σ_t = √((1-ᾱ_t)/ᾱ_t)     the noise level of x̃ = x_t/√ᾱ_t = x₀ + σ_t·ε (EDM's σ; ``schedule.sigmas``)
    λ_t = -log σ_t           half the log-SNR (DPM-Solver's λ)

A sampler visits a decreasing sequence of points, each a model timestep t and its ᾱ, and after
the last point steps to ᾱ = 1 (σ = 0). The points come from one of:

- a *spacing* of ``steps`` integer timesteps: :func:`leading`, :func:`quadratic`,
  :func:`trailing`, :func:`linspace` (diffusers' names and DDIM's), :func:`logsnr` (uniform in λ);
- a *σ-grid*: :func:`karras` (EDM eq. 5), :func:`exponential` (uniform in log σ) or
  :func:`kl_optimal` (AYS Theorem 3.1), from σ_max = min(σ_{T-1}, :data:`DEFAULT_SIGMA_MAX`) down to
  σ_0 unless told otherwise (:func:`sigma_spacing`), or any decreasing ``sigmas=[…]``; each σ is
  mapped to a fractional model timestep by interpolating log σ linearly between the discrete steps
  (:func:`t_from_sigma`), as diffusers' Euler and Heun schedulers do, and the sampler uses that σ
  exactly;
- an explicit decreasing ``timesteps=[…]`` sequence.

:func:`sampling_grid` resolves these into a :class:`Grid`; every sampler calls it, so a new
spacing is one function here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .checks import ParameterError, decreasing, integer, is_int

SPACINGS = ("leading", "quadratic", "trailing", "linspace")  # need only T
"""The index spacings, which need only T (:func:`make_timesteps`)."""
SCHEDULE_SPACINGS = ("logsnr",)  # need the schedule
SIGMA_SPACINGS = ("karras", "exponential", "kl-optimal")  # σ-grids
ALL_SPACINGS = SPACINGS + SCHEDULE_SPACINGS + SIGMA_SPACINGS
"""Every ``spacing`` a sampler takes: the index spacings (:data:`SPACINGS`, which need only T),
``logsnr`` (needs the schedule) and the σ-grids ``karras``, ``exponential`` and ``kl-optimal``."""
# spacing names of earlier versions, as files written then hold them: only file readers map them
# (ddkit.tuning.TunedTimesteps.from_dict); the library takes the new names alone
RENAMED_SPACINGS = {"uniform": "leading"}
# not computed from the schedule: a sequence tuned for one model (ddkit.tuning; RUN/timesteps/NAME-K.json)
TUNED = "tuned"
KARRAS_RHO = 7.0
DEFAULT_SIGMA_MAX = 80.0
"""Where σ-grids start unless told otherwise (EDM's σ_max), when the schedule's own σ_{T-1} is higher:
the cosine schedule's β clipped to 0.999 puts σ_{T-1} ≈ 2·10⁴, 32× σ_{T-2}, and a grid from there
spends its points above any σ where the denoiser changes (docs/few-steps.md, "Why heun broke")."""
DEFAULT_SIGMA_DATA = 0.5
"""c of :func:`kl_optimal` when the data's standard deviation is not known (EDM's σ_data for images
in [-1, 1])."""
# σ-grids computed in float32 (diffusers' ``scheduler.sigmas``) miss the schedule's ends by rounding
SIGMA_RTOL = 1e-6


# ---- index spacings ----------------------------------------------------------------------------
def _check_steps(num_timesteps: int, steps: int) -> None:
    integer("num_timesteps (T)", num_timesteps, low=1)
    if not is_int(steps) or not 1 <= steps <= num_timesteps:
        raise ValueError(f"steps must be an integer in [1, {num_timesteps}] (the schedule's T), got {steps!r}")


def _num_timesteps(schedule_or_T, steps: int) -> int:
    """T of a Schedule (or T itself), with ``steps`` checked against it."""
    T = schedule_or_T if is_int(schedule_or_T) else schedule_or_T.num_timesteps
    _check_steps(T, steps)
    return T


def leading(schedule, steps: int) -> torch.Tensor:
    """DDIM's τ = 0, c, 2c, … with c = T // S (diffusers' "leading"), decreasing: LongTensor [S].
    ``schedule``: a Schedule or T."""
    T = _num_timesteps(schedule, steps)
    return torch.from_numpy((np.arange(steps, dtype=np.int64) * (T // steps))[::-1].copy())


def quadratic(schedule, steps: int) -> torch.Tensor:
    """DDIM's τ_i = ⌊(i/(S-1))²·0.8T⌋ (their CIFAR-10 choice), made strictly increasing where
    flooring would repeat a step (only when S is close to T), decreasing: LongTensor [S]."""
    T = _num_timesteps(schedule, steps)
    raw = np.floor(np.linspace(0.0, math.sqrt(0.8 * T), steps) ** 2).astype(np.int64)
    seq = raw.copy()
    for i in range(1, steps):  # keep strictly increasing; never exceeds T-1
        seq[i] = max(raw[i], seq[i - 1] + 1)
    seq = np.minimum(seq, T - steps + np.arange(steps))
    return torch.from_numpy(seq[::-1].copy())


def trailing(schedule, steps: int) -> torch.Tensor:
    """round(T - k·T/S) - 1 for k = 0 … S-1: starts at T-1 (diffusers' "trailing"): LongTensor [S]."""
    T = _num_timesteps(schedule, steps)
    return torch.from_numpy((np.round(np.arange(T, 0, -T / steps)[:steps]).astype(np.int64) - 1).copy())


def linspace(schedule, steps: int) -> torch.Tensor:
    """round(linspace(T-1, 0, S)) (diffusers' "linspace"): LongTensor [S]."""
    T = _num_timesteps(schedule, steps)
    return torch.from_numpy(np.round(np.linspace(0, T - 1, steps)).astype(np.int64)[::-1].copy())


def log_snr(schedule) -> torch.Tensor:
    """λ_t = log(√ᾱ_t / √(1-ᾱ_t)) = ½·log SNR_t for every 0-based t: float64 [T], decreasing."""
    return 0.5 * (torch.log(schedule.alpha_bars) - torch.log1p(-schedule.alpha_bars))


def logsnr(schedule, steps: int, *, top: int | None = None) -> torch.Tensor:
    """``steps`` timesteps uniform in λ (DPM-Solver's "logSNR" steps): λ evenly spaced from λ(T-1)
    to λ(0), each mapped to the t with that λ (linear interpolation of t in λ, as diffusers'
    ``use_lu_lambdas``) and rounded; strictly decreasing LongTensor [S] from T-1 to 0 (where
    rounding would repeat a step, the lower steps move down). ``top``: start there instead of T-1."""
    T = schedule.num_timesteps if top is None else top + 1
    _check_steps(T, steps)
    lam = log_snr(schedule).numpy()[:T]
    grid = np.linspace(lam[-1], lam[0], steps)  # increasing λ = decreasing t
    t = np.interp(grid, lam[::-1], np.arange(T - 1, -1, -1, dtype=np.float64))
    seq = np.round(t).astype(np.int64)  # decreasing, may repeat
    seq[0] = T - 1
    for i in range(steps - 2, -1, -1):  # from the low end up: strictly decreasing, within [0, T-1]
        seq[i] = max(seq[i], seq[i + 1] + 1)
    seq = np.minimum(seq, T - 1 - np.arange(steps))
    return torch.from_numpy(seq.copy())


_INDEX_SPACINGS = {"leading": leading, "quadratic": quadratic, "trailing": trailing, "linspace": linspace}


def make_timesteps(num_timesteps: int, steps: int, spacing: str = "leading", schedule=None) -> torch.Tensor:
    """The ``steps`` 0-based timesteps of ``spacing`` out of T = ``num_timesteps``, strictly
    decreasing: LongTensor [steps] (leading | quadratic | trailing | linspace; ``logsnr`` needs
    ``schedule``). See the functions of the same names."""
    _check_steps(num_timesteps, steps)
    if spacing == "logsnr":
        if schedule is None:
            raise ValueError("spacing 'logsnr' needs the schedule (make_timesteps(T, steps, 'logsnr', schedule=...))")
        if schedule.num_timesteps != num_timesteps:
            raise ValueError(f"the schedule has T = {schedule.num_timesteps}, not num_timesteps = {num_timesteps}")
        return logsnr(schedule, steps)
    if spacing not in _INDEX_SPACINGS:
        allowed = SPACINGS + SCHEDULE_SPACINGS
        raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(allowed)}")
    return _INDEX_SPACINGS[spacing](num_timesteps, steps)


# ---- σ-grids -----------------------------------------------------------------------------------
def sigma_range(schedule) -> tuple[float, float]:
    """(σ_min, σ_max) = (σ_0, σ_{T-1}) of the schedule's discrete steps."""
    sigmas = schedule.sigmas
    return float(sigmas[0]), float(sigmas[-1])


def _sigma_bounds(schedule, steps: int, sigma_min, sigma_max) -> tuple[float, float]:
    integer("steps", steps, low=1)
    lo, hi = sigma_range(schedule)
    if not math.isfinite(hi):
        raise ValueError(
            "the schedule has ᾱ = 0 at its last step (zero terminal SNR): σ_max is infinite; give sigma_max"
        )
    sigma_min = lo if sigma_min is None else float(sigma_min)
    sigma_max = hi if sigma_max is None else float(sigma_max)
    if not lo * (1 - SIGMA_RTOL) <= sigma_min < sigma_max <= hi * (1 + SIGMA_RTOL):
        raise ValueError(
            f"need σ_min < σ_max within the schedule's σ range [{lo:.6g}, {hi:.6g}], "
            f"got sigma_min={sigma_min:.6g}, sigma_max={sigma_max:.6g}"
        )
    return sigma_min, sigma_max


def karras(
    schedule, steps: int, *, rho: float = KARRAS_RHO, sigma_min: float | None = None, sigma_max: float | None = None
) -> torch.Tensor:
    """EDM's eq. (5): σ_i = (σ_max^{1/ρ} + i/(S-1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i = 0 … S-1,
    from σ_max to σ_min (default: the schedule's σ_{T-1} and σ_0): float64 [S], decreasing. The
    sampler's last step goes from σ_min to 0."""
    sigma_min, sigma_max = _sigma_bounds(schedule, steps, sigma_min, sigma_max)
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + ramp * (b - a)) ** rho


def exponential(
    schedule, steps: int, *, sigma_min: float | None = None, sigma_max: float | None = None
) -> torch.Tensor:
    """σ uniform in log σ from σ_max to σ_min (k-diffusion's ``get_sigmas_exponential``, diffusers'
    ``use_exponential_sigmas``): float64 [S], decreasing."""
    sigma_min, sigma_max = _sigma_bounds(schedule, steps, sigma_min, sigma_max)
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    return torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64).exp()


def kl_optimal(
    schedule,
    steps: int,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float = DEFAULT_SIGMA_DATA,
) -> torch.Tensor:
    """AYS Theorem 3.1 (Sabour et al. 2024): σ_i = c·tan((1−i/n)·atan(σ_max/c) + (i/n)·atan(σ_min/c))
    for i = 0 … n with n = S-1 and c = ``sigma_data``, from σ_max to σ_min (default: the schedule's
    range): float64 [S], decreasing. Uniform in θ = atan(σ/c); for data N(μ, c²I) it is the grid on
    which DDIM (η = 0) reaches σ_min with the least KL to the true marginal there."""
    sigma_min, sigma_max = _sigma_bounds(schedule, steps, sigma_min, sigma_max)
    if not (isinstance(sigma_data, (int, float)) and math.isfinite(sigma_data) and sigma_data > 0):
        raise ValueError(f"sigma_data must be a positive number, got {sigma_data!r}")
    if steps == 1:
        return torch.tensor([sigma_max], dtype=torch.float64)
    c = float(sigma_data)
    theta = torch.linspace(math.atan(sigma_max / c), math.atan(sigma_min / c), steps, dtype=torch.float64)
    out = c * torch.tan(theta)
    out[0], out[-1] = sigma_max, sigma_min  # exact ends (tan∘atan rounds)
    return out


_SIGMA_SPACINGS = {"karras": karras, "exponential": exponential, "kl-optimal": kl_optimal}


def sigma_spacing(
    schedule,
    steps: int,
    spacing: str,
    *,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float | None = None,
    rho: float = KARRAS_RHO,
) -> torch.Tensor:
    """The σ-grid of ``spacing`` (karras, exponential, kl-optimal) with ``steps`` points, float64 [S]
    decreasing, with the defaults samplers use: σ_min = σ_0 and σ_max = min(σ_{T-1},
    :data:`DEFAULT_SIGMA_MAX`) (above it a grid wastes points; the start noise is read as x at σ_max),
    ``sigma_data`` (kl-optimal's c) :data:`DEFAULT_SIGMA_DATA`. A ValueError names a bad σ range."""
    if spacing not in _SIGMA_SPACINGS:
        raise ValueError(f"unknown σ-grid spacing {spacing!r}; allowed: {', '.join(SIGMA_SPACINGS)}")
    if sigma_max is None:
        sigma_max = min(sigma_range(schedule)[1], DEFAULT_SIGMA_MAX)
    kw = {"sigma_min": sigma_min, "sigma_max": sigma_max}
    if spacing == "karras":
        kw["rho"] = rho
    elif spacing == "kl-optimal":
        kw["sigma_data"] = DEFAULT_SIGMA_DATA if sigma_data is None else sigma_data
    return _SIGMA_SPACINGS[spacing](schedule, steps, **kw)


def t_from_sigma(schedule, sigmas) -> np.ndarray:
    """The model timestep of each σ: log σ interpolated linearly between the discrete steps
    (diffusers' ``_sigma_to_t``), float64 [S]; σ of a discrete step gives that step exactly."""
    log_s = np.log(schedule.sigmas.numpy())
    finite = np.isfinite(log_s)
    return np.interp(
        np.log(np.asarray(sigmas, dtype=np.float64)),
        log_s[finite],
        np.arange(schedule.num_timesteps, dtype=np.float64)[finite],
    )


def t_of_sigma(schedule, sigma: torch.Tensor) -> torch.Tensor:
    """The fractional model timestep of each σ [N] (log σ interpolated linearly between the discrete
    steps, the inverse of :func:`alpha_bar_at`), clamped to [0, T-1]; float64 [N] on σ's device. The
    batched torch form of :func:`t_from_sigma`, for a network that takes σ per sample
    (:class:`ddkit.consistency.ConsistencyNetwork`); its arithmetic, and so its last bits, differ."""
    log_s = schedule.on(schedule.sigmas, sigma.device).log()
    finite = torch.isfinite(log_s)
    log_s = log_s[finite]
    steps = torch.arange(schedule.num_timesteps, dtype=torch.float64, device=sigma.device)[finite]
    x = sigma.to(torch.float64).log().clamp(log_s[0], log_s[-1])
    hi = torch.searchsorted(log_s, x).clamp(1, len(log_s) - 1)
    lo = hi - 1
    w = (x - log_s[lo]) / (log_s[hi] - log_s[lo])
    return steps[lo] + w * (steps[hi] - steps[lo])


def alpha_bar_at(alpha_bars: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """ᾱ at (possibly fractional) timesteps ``t`` [N] of a schedule's ``alpha_bars`` [T]: log σ
    interpolated linearly between the discrete steps (the inverse of :func:`t_from_sigma`),
    ᾱ = 1/(1+σ²); integer t, and fractional t that land on a step, give ``alpha_bars[t]`` exactly.
    float64 [N] on t's device."""
    alpha_bars = alpha_bars.to(device=t.device, dtype=torch.float64)
    if not t.is_floating_point():
        return alpha_bars[t.long()]
    T = alpha_bars.numel()
    tt = t.detach().to(torch.float64).clamp(0, T - 1)
    lo = tt.floor().long().clamp(max=T - 1)
    hi = (lo + 1).clamp(max=T - 1)
    w = tt - lo.to(torch.float64)
    log_s = 0.5 * (torch.log1p(-alpha_bars) - torch.log(alpha_bars))
    log_sigma = (1 - w) * log_s[lo] + w * log_s[hi]
    return torch.where(w == 0, alpha_bars[lo], torch.sigmoid(-2 * log_sigma))


# ---- the grid a sampler walks ------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """The decreasing points a sampler visits: model timesteps ``t`` (ints on the discrete steps,
    floats on a σ-grid) and their ``alpha_bars`` (float64, Python floats: no device reads in the
    sampling loop). After the last point the sampler steps to ᾱ = 1 (σ = 0)."""

    t: tuple
    alpha_bars: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.t)

    def alpha_bar_after(self, i: int) -> float:
        """ᾱ of the point after point i: the next one, or 1 after the last."""
        return self.alpha_bars[i + 1] if i + 1 < len(self.t) else 1.0

    @property
    def sigmas(self) -> list[float]:
        return [math.sqrt((1 - a) / a) if a > 0 else math.inf for a in self.alpha_bars]

    def __iter__(self):
        return iter(zip(self.t, self.alpha_bars))


def _start(schedule, start_t) -> int:
    """The highest timestep a grid may use: ``start_t``, or T-1."""
    T = schedule.num_timesteps
    return T - 1 if start_t is None else integer("start_t", start_t, low=0, high=T - 1)


def _spacing_points(schedule, steps: int, spacing: str, top: int, solver: bool, force_top: bool) -> list[int]:
    """The integer points of an index or λ spacing over timesteps 0 … ``top`` (starting exactly at
    ``top`` when ``force_top``: a sampler started at start_t)."""
    T = top + 1
    if spacing == "logsnr":
        make = lambda n: logsnr(schedule, n, top=top)  # noqa: E731
    elif spacing in _INDEX_SPACINGS:
        make = lambda n: _INDEX_SPACINGS[spacing](T, n)  # noqa: E731
    else:
        raise ValueError(f"unknown spacing {spacing!r}; allowed: {', '.join(ALL_SPACINGS)}")
    if not is_int(steps) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an integer in [1, {T}] (the timesteps up to {top}), got {steps!r}")
    if not solver or spacing == "trailing":
        seq = make(steps).tolist()
    elif steps == T:
        seq = list(range(top, -1, -1))
    else:  # the first S of an (S+1)-point grid ending at t = 0, which the last step's σ = 0 replaces
        seq = make(steps + 1).tolist()[:-1]
    if force_top and seq[0] != top:
        seq[0] = top  # start exactly at start_t (the sampler's input is x at that t)
    return seq


def _check_sigmas(schedule, sigmas) -> list[float]:
    values = [float(s) for s in torch.as_tensor(sigmas, dtype=torch.float64).reshape(-1).tolist()]
    if len(values) > 1 and values[-1] == 0:
        values = values[:-1]  # a trailing 0 (k-diffusion's grids) is where the sampler ends anyway
    lo, hi = sigma_range(schedule)
    values = decreasing("sigmas", values, 0.0, math.inf)
    if values[-1] < lo * (1 - SIGMA_RTOL) or values[0] > hi * (1 + SIGMA_RTOL):
        raise ValueError(
            f"sigmas must lie in the schedule's σ range [{lo:.6g}, {hi:.6g}], got [{values[-1]:.6g}, {values[0]:.6g}]"
        )
    return [min(max(v, lo), hi) for v in values]  # an end off by rounding lands on the end step


def _point_alpha_bar(schedule, t) -> float:
    """ᾱ at one grid point: the step's own for an int, log-σ interpolation for a fractional t."""
    if isinstance(t, int):
        return schedule.alpha_bar(t)
    return float(alpha_bar_at(schedule.alpha_bars, torch.tensor([t], dtype=torch.float64))[0])


def _grid(schedule, points) -> Grid:
    return Grid(tuple(points), tuple(_point_alpha_bar(schedule, t) for t in points))


def _grid_from_sigmas(schedule, sigmas: list[float]) -> Grid:
    t = t_from_sigma(schedule, sigmas)
    return _grid(schedule, [int(round(v)) if abs(v - round(v)) < 1e-9 else float(v) for v in t.tolist()])


def _grid_from_timesteps(schedule, timesteps) -> Grid:
    seq = timesteps.tolist() if isinstance(timesteps, torch.Tensor) else list(timesteps)
    if any(not (is_int(t) or isinstance(t, (float, np.floating))) or isinstance(t, bool) for t in seq):
        raise ValueError("timesteps must be numbers: 0-based training timesteps (fractional ones lie between steps)")
    seq = [int(t) if is_int(t) else float(t) for t in seq]
    return _grid(schedule, decreasing("timesteps", seq, 0, schedule.num_timesteps - 1))


def sampling_grid(
    schedule,
    steps: int | None = None,
    spacing: str = "leading",
    *,
    timesteps=None,
    sigmas=None,
    start_t: int | None = None,
    solver: bool = False,
    rho: float = KARRAS_RHO,
) -> Grid:
    """The points a sampler visits: ``timesteps`` or ``sigmas`` if given, else ``steps`` points of
    ``spacing`` (:data:`ALL_SPACINGS`) from ``start_t`` (default T-1; the first point is exactly
    there) down to t = 0 (σ-grids: :func:`sigma_spacing`, from σ(start_t) if given); ``steps=None``:
    every timestep from ``start_t`` down. Every sampler resolves its grid here, once, before its loop.

    With ``start_t`` the first point is ``start_t`` itself (the spacing over 0 … start_t, its top point
    moved there), so that the sampler's input is x at start_t (SDEdit, image-to-image).

    ``solver=True`` is the multistep solvers' convention (DPM-Solver++, UniPC): the ``steps``
    evaluation points are the first ``steps`` of the (steps+1)-point grid that ends at t = 0, whose
    last point is replaced by the final step to σ = 0 (trailing and σ-grids: the ``steps`` points
    themselves). A point where ᾱ = 0 (zero terminal SNR) is refused: x̂₀ from ε divides by zero there.
    """
    given = [name for name, v in (("timesteps", timesteps), ("sigmas", sigmas)) if v is not None]
    if len(given) > 1:
        raise ValueError("give timesteps or sigmas, not both")
    if given and start_t is not None:
        raise ValueError(f"start_t applies to a spacing; {given[0]} already say where sampling starts")
    if timesteps is not None:
        grid = _grid_from_timesteps(schedule, timesteps)
    elif sigmas is not None:
        grid = _grid_from_sigmas(schedule, _check_sigmas(schedule, sigmas))
    elif spacing == TUNED:
        raise ValueError(
            "spacing 'tuned' is a sequence made for one model: pass timesteps=ddkit.tuning.tuned(path, ...) "
            "(ddkit sample --spacing tuned reads RUN/timesteps/SAMPLER-STEPS.json)"
        )
    elif spacing in _SIGMA_SPACINGS:
        sigma_max = None if start_t is None else float(schedule.sigmas[_start(schedule, start_t)])
        grid = _grid_from_sigmas(
            schedule, sigma_spacing(schedule, steps, spacing, sigma_max=sigma_max, rho=rho).tolist()
        )
    elif steps is None:  # every timestep from the top down (DDPM's ancestral sampling)
        grid = _grid(schedule, list(range(_start(schedule, start_t), -1, -1)))
    else:
        top = _start(schedule, start_t)
        grid = _grid(schedule, _spacing_points(schedule, steps, spacing, top, solver, force_top=start_t is not None))
    check_alpha_bars(grid)
    return grid


def check_alpha_bars(grid: Grid) -> None:
    """Refuse a :class:`Grid` that visits ᾱ = 0 (the last step of a zero-terminal-SNR schedule)."""
    bad = [t for t, a in zip(grid.t, grid.alpha_bars) if a == 0]
    if bad:
        raise ValueError(
            f"the schedule has ᾱ = 0 at timestep {bad[0]} (zero terminal SNR), where x̂₀ from ε "
            "divides by zero; sample with a sequence that starts below it (e.g. spacing 'leading')"
        )


def sigma_grid_options(
    schedule,
    options: dict,
    *,
    default_spacing: str,
    points_of,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    sigma_data: float | None = None,
) -> dict:
    """A sampler's ``options`` (steps, spacing, …) with ``steps``/``spacing`` replaced by the explicit
    ``sigmas`` of :func:`sigma_spacing` when ``sigma_min``/``sigma_max`` are given, or when the spacing
    is kl-optimal and the run's ``sigma_data`` is known; unchanged otherwise. ``points_of(steps)``:
    the grid points that ``steps`` evaluations buy; ``default_spacing``/``steps`` as the sampler's
    defaults. ValueErrors for σ bounds with a spacing that is not a σ-grid, or out of order."""
    spacing = options.get("spacing") or default_spacing
    wants = sigma_min is not None or sigma_max is not None
    explicit = "timesteps" in options or "sigmas" in options
    if not wants and (explicit or not (spacing == "kl-optimal" and sigma_data is not None)):
        return options
    if explicit:
        raise ParameterError("`sigma_min`/`sigma_max` shape a spacing's grid; an explicit grid is already whole")
    if spacing not in SIGMA_SPACINGS:
        raise ParameterError(
            f"`sigma_min`/`sigma_max` apply to the σ-grid spacings ({', '.join(SIGMA_SPACINGS)}), "
            f"not `spacing` {spacing!r}"
        )
    if sigma_min is not None and sigma_max is not None and not sigma_max > sigma_min:
        raise ParameterError(f"`sigma_max` must be above `sigma_min`, got {sigma_max:g} <= {sigma_min:g}")
    sig = sigma_spacing(
        schedule,
        points_of(options.get("steps")),
        spacing,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        sigma_data=sigma_data,
    )
    return {k: v for k, v in options.items() if k not in ("steps", "spacing")} | {"sigmas": sig.tolist()}
