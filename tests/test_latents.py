import math

import pytest
import torch

import ddkit


def test_endpoints_and_norm_on_the_sphere():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 3, 8, 8, generator=g), torch.randn(4, 3, 8, 8, generator=g)
    torch.testing.assert_close(ddkit.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(ddkit.slerp(z0, z1, 1.0), z1)
    # equal norms stay on the sphere; a straight line would shrink towards the origin
    z1 = z1 / z1.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * z0.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    mid = ddkit.slerp(z0, z1, 0.5)
    torch.testing.assert_close(mid.flatten(1).norm(dim=1), z0.flatten(1).norm(dim=1))
    assert (0.5 * (z0 + z1)).flatten(1).norm(dim=1).max() < z0.flatten(1).norm(dim=1).min()


def test_angle_is_linear_in_alpha():
    z0, z1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    for a in (0.25, 0.5, 0.75):
        z = ddkit.slerp(z0, z1, a)
        assert math.atan2(z[1].item(), z[0].item()) == pytest.approx(a * math.pi / 2, abs=1e-6)


def test_per_row_alpha_and_parallel_fallback():
    z0 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    z1 = torch.tensor([[0.0, 1.0], [2.0, 0.0]])  # second row parallel: linear interpolation
    out = ddkit.slerp(z0, z1, torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(out[1], torch.tensor([1.5, 0.0]))
    assert out[0].norm().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        ddkit.slerp(z0, z1[:1], 0.5)
    with pytest.raises(ValueError, match="alpha must be a float or a tensor of 2 values"):
        ddkit.slerp(z0, z1, torch.tensor([0.1, 0.2, 0.3]))
