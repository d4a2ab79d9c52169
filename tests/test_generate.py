"""The sampler registry and per-sample randomness shared by generate, the CLI and the benchmarks."""

import pytest
import torch

import ddkit
from ddkit.generate import generate, start_noise
from ddkit.nn import MLPDenoiser
from ddkit.rng import SampleGenerators, sample_seed
from ddkit.samplers import SAMPLERS, get_sampler, run_sampler


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MLPDenoiser(dim=2, hidden=16, depth=1).eval()


def test_registry_lists_the_samplers_with_one_signature():
    assert {"ddim", "ddpm"} <= set(SAMPLERS)
    assert get_sampler("ddim").fn is ddkit.ddim_sample
    with pytest.raises(ValueError, match="unknown sampler 'lms'; allowed: .*ddim"):
        get_sampler("lms")


def test_run_sampler_rejects_options_the_sampler_does_not_take(net):
    s = ddkit.Schedule.linear(50)
    x_T = torch.randn(4, 2)
    with pytest.raises(ValueError, match="'ddpm' does not take eta"):
        run_sampler("ddpm", lambda x, t: net(x, t), x_T, s, eta=0.5)
    # None means "the sampler's default" and is never an error
    out = run_sampler("ddpm", lambda x, t: net(x, t), x_T, s, eta=None, generator=torch.Generator().manual_seed(0))
    assert out.shape == (4, 2)


@pytest.mark.parametrize("sampler, options", [("ddim", {"steps": 10, "eta": 0.7}), ("ddpm", {})])
def test_a_sample_depends_only_on_seed_and_index(net, sampler, options):
    s = ddkit.Schedule.linear(40)
    a = generate(net, s, 7, sampler=sampler, batch_size=7, seed=3, **options)
    b = generate(net, s, 7, sampler=sampler, batch_size=3, seed=3, **options)
    c = generate(net, s, 4, sampler=sampler, batch_size=2, seed=3, **options)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a[:4], c, rtol=0, atol=0)
    d = generate(net, s, 7, sampler=sampler, batch_size=7, seed=4, **options)
    assert (a - d).abs().min() > 0  # another seed changes every sample


def test_start_noise_is_shared_by_every_sampler_and_standard_normal():
    x, _ = start_noise(0, range(5, 9), (3,))
    again = SampleGenerators(0, [6, 7]).randn((2, 3))
    torch.testing.assert_close(x[1:3], again, rtol=0, atol=0)
    big, _ = start_noise(1, range(4000), (8,))
    assert abs(big.mean()) < 0.02 and abs(big.std() - 1) < 0.02
    assert sample_seed(0, 1) != sample_seed(1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        sample_seed(-1, 0)
