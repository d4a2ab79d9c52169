"""ddkit: denoising diffusion models (DDPM, DDIM, guidance) for PyTorch.

The core is a set of pure functions over one model interface, ``model_fn(x_t, t) -> ε`` with
``t`` a tensor [N] of 0-based training timesteps. The layers, each module importing only those
before it (``tests/test_layers.py`` enforces it, function-level imports included):

    version ← options ← checks ← rng ← timesteps ← schedule ← forward ← parameterization ← losses
    ← guidance ← latents ← oracle ← samplers ← consistency ← edit ← klub ← tuning ← generate ← plots
    ← nn ← data ← eval ← training ← interop ← tasks ← cli

the math first (grids, schedules, the forward process, ε/x̂₀/v, losses, guidance wrappers, the
exact oracle, the samplers, editing and timestep tuning on top of them), then the machinery
(networks, data sets, metrics, the trainer, diffusers interop), ``tasks`` (what the commands do,
callable from Python: ``sample_run``, ``evaluate_run``, ``edit_run``, ``tune_steps``) and the
command line, which only parses. This module only gathers the public names, and sets one default
for the OpenMP runtime before torch loads it (below).
"""

import os as _os
import sys as _sys

# GNU OpenMP (torch's CPU thread pool) spins 300,000 times at each barrier before it sleeps. On a
# machine whose cores are busy with other processes a spinning thread holds the core its partner
# waits for, and a training step took 45 s instead of 0.15 s (docs/training.md#busy-machines). A
# short spin costs nothing when the machine is idle. Only a default: a value the user set wins, and
# it does nothing once torch is imported (libgomp reads it when it loads).
if "torch" not in _sys.modules:
    _os.environ.setdefault("GOMP_SPINCOUNT", "20000")

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
from .tasks import edit_run, evaluate_run, sample_run, tune_steps
from .timesteps import SPACINGS, log_snr, make_timesteps
from .training import load, train, train_classifier
from .tuning import TunedTimesteps, tune_timesteps
from .version import __version__ as __version__

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
    "sample_run",
    "evaluate_run",
    "edit_run",
    "tune_steps",
]
