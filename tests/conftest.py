import pytest
import torch

from ddkit.eval.energy import energy_distance  # noqa: F401  (tests import it from here)
from ddkit.oracle import GaussianMixture


@pytest.fixture(scope="session")
def gmm():
    return GaussianMixture.default_2d()


@pytest.fixture(scope="module")
def one_thread():
    """Small linear algebra: one torch and one BLAS thread is faster, and far faster on a busy
    machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
