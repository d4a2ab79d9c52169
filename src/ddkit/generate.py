"""Drawing samples from a trained network in batches: the piece the CLI, ``ddkit eval`` and the
trainer's previews share. The sampler comes from the registry (``ddkit.samplers.SAMPLERS``) and the
randomness is per sample (``ddkit.rng``): sample i depends only on (seed, i) and the sampler."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import checks
from .checks import ParameterError, positive_int
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


PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class AutocastNetwork(nn.Module):
    """A network run under ``torch.autocast`` in bf16 or fp16 and returning float32: ``f(x_t, t,
    y=None) -> ε``. Exposes the wrapped network's ``config`` and ``num_classes`` (as
    :class:`~ddkit.parameterization.EpsNetwork` does), so guidance and the samplers take it as is;
    only the network's own arithmetic changes precision, the sampler's stays float32."""

    def __init__(self, net: nn.Module, precision: str, device_type: str):
        super().__init__()
        self.net, self.precision, self.device_type = net, precision, device_type
        self.dtype = _AUTOCAST_DTYPES[precision]
        self.config = getattr(net, "config", None)
        self.num_classes = getattr(net, "num_classes", getattr(self.config, "num_classes", None))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            out = self.net(x_t, t, y)
        return out.float()


def autocast_network(net: nn.Module, precision: str, device: str | torch.device = "cpu") -> nn.Module:
    """``net`` itself for ``"fp32"``, else an :class:`AutocastNetwork` in ``precision`` (bf16 | fp16;
    fp16 needs a CUDA device)."""
    checks.choice("precision", precision, PRECISIONS)
    device_type = torch.device(device).type
    if precision == "fp32":
        return net
    if precision == "fp16" and device_type != "cuda":
        raise ParameterError("`precision` fp16 needs a CUDA device (on the CPU use bf16)")
    return AutocastNetwork(net, precision, device_type)


def plain_model_fn(model: nn.Module) -> ModelFnFor:
    """``y ↦ model_fn`` for a network ``model(x_t, t, y)``: the labels bound, no guidance."""
    return lambda y: lambda x, t: model(x, t, y)


class LabelCycle:
    """Sampling labels by sample index: every sample class ``label``, or 0, 1, …, K-1, 0, … (equal
    numbers of every class, in order). ``labels(start, stop)`` is the LongTensor of samples
    start … stop-1, so that labels, like samples, are made batch by batch."""

    def __init__(self, num_classes: int, label: int | None = None):
        if label is not None and (not checks.is_int(label) or not 0 <= label < num_classes):
            raise ParameterError(f"`label` must be in [0, {num_classes - 1}], got {label}")
        self.num_classes, self.label = num_classes, label

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if self.label is not None:
            return torch.full((stop - start,), int(self.label), dtype=torch.long)
        return torch.arange(start, stop) % self.num_classes


def sample_labels(num_classes: int | None, label: int | None = None) -> LabelCycle | None:
    """The labels of :class:`LabelCycle` when the network (or its classifier) has ``num_classes``
    classes; None for an unconditional network with no classifier (where ``label`` is an error)."""
    if num_classes is None:
        if label is not None:
            raise ParameterError("`label` needs a class-conditional network or a classifier; this one has no labels")
        return None
    return LabelCycle(num_classes, label)


class Trajectory:
    """A step callback for :func:`generate_batches` (``step_callback``) that keeps, for samples
    0 … num-1, what the sampler reports at every step: x̂₀ and x_t ([S, num, ...] float32, on the
    CPU), the timestep t and σ ([S] float64). Copies to the CPU only for those samples' batches."""

    def __init__(self, num: int = 8):
        self.num = positive_int("num", num)
        self.steps: dict[int, dict] = {}

    def __call__(self, start: int, info) -> None:
        take = min(self.num - start, info.x0.shape[0])
        if take <= 0:
            return
        rec = self.steps.setdefault(info.i, {"t": float(info.t), "sigma": float(info.sigma), "x0": [], "x_t": []})
        rec["x0"].append(info.x0[:take].float().cpu())
        rec["x_t"].append(info.x_t[:take].float().cpu())

    def arrays(self) -> dict[str, np.ndarray]:
        """{"x0": [S, n, ...], "x_t": [S, n, ...] float32, "t": [S], "sigma": [S] float64}."""
        steps = [self.steps[i] for i in sorted(self.steps)]
        if not steps:
            raise ValueError("the trajectory is empty: no step was reported")
        return {
            "x0": torch.stack([torch.cat(r["x0"]) for r in steps]).numpy(),
            "x_t": torch.stack([torch.cat(r["x_t"]) for r in steps]).numpy(),
            "t": np.array([r["t"] for r in steps], dtype=np.float64),
            "sigma": np.array([r["sigma"] for r in steps], dtype=np.float64),
        }


def start_noise(seed: int, indices: range, shape: tuple[int, ...], device: str | torch.device = "cpu"):
    """x_T [len(indices), *shape] for samples ``indices`` of a run seeded with ``seed``, and the
    per-sample generators the sampler continues with."""
    gens = SampleGenerators(seed, indices, device)
    return gens.randn((len(indices), *shape)), gens


@torch.no_grad()
def generate_batches(
    model: nn.Module,
    schedule: Schedule,
    num: int,
    *,
    sampler: str = "ddim",
    batch_size: int = 256,
    seed: int = 0,
    labels: torch.Tensor | Callable[[int, int], torch.Tensor] | None = None,
    model_fn_for: ModelFnFor | None = None,
    clip_x0=None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    step_callback: Callable[[int, object], None] | None = None,
    **sampler_options,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(start, x)`` batch by batch: samples start … start+len(x)-1 [n, ...] (float32, on the
    CPU) from ``model(x, t, y)``, so that a caller can stream ``num`` samples anywhere without
    holding them all. Arguments as :func:`generate`; they are checked before the first batch.
    ``labels`` may also be a function ``(start, stop) -> LongTensor`` (a :class:`LabelCycle`).
    ``step_callback(start, step_info)`` is the samplers' ``callback`` with the batch's first sample
    index (e.g. a :class:`Trajectory`)."""
    get_sampler(sampler)
    positive_int("num", num)
    positive_int("batch_size", batch_size)
    if isinstance(labels, torch.Tensor):
        if labels.shape != (num,):
            raise ValueError(f"labels must have shape [{num}], got {list(labels.shape)}")
        labels = _slicer(labels)
    device = torch.device(device)
    model_fn_for = model_fn_for or plain_model_fn(model)
    shape = sample_shape(model)
    with tqdm(total=num, desc=f"sampling ({sampler})", unit="sample", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, num, batch_size):
            n = min(batch_size, num - start)
            y = None if labels is None else labels(start, start + n).to(device)
            x_T, gens = start_noise(seed, range(start, start + n), shape, device)
            callback = None if step_callback is None else functools.partial(step_callback, start)
            x = run_sampler(
                sampler,
                model_fn_for(y),
                x_T,
                schedule,
                generator=gens,
                clip_x0=clip_x0,
                callback=callback,
                **sampler_options,
            )
            bar.update(n)
            yield start, x.float().cpu()


def generate(model: nn.Module, schedule: Schedule, num: int, **options) -> torch.Tensor:
    """``num`` samples [num, ...] (float32, on the CPU) from ``model(x, t, y)``.

    ``sampler``: a name in the registry (``ddkit.samplers.SAMPLERS``, default "ddim");
    ``sampler_options`` (steps, eta, spacing, order, variance, …; None = the sampler's default) go
    to it. ``labels`` (LongTensor [num]) condition a class-conditional network (the null label
    ``num_classes`` means unconditional). ``model_fn_for(y)`` turns a batch's labels (or None) into
    the ``model_fn`` the sampler calls: guidance wrappers plug in here (default: the network with
    ``y`` bound). Sample i's start noise and sampler noise come from its own generator seeded by
    (seed, i); ``batch_size`` (default 256) never changes a sample. See :func:`generate_batches` to
    stream them instead.
    """
    return torch.cat([x for _, x in generate_batches(model, schedule, num, **options)])


def _slicer(labels: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
    return lambda start, stop: labels[start:stop]


__all__ = [
    "PRECISIONS",
    "AutocastNetwork",
    "autocast_network",
    "Trajectory",
    "generate",
    "generate_batches",
    "sample_shape",
    "plain_model_fn",
    "start_noise",
    "LabelCycle",
    "sample_labels",
    "SAMPLERS",
]
