"""ddkit: denoising diffusion models (DDPM, DDIM, guidance) for PyTorch.

The core is a set of pure functions over one model interface, ``model_fn(x_t, t) -> ε`` with
``t`` a tensor [N] of 0-based training timesteps. The layers: the math (``schedule``,
``timesteps``, ``forward``, ``parameterization``, ``losses``, ``samplers``, ``guidance``, …) ←
``nn`` ← ``data`` ← ``training`` ← ``eval`` ← ``cli``.
"""

from .forward import q_mean_variance, q_posterior, q_sample
from .guidance import autoguidance, classifier_free_guidance, classifier_guidance
from .interop.diffusers import export_diffusers, load_diffusers
from .latents import slerp
from .losses import diffusion_loss
from .nn import MLPConfig, MLPDenoiser, UNet, UNetConfig
from .parameterization import (
    eps_from_v,
    eps_from_x0,
    eps_network,
    model_fn_from,
    v_from_eps,
    v_from_x0_eps,
    x0_from_eps,
    x0_from_v,
)
from .samplers import (
    ddim_invert,
    ddim_sample,
    ddim_sigma,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    dpm_solver_sample,
    euler_sample,
    heun_sample,
    unipc_sample,
)
from .schedule import Schedule
from .timesteps import SPACINGS, log_snr, make_timesteps
from .training import load, train, train_classifier
from .tuning import TunedTimesteps, tune_timesteps

__version__ = "0.2.0"

__all__ = [
    "Schedule",
    "make_timesteps",
    "log_snr",
    "SPACINGS",
    "dpm_solver_sample",
    "unipc_sample",
    "heun_sample",
    "euler_sample",
    "tune_timesteps",
    "TunedTimesteps",
    "q_sample",
    "q_mean_variance",
    "q_posterior",
    "x0_from_eps",
    "eps_from_x0",
    "v_from_eps",
    "eps_from_v",
    "x0_from_v",
    "v_from_x0_eps",
    "model_fn_from",
    "eps_network",
    "diffusion_loss",
    "ddpm_sample",
    "ddpm_step",
    "ddim_sample",
    "ddim_step",
    "ddim_sigma",
    "ddim_invert",
    "slerp",
    "classifier_free_guidance",
    "classifier_guidance",
    "autoguidance",
    "UNet",
    "UNetConfig",
    "MLPDenoiser",
    "MLPConfig",
    "load",
    "train",
    "train_classifier",
    "load_diffusers",
    "export_diffusers",
]
