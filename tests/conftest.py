import pytest
import torch

from ddkit.toy import GaussianMixture


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample energy distance 2E|A-B| - E|A-A'| - E|B-B'| (0 iff same law)."""
    a, b = a.double().reshape(a.shape[0], -1), b.double().reshape(b.shape[0], -1)
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


@pytest.fixture(scope="session")
def gmm():
    return GaussianMixture.default_2d()
