"""Class translation and interpolation through the DDIM latent x_T.

    translate (DDIB: Su et al. 2023, "Dual Diffusion Implicit Bridges for Image-to-Image
               Translation", Algorithm 1)
        x_T = DDIM inversion of x₀ with the source class (or unconditionally)
        x̃₀  = DDIM sampling (η = 0) from x_T with the target class, under classifier-free guidance
              ε̃ = ε(x_t, ∅) + w·(ε(x_t, y) - ε(x_t, ∅))   (or classifier guidance with a classifier)
    interpolate (DDIM §5.3)
        z_a, z_b = DDIM inversion of x_a and x_b;  frame f = DDIM sampling from slerp(z_a, z_b, f/(F-1))

With an exact ε and enough steps the inversion is the inverse of sampling, so the translation keeps
what the two classes share (the encoding's layout) and the end frames of an interpolation are the
inputs themselves.
"""

from __future__ import annotations

import torch

from ..checks import ParameterError, integer
from ..checks import labels as check_labels
from ..guidance import classifier_free_guidance, classifier_guidance, network_num_classes
from ..latents import slerp
from ..parameterization import ModelFn
from ..samplers import ddim_invert, ddim_sample
from ..schedule import Schedule

DEFAULT_GUIDANCE_SCALE = 3.0  # chosen on digits:train inputs (docs/editing.md)


def _wrappers(model_fn_cond, classifier, null_label, schedule: Schedule):
    """(labels, scale) ↦ model_fn: classifier-free guidance of a class-conditional network, or
    classifier guidance of an unconditional one; labels None means unconditional."""
    if classifier is None:
        if network_num_classes(model_fn_cond) is None and null_label is None:
            raise ParameterError(
                "method translate needs a class-conditional network (or `null_label` for a bare function) "
                "or a `classifier` for an unconditional one"
            )

        def cond(labels, scale):
            if labels is None:
                return classifier_free_guidance(model_fn_cond, 0, 0.0, null_label=null_label)
            return classifier_free_guidance(model_fn_cond, labels, scale, null_label=null_label)

        return cond, network_num_classes(model_fn_cond)
    if network_num_classes(model_fn_cond) is not None:
        raise ParameterError("a `classifier` guides an unconditional network; this one is class-conditional")

    def uncond(x, t):
        return model_fn_cond(x, t)

    def guided(labels, scale):
        return uncond if labels is None else classifier_guidance(uncond, classifier, labels, scale, schedule)

    return guided, network_num_classes(classifier)


@torch.no_grad()
def translate(
    model_fn_cond,
    x0: torch.Tensor,
    schedule: Schedule,
    *,
    target,
    source=None,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    steps: int = 50,
    spacing: str = "leading",
    refine: int = 1,
    classifier=None,
    null_label: int | None = None,
    clip_x0=None,
    progress: bool = False,
) -> torch.Tensor:
    """DDIB class translation of x0 [N, ...] to the ``target`` class(es) → [N, ...], or
    [N, M, ...] for targets [N, M] (M per input; each input is inverted once).

    ``model_fn_cond(x_t, t, y) -> ε``: a class-conditional network (ddkit's; the null label is its
    ``num_classes``, or give ``null_label``). ``source``: the inputs' labels (int or [N]) to invert
    with, or None to invert unconditionally. ``target``: int, [N] or [N, M]. ``guidance_scale`` w of
    the classifier-free guidance while sampling (1: plain conditional). With a ``classifier(x_t, t)
    -> logits`` the network is unconditional and w is the classifier-guidance scale. Inversion
    and sampling: DDIM η = 0 on the same grid (``steps``, ``spacing``; ``refine`` as
    :func:`~ddkit.samplers.ddim_invert`).
    """
    make, num_classes = _wrappers(model_fn_cond, classifier, null_label, schedule)
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point() or x0.ndim < 2:
        raise ValueError("x0 must be a floating-point tensor [N, ...]")
    n = x0.shape[0]
    many = isinstance(target, torch.Tensor) and target.ndim == 2
    if many:
        target = check_labels(target.reshape(-1), num_classes, "target").reshape(target.shape)
    else:
        target = check_labels(target, num_classes, "target")
    if target.ndim == 0:
        target = target.expand(n)
    if target.shape[0] != n:
        raise ParameterError(f"`target` has {target.shape[0]} rows for {n} inputs")
    if source is not None:
        source = check_labels(source, num_classes, "source")
    grid = dict(steps=steps, spacing=spacing)
    x_T = ddim_invert(make(source, 1.0), x0, schedule, refine=refine, progress=progress, **grid)
    m = target.shape[1] if many else 1  # each latent sampled once per target
    x_T = x_T.repeat_interleave(m, dim=0)
    out = ddim_sample(
        make(target.reshape(-1), guidance_scale), x_T, schedule, clip_x0=clip_x0, progress=progress, **grid
    )
    return out.reshape(n, m, *x0.shape[1:]) if many else out


@torch.no_grad()
def interpolate(
    model_fn: ModelFn,
    xa: torch.Tensor,
    xb: torch.Tensor,
    schedule: Schedule,
    *,
    frames: int = 8,
    steps: int = 50,
    spacing: str = "leading",
    refine: int = 1,
    clip_x0=None,
    progress: bool = False,
) -> torch.Tensor:
    """Interpolate between xa and xb [N, ...] (pairs) through their DDIM latents (DDIM §5.3):
    invert both, take ``frames`` ≥ 2 points of :func:`~ddkit.latents.slerp` between the latents
    (α = 0 … 1), sample each with DDIM η = 0 → [N, frames, ...]; frame 0 reconstructs xa and the
    last xb."""
    frames = integer("frames", frames, low=2)
    if not isinstance(xa, torch.Tensor) or not isinstance(xb, torch.Tensor) or xa.shape != xb.shape:
        raise ParameterError("`xa` and `xb` must be tensors of one shape [N, ...] (pairs to interpolate)")
    n = xa.shape[0]
    grid = dict(steps=steps, spacing=spacing)
    z = ddim_invert(model_fn, torch.cat([xa, xb]), schedule, refine=refine, progress=progress, **grid)
    za, zb = z[:n].repeat_interleave(frames, 0), z[n:].repeat_interleave(frames, 0)
    alpha = torch.linspace(0, 1, frames, dtype=torch.float64).repeat(n)
    x = ddim_sample(model_fn, slerp(za, zb, alpha), schedule, clip_x0=clip_x0, progress=progress, **grid)
    return x.reshape(n, frames, *xa.shape[1:])
