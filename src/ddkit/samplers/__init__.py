"""Samplers: plain functions ``(model_fn, x_T, schedule, *, …) -> x_0`` with no hidden state."""

from .ddim import ddim_invert, ddim_sample, ddim_sigma, ddim_step
from .ddpm import ddpm_sample, ddpm_step, ddpm_variance

__all__ = ["ddim_invert", "ddim_sample", "ddim_sigma", "ddim_step", "ddpm_sample", "ddpm_step", "ddpm_variance"]
