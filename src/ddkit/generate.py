"""Drawing samples from a trained network in batches: the piece the CLI, ``ddkit eval`` and the
trainer's previews share. The sampler comes from the registry (``ddkit.samplers.SAMPLERS``) and the
randomness is per sample (``ddkit.rng``): sample i depends only on (seed, i) and the sampler."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from .parameterization import ModelFn
from .rng import SampleGenerators
from .samplers import SAMPLERS, get_sampler, run_sampler
from .schedule import Schedule

ModelFnFor = Callable[[torch.Tensor | None], ModelFn]


def sample_shape(model: nn.Module) -> tuple[int, ...]:
    """The shape of one sample the network denoises: (C, H, W) for a UNet, (D,) for an MLP."""
    cfg = model.config
    if hasattr(cfg, "image_size"):
        return (cfg.in_channels, cfg.image_size, cfg.image_size)
    return (cfg.dim,)


def plain_model_fn(model: nn.Module) -> ModelFnFor:
    """``y ↦ model_fn`` for a network ``model(x_t, t, y)``: the labels bound, no guidance."""
    return lambda y: (lambda x, t: model(x, t, y))


def start_noise(seed: int, indices: range, shape: tuple[int, ...], device: str | torch.device = "cpu"):
    """x_T [len(indices), *shape] for samples ``indices`` of a run seeded with ``seed``, and the
    per-sample generators the sampler continues with."""
    gens = SampleGenerators(seed, indices, device)
    return gens.randn((len(indices), *shape)), gens


@torch.no_grad()
def generate(
    model: nn.Module,
    schedule: Schedule,
    num: int,
    *,
    sampler: str = "ddim",
    batch_size: int = 256,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    model_fn_for: ModelFnFor | None = None,
    clip_x0=None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    **sampler_options,
) -> torch.Tensor:
    """``num`` samples [num, ...] (float32, on the CPU) from ``model(x, t, y)``.

    ``sampler``: a name in the registry (``ddkit.samplers.SAMPLERS``); ``sampler_options`` (steps,
    eta, spacing, order, variance; None = the sampler's default) go to it. ``labels`` (LongTensor
    [num]) condition a class-conditional network (the null label ``num_classes`` means
    unconditional). ``model_fn_for(y)`` turns a batch's labels (or None) into the ``model_fn`` the
    sampler calls: guidance wrappers plug in here (default: the network with ``y`` bound).
    Sample i's start noise and sampler noise come from its own generator seeded by (seed, i).
    """
    get_sampler(sampler)
    if num < 1 or batch_size < 1:
        raise ValueError(f"num and batch_size must be positive, got num={num}, batch_size={batch_size}")
    if labels is not None and labels.shape != (num,):
        raise ValueError(f"labels must have shape [{num}], got {list(labels.shape)}")
    device = torch.device(device)
    model_fn_for = model_fn_for or plain_model_fn(model)
    shape = sample_shape(model)
    out = []
    bar = tqdm(total=num, desc=f"sampling ({sampler})", unit="sample", disable=not progress, dynamic_ncols=True)
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        y = None if labels is None else labels[start:start + n].to(device)
        x_T, gens = start_noise(seed, range(start, start + n), shape, device)
        x = run_sampler(sampler, model_fn_for(y), x_T, schedule, generator=gens, clip_x0=clip_x0, **sampler_options)
        out.append(x.float().cpu())
        bar.update(n)
    bar.close()
    return torch.cat(out)


__all__ = ["generate", "sample_shape", "plain_model_fn", "start_noise", "SAMPLERS"]
