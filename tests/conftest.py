import os
from datetime import timedelta

import pytest
import torch
from hypothesis import settings

from ddkit.eval.energy import energy_distance  # noqa: F401  (tests import it from here)
from ddkit.oracle import GaussianMixture

# One fixed hypothesis profile for every run (CI, a newcomer's first run, a developer's): the same
# examples every time (derandomised), so that a draw can never turn the suite into a lottery, and no
# per-example deadline, which would make a result depend on the machine's speed (pyproject's
# per-test timeout turns a hang into a failure). HYPOTHESIS_PROFILE=explore draws new examples.
settings.register_profile("ddkit", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("explore", derandomize=False, deadline=timedelta(seconds=60), max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ddkit"))


@pytest.fixture(scope="session")
def gmm():
    return GaussianMixture.default_2d()


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test on one torch and one BLAS thread: the networks and tensors here are tiny, where one
    thread is faster, and on a busy machine threads that wait for each other are many times slower
    (a 3-step training of a tiny UNet: 10 s on one thread, 830 s on two, on 2 cores at load 15).
    Subprocesses get OMP_NUM_THREADS=1 from the tests that start them."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


# ---- runs that many tests share, trained once per test run (read-only: copy one before changing it)
SHARED_RUN = [
    "--batch-size",
    "32",
    "--model-channels",
    "8",
    "--log-every",
    "1",
    "--sample-every",
    "100",
    "--no-progress",
]


def _train_shared(tmp_path_factory, name: str, *args: str):
    from ddkit.cli import main

    run = tmp_path_factory.mktemp("shared") / name
    assert main(["train", "--out", str(run), *args, *SHARED_RUN]) == 0  # one thread (one_thread)
    return run


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, one_thread):
    """An unconditional UNet trained 3 steps on digits:train (checkpoints of steps 2 and 3, the
    preview grid of step 3): an untrained-quality run for the commands that read one."""
    return _train_shared(tmp_path_factory, "digits", "--data", "digits:train", "--steps", "3", "--ckpt-every", "2")


@pytest.fixture(scope="session")
def cond_run(tmp_path_factory, one_thread):
    """A class-conditional UNet (10 digit classes, label dropout for classifier-free guidance)
    trained 2 steps on digits:train."""
    return _train_shared(tmp_path_factory, "cond", "--data", "digits:train", "--steps", "2", "--class-cond")


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory, one_thread):
    """An MLP trained 2 steps on toy:moons with T = 50."""
    return _train_shared(tmp_path_factory, "toy", "--data", "toy:moons", "--num-timesteps", "50", "--steps", "2")
