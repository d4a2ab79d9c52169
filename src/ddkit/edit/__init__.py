"""Editing and restoration with any trained model: pure functions over ``model_fn(x_t, t) -> ε``,
like the samplers (and built on them), so guidance wrappers compose with every one.

- :func:`sdedit` — SDEdit (Meng et al. 2022): noise to strength·T, denoise with any sampler.
- :func:`inpaint` — RePaint (Lugmayr et al. 2022) or plain replacement inpainting.
- :func:`restore` — linear inverse problems y = A(x₀): DDNM (Wang et al. 2023) or DPS (Chung et
  al. 2023), with the operators of :mod:`ddkit.edit.operators` or any object with their interface.
- :func:`translate` — class translation by DDIB (Su et al. 2023).
- :func:`interpolate` — slerp of DDIM latents (DDIM §5.3).
- :data:`METHODS` and :func:`run_edit` — the table ``ddkit edit`` reads and its one entry point.

Randomness comes from ``generator`` (a ``torch.Generator`` or :class:`ddkit.rng.SampleGenerators`
for per-sample noise); schedule arithmetic is float64. The exact posterior these methods should
reach on a Gaussian mixture is :meth:`ddkit.oracle.GaussianMixture.posterior`.
"""

from . import operators
from .inpaint import INPAINT_METHODS, inpaint, repaint_walk
from .masks import MASK_PRESETS, check_mask, mask_preset
from .methods import METHODS, EditMethod, EditResult, check_edit, check_options, get_method, run_edit
from .operators import Blur, Downsample, Grayscale, Linear, Mask, parse_operator
from .restore import RESTORE_METHODS, restore
from .sdedit import sdedit, strength_timestep
from .translate import interpolate, translate

__all__ = [
    "sdedit",
    "strength_timestep",
    "inpaint",
    "repaint_walk",
    "INPAINT_METHODS",
    "restore",
    "RESTORE_METHODS",
    "translate",
    "interpolate",
    "operators",
    "Mask",
    "Downsample",
    "Grayscale",
    "Blur",
    "Linear",
    "parse_operator",
    "MASK_PRESETS",
    "mask_preset",
    "check_mask",
    "METHODS",
    "EditMethod",
    "EditResult",
    "get_method",
    "check_options",
    "check_edit",
    "run_edit",
]
