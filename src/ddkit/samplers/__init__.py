"""Samplers: plain functions ``(model_fn, x_T, schedule, *, …) -> x_0`` with no hidden state, and
the registry (:data:`SAMPLERS`) that the CLI, :func:`ddkit.generate.generate` and the benchmarks read."""

from .common import COMMON, Sampling, StepInfo
from .ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step
from .ddpm import ddpm_sample, ddpm_step, ddpm_variance
from .dpm_solver import dpm_solver_sample, dpm_solver_step
from .edm import euler_sample, heun_sample
from .registry import SAMPLERS, SamplerSpec, get_sampler, register_sampler, run_sampler
from .unipc import unipc_corrector_step, unipc_predictor_step, unipc_sample

__all__ = ["ddim_invert", "ddim_sample", "ddim_sigma", "ddim_step", "ddpm_sample", "ddpm_step", "ddpm_variance"]
__all__ += ["dpm_solver_sample", "dpm_solver_step", "unipc_sample", "unipc_predictor_step", "unipc_corrector_step"]
__all__ += ["euler_sample", "heun_sample", "SAMPLERS", "SamplerSpec", "get_sampler", "register_sampler", "run_sampler"]
__all__ += ["COMMON", "Sampling", "StepInfo"]
