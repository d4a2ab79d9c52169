"""Operations on latents x_T: spherical interpolation (DDIM §5.3)."""

from __future__ import annotations

import torch


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha) -> torch.Tensor:
    """Spherical linear interpolation between latents (DDIM §5.3, after White 2016):

        θ = arccos(⟨z0, z1⟩ / (‖z0‖‖z1‖)),   slerp = sin((1-α)θ)/sin θ · z0 + sin(αθ)/sin θ · z1.

    z0, z1: [N, ...] batches of latents (each row one latent; the angle is taken over all
    dimensions but the first) or 1-D vectors [D]. ``alpha``: a float, or a tensor [N] for one
    α per row. α = 0 gives z0 and α = 1 gives z1. Falls back to linear interpolation where the
    latents are (anti)parallel enough that sin θ underflows. Computed in float64, returned in z0's dtype.
    """
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {list(z0.shape)} and {list(z1.shape)}")
    squeeze = z0.ndim == 1
    a, b = (z.double().reshape(1 if squeeze else z.shape[0], -1) for z in (z0, z1))
    alpha = torch.as_tensor(alpha, dtype=torch.float64, device=a.device).reshape(-1, 1)
    if alpha.shape[0] not in (1, a.shape[0]):
        raise ValueError(f"alpha must be a float or a tensor of {a.shape[0]} values, got {alpha.shape[0]}")
    cos = (a * b).sum(1, keepdim=True) / (a.norm(dim=1, keepdim=True) * b.norm(dim=1, keepdim=True))
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    sin = torch.sin(theta)
    safe = sin.abs() > 1e-6
    w0 = torch.where(safe, torch.sin((1 - alpha) * theta) / torch.where(safe, sin, 1.0), 1 - alpha)
    w1 = torch.where(safe, torch.sin(alpha * theta) / torch.where(safe, sin, 1.0), alpha)
    return (w0 * a + w1 * b).reshape(z0.shape).to(z0.dtype)
