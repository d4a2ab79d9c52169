"""The one table of samplers: name → function. ``ddkit sample --sampler``, ``ddkit eval``,
:func:`ddkit.generate.generate`, the trainer's previews and the benchmarks all read it, so a
sampler added here gets the CLI, guidance and evaluation with no other change.

Every entry is a plain function ``fn(model_fn, x_T, schedule, *, generator, progress, clip_x0,
timesteps, sigmas, start_t, callback, denoised_fn, **options) -> x_0``: every sampler takes an
explicit grid (``timesteps`` or ``sigmas``), a ``start_t``, a per-step ``callback`` and a
``denoised_fn(x0, info) -> x0`` applied to each data prediction before it is used; ``options``
names the keyword options it takes besides those (a subset of :data:`OPTIONS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..parameterization import ModelFn
from ..rng import Generator
from ..schedule import Schedule

OPTIONS = ("steps", "eta", "spacing", "order", "variance", "s_churn", "s_tmin", "s_tmax", "s_noise")
# what every sampler takes (the grid, where it starts, the per-step report and the x̂₀ hook)
COMMON_OPTIONS = ("timesteps", "sigmas", "start_t", "callback", "denoised_fn")


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its function, the options it takes, and one line of help."""

    name: str
    fn: Callable[..., torch.Tensor]
    options: tuple[str, ...]
    help: str


SAMPLERS: dict[str, SamplerSpec] = {}
"""name → :class:`SamplerSpec` of every registered sampler (filled by :func:`register_sampler`)."""


def register_sampler(name: str, fn: Callable[..., torch.Tensor], options: tuple[str, ...], help: str) -> SamplerSpec:
    """Add a sampler to the table (a new name only; ``options`` ⊆ :data:`OPTIONS`)."""
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown sampler option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(OPTIONS)}")
    if name in SAMPLERS:
        raise ValueError(f"a sampler named {name!r} is already registered")
    SAMPLERS[name] = spec = SamplerSpec(name, fn, tuple(options), help)
    return spec


def get_sampler(name: str) -> SamplerSpec:
    """The registered sampler ``name``; a ValueError names the allowed ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}") from None


def run_sampler(
    name: str,
    model_fn: ModelFn,
    x_T: torch.Tensor,
    schedule: Schedule,
    *,
    generator: Generator = None,
    progress: bool = False,
    clip_x0=None,
    **options,
) -> torch.Tensor:
    """Sample with the registered sampler ``name``. Options set to None take the sampler's own
    default; an option the sampler does not take (e.g. ``eta`` for ``ddpm``) is an error."""
    spec = get_sampler(name)
    given = {k: v for k, v in options.items() if v is not None}
    common = {k: given.pop(k) for k in COMMON_OPTIONS if k in given}
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown sampler option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS)}")
    unused = sorted(set(given) - set(spec.options))
    if unused:
        takes = ", ".join(spec.options) or "no options"
        raise ValueError(f"sampler {name!r} does not take {', '.join(unused)} (it takes {takes})")
    return spec.fn(model_fn, x_T, schedule, generator=generator, progress=progress, clip_x0=clip_x0, **common, **given)
