"""The one table of samplers: name → function, options and their defaults. ``ddkit sample
--sampler``, ``ddkit eval``, :func:`ddkit.generate.generate`, :mod:`ddkit.tuning`, the trainer's
previews and the benchmarks all read it, so a sampler added here gets the CLI, guidance and
evaluation with no other change.

Every entry is a plain function ``fn(model_fn, x_T, schedule, *, **options, **common) -> x_0``:
``options`` are its own (:attr:`SamplerSpec.defaults`, a subset of :data:`OPTIONS`, with the
defaults the function's signature has), ``common`` the keywords every sampler takes
(:data:`ddkit.samplers.common.COMMON`: the grid, where it starts, the per-step report and the
x̂₀ hook).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..parameterization import ModelFn
from ..schedule import Schedule
from .common import COMMON
from .consistency import consistency_sample
from .ddim import ddim_sample
from .ddpm import ddpm_sample
from .dpm_solver import dpm_solver_sample
from .edm import euler_sample, heun_sample
from .unipc import unipc_sample

OPTIONS = ("steps", "eta", "spacing", "order", "variance", "s_churn", "s_tmin", "s_tmax", "s_noise", "gamma")
CHURN = {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": math.inf, "s_noise": 1.0}


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, the options it takes with their defaults, and what it is
    in one line (``summary``; :attr:`help` adds the defaults)."""

    name: str
    fn: Callable[..., torch.Tensor]
    defaults: dict
    summary: str

    @property
    def options(self) -> tuple[str, ...]:
        """The names of the options it takes (a subset of :data:`OPTIONS`)."""
        return tuple(self.defaults)

    @property
    def help(self) -> str:
        """The summary and the defaults, as ``ddkit sample --help`` shows them."""
        shown = (f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.defaults.items())
        return f"{self.summary} (defaults: {', '.join(shown)})"


SAMPLERS: dict[str, SamplerSpec] = {}
"""name → :class:`SamplerSpec` of every registered sampler (filled by :func:`register_sampler`)."""


def register_sampler(name: str, fn: Callable[..., torch.Tensor], defaults: dict, help: str) -> SamplerSpec:
    """Add a sampler to the table (a new name only; the keys of ``defaults`` ⊆ :data:`OPTIONS`)."""
    unknown = set(defaults) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown sampler option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(OPTIONS)}")
    if name in SAMPLERS:
        raise ValueError(f"a sampler named {name!r} is already registered")
    SAMPLERS[name] = spec = SamplerSpec(name, fn, dict(defaults), help)
    return spec


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name``; a ValueError names the allowed ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}") from None


def run_sampler(name: str, model_fn: ModelFn, x_T: torch.Tensor, schedule: Schedule, **options) -> torch.Tensor:
    """Sample with the registered sampler ``name``; ``options``: its own and the common keywords
    (:data:`~ddkit.samplers.common.COMMON`). Options set to None take the sampler's default; an
    option the sampler does not take (e.g. ``eta`` for ``ddpm``) is an error."""
    spec = get_sampler(name)
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(OPTIONS) - set(COMMON))
    if unknown:
        raise ValueError(f"unknown sampler option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS)}")
    unused = sorted(set(given) - set(spec.options) - set(COMMON))
    if unused:
        takes = ", ".join(spec.options) or "no options"
        raise ValueError(f"sampler {name!r} does not take {', '.join(unused)} (it takes {takes})")
    return spec.fn(model_fn, x_T, schedule, **given)


register_sampler(
    "ddim",
    ddim_sample,
    {"steps": 50, "eta": 0.0, "spacing": "leading"},
    "DDIM (Song et al. 2020) on a sub-sequence of timesteps; eta 0 deterministic, 1 DDPM-like",
)
register_sampler(
    "ddpm",
    ddpm_sample,
    {"variance": "small"},
    "DDPM ancestral sampling over all T steps (Ho et al. 2020), variance small (β̃) or large (β)",
)
register_sampler(
    "dpm++", dpm_solver_sample, {"steps": 10, "order": 2, "spacing": "leading"}, "DPM-Solver++ (Lu et al. 2022), ODE"
)
register_sampler(
    "unipc", unipc_sample, {"steps": 10, "order": 2, "spacing": "leading"}, "UniPC bh2 (Zhao et al. 2023), ODE"
)
register_sampler(
    "heun",
    heun_sample,
    {"steps": 19, "spacing": "karras"} | CHURN,
    "EDM's Heun (Karras et al. 2022, Algorithm 2), the last step Euler; steps = model evaluations, odd "
    "(N points cost 2N-1); s_churn > 0 adds noise",
)
register_sampler(
    "euler",
    euler_sample,
    {"steps": 10, "spacing": "kl-optimal"} | CHURN,
    "EDM's Euler (Karras et al. 2022), DDIM η=0 without churn; s_churn > 0 adds noise",
)
register_sampler(
    "consistency",
    consistency_sample,
    {"steps": 1, "gamma": 1.0},
    "multistep consistency sampling (Song et al. 2023) for a student made by ddkit distill: model evaluations "
    "from σ = 80, re-noised between them (gamma 1 fresh noise, 0 the model's own: CTM's γ); a student takes "
    "1 or 2, re-noised to its recorded σ with its recorded γ",
)
