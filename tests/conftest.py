import os
from datetime import timedelta

import pytest
import torch
from hypothesis import settings

from ddkit.eval.energy import energy_distance  # noqa: F401  (tests import it from here)
from ddkit.oracle import GaussianMixture

# One fixed hypothesis profile for every run (CI, a newcomer's first run, a developer's): the same
# examples every time (derandomised), each with a deadline, so that a draw can never turn the suite
# into a lottery or a hang. HYPOTHESIS_PROFILE=explore draws new examples when hunting for bugs.
settings.register_profile("ddkit", derandomize=True, deadline=timedelta(seconds=60), print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=timedelta(seconds=60), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ddkit"))


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
