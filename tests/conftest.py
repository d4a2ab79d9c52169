import pytest

from ddkit.eval.energy import energy_distance  # noqa: F401  (tests import it from here)
from ddkit.toy import GaussianMixture


@pytest.fixture(scope="session")
def gmm():
    return GaussianMixture.default_2d()
