"""Samplers: plain functions ``(model_fn, x_T, schedule, *, …) -> x_0`` with no hidden state, and
the registry (:data:`SAMPLERS`) that the CLI, :func:`ddkit.generate.generate` and the benchmarks read."""

from ..timesteps import dpm_solver_timesteps
from .common import StepInfo
from .consistency import consistency_sample
from .ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step
from .ddpm import ddpm_sample, ddpm_step, ddpm_variance
from .dpm_solver import dpm_solver_sample, dpm_solver_step
from .edm import CHURN_OPTIONS, euler_sample, heun_sample
from .registry import COMMON_OPTIONS, SAMPLERS, SamplerSpec, get_sampler, register_sampler, run_sampler
from .unipc import unipc_corrector_step, unipc_predictor_step, unipc_sample

register_sampler(
    "ddim",
    ddim_sample,
    ("steps", "eta", "spacing"),
    "DDIM (Song et al. 2020) on a sub-sequence of timesteps; eta 0 deterministic, 1 DDPM-like",
)
register_sampler(
    "ddpm",
    ddpm_sample,
    ("variance",),
    "DDPM ancestral sampling over all T steps (Ho et al. 2020), variance small (β̃) or large (β)",
)
register_sampler(
    "dpm++",
    dpm_solver_sample,
    ("steps", "order", "spacing"),
    "DPM-Solver++ multistep (Lu et al. 2022), order 2 or 3, deterministic, 10 steps by default",
)
register_sampler(
    "unipc",
    unipc_sample,
    ("steps", "order", "spacing"),
    "UniPC multistep predictor-corrector (Zhao et al. 2023; bh2, as diffusers), order 2 or 3, "
    "deterministic, 10 steps by default",
)
register_sampler(
    "heun",
    heun_sample,
    ("steps", "spacing") + CHURN_OPTIONS,
    "EDM's Heun sampler (Karras et al. 2022, Algorithm 2), second order, the last step Euler, on a karras "
    "σ-grid by default; steps = model evaluations, odd (N points cost 2N-1; default 19); s_churn > 0 adds noise",
)
register_sampler(
    "euler",
    euler_sample,
    ("steps", "spacing") + CHURN_OPTIONS,
    "EDM's Euler sampler (Karras et al. 2022), on a karras σ-grid by default (10 steps); DDIM η=0 "
    "without churn; s_churn > 0 adds noise",
)
register_sampler(
    "consistency",
    consistency_sample,
    ("steps",),
    "multistep consistency sampling (Song et al. 2023) for a distilled student (ddkit distill): model "
    "evaluations from σ = 80 with fresh noise between them; a student takes 1 (default) or 2, re-noised to "
    "its recorded σ",
)

__all__ = [
    "consistency_sample",
    "euler_sample",
    "heun_sample",
    "dpm_solver_sample",
    "dpm_solver_step",
    "dpm_solver_timesteps",
    "ddim_invert",
    "ddim_sample",
    "ddim_sigma",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "ddpm_variance",
    "unipc_sample",
    "unipc_predictor_step",
    "unipc_corrector_step",
    "SAMPLERS",
    "SamplerSpec",
    "StepInfo",
    "COMMON_OPTIONS",
    "get_sampler",
    "register_sampler",
    "run_sampler",
]
