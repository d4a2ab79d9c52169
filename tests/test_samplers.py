import inspect
import math

import pytest
import torch

import ddkit
import ddkit.samplers
from conftest import energy_distance
from ddkit.oracle import GaussianMixture
from ddkit.samplers.ddpm import ddpm_variance

S = ddkit.Schedule.linear()


def _mode_stats(gmm, x):
    """Assign samples to the nearest mode: (fraction per mode [K], within-mode std)."""
    d = torch.cdist(x.double(), gmm.means)
    k = d.argmin(1)
    frac = torch.bincount(k, minlength=gmm.num_components).double() / len(k)
    spread = (x.double() - gmm.means[k]).std().item()
    return frac, spread


@pytest.fixture(scope="module")
def reference(gmm):
    g = torch.Generator().manual_seed(100)
    data, _ = gmm.sample(3000, g)
    # The floor: the distance between two independent data sets of the same size (its own
    # spread across seeds is about ×0.4 to ×2 of this mean).
    floor = sum(energy_distance(data, gmm.sample(3000, g)[0]) for _ in range(4)) / 4
    return data, floor


def _check_reproduces_mixture(gmm, x, reference, floor_factor):
    data, floor = reference
    frac, spread = _mode_stats(gmm, x)
    assert torch.allclose(frac, gmm.weights, atol=0.03), (frac, gmm.weights)
    assert spread == pytest.approx(0.1, rel=0.15)
    assert energy_distance(x, data) < floor_factor * floor


def test_ddpm_reproduces_gaussian_mixture(gmm, reference):
    x_T = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = ddkit.ddpm_sample(gmm.eps_fn(S.alpha_bars), x_T, S, generator=torch.Generator().manual_seed(1))
    _check_reproduces_mixture(gmm, x, reference, 8.0)


def test_ddpm_large_variance_also_reproduces_mixture(gmm, reference):
    x_T = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = ddkit.ddpm_sample(
        gmm.eps_fn(S.alpha_bars), x_T, S, variance="large", generator=torch.Generator().manual_seed(1)
    )
    _check_reproduces_mixture(gmm, x, reference, 8.0)


def test_ddim_50_steps_eta0_reproduces_gaussian_mixture(gmm, reference):
    x_T = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = ddkit.ddim_sample(gmm.eps_fn(S.alpha_bars), x_T, S, steps=50, eta=0.0)
    _check_reproduces_mixture(gmm, x, reference, 8.0)


def test_eta0_beats_eta1_at_10_steps(gmm):
    """DDIM Table 1's shape: with few steps the deterministic sampler is closer to the data.
    (Broad modes, std 0.5, as image data are; with the sharp default modes both samplers are
    dominated by the same over-dispersion at 10 steps.)"""
    broad = GaussianMixture(gmm.means, torch.full((8,), 0.5), gmm.weights)
    data, _ = broad.sample(3000, torch.Generator().manual_seed(100))
    x_T = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dist = {
        eta: energy_distance(
            ddkit.ddim_sample(
                broad.eps_fn(S.alpha_bars), x_T, S, steps=10, eta=eta, generator=torch.Generator().manual_seed(1)
            ),
            data,
        )
        for eta in (0.0, 1.0)
    }
    assert dist[0.0] < 0.75 * dist[1.0], dist


@pytest.mark.parametrize("spacing", ddkit.SPACINGS)
def test_invert_then_sample_reconstructs(gmm, spacing):
    x0, _ = gmm.sample(500, torch.Generator().manual_seed(3))
    fn = gmm.eps_fn(S.alpha_bars)
    x_T = ddkit.ddim_invert(fn, x0, S, steps=100, spacing=spacing)
    # the encoding is close to a standard normal draw
    assert x_T.std().item() == pytest.approx(1.0, abs=0.1)
    rec = ddkit.ddim_sample(fn, x_T, S, steps=100, eta=0.0, spacing=spacing)
    assert (rec - x0).pow(2).mean().item() < 1e-3


def test_refinement_makes_inversion_more_exact(gmm):
    x0, _ = gmm.sample(500, torch.Generator().manual_seed(3))
    fn = gmm.eps_fn(S.alpha_bars)
    mse = {}
    for refine in (0, 1):
        x_T = ddkit.ddim_invert(fn, x0, S, steps=100, refine=refine)
        mse[refine] = (ddkit.ddim_sample(fn, x_T, S, steps=100) - x0).pow(2).mean().item()
    assert mse[1] < 1e-4 < mse[0] < 5e-3, mse


@pytest.mark.parametrize("refine", [0, 1])
def test_inversion_is_exact_when_eps_does_not_depend_on_x(refine):
    """If ε_θ(x, t) = f(t), ε_θ(x_m, n) = ε_θ(x_n, n): encoding and sampling are exact inverses."""
    c = torch.randn(1, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fn = lambda x, t: torch.sin(t.double() / 100).view(-1, 1) * c + 0 * x  # noqa: E731
    x0 = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_T = ddkit.ddim_invert(fn, x0, S, steps=7, spacing="trailing", refine=refine)
    torch.testing.assert_close(ddkit.ddim_sample(fn, x_T, S, steps=7, spacing="trailing"), x0)


@pytest.mark.parametrize("t", [1, 2, 50, 500, 999])
@pytest.mark.parametrize("clip", [None, (-1.0, 1.0)])
def test_one_ddim_step_with_ddpm_sigma_is_one_ddpm_step(t, clip):
    g = torch.Generator().manual_seed(t)
    x_t, eps, noise = (torch.randn(8, 3, generator=g, dtype=torch.float64) for _ in range(3))
    ab, ab_prev = S.alpha_bar(t), S.alpha_bar(t - 1)
    sigma = math.sqrt(ddpm_variance(S, t, "small"))
    assert sigma == pytest.approx(ddkit.ddim_sigma(ab, ab_prev, 1.0), rel=1e-12)
    ddim = ddkit.ddim_step(x_t, eps, ab, ab_prev, sigma=sigma, clip_x0=clip, noise=noise)
    ddpm = ddkit.ddpm_step(x_t, eps, S, t, variance="small", clip_x0=clip, noise=noise)
    torch.testing.assert_close(ddim, ddpm, rtol=1e-10, atol=1e-10)


def test_ddim_eta1_every_step_is_ddpm_small(gmm):
    s = ddkit.Schedule.linear(num_timesteps=200, beta_start=1e-3, beta_end=0.05)
    fn = gmm.eps_fn(s.alpha_bars)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = ddkit.ddim_sample(fn, x_T, s, steps=200, eta=1.0, generator=torch.Generator().manual_seed(9))
    b = ddkit.ddpm_sample(fn, x_T, s, variance="small", generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_eta0_is_deterministic_and_generators_reproduce(gmm):
    fn = gmm.eps_fn(S.alpha_bars)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    a = ddkit.ddim_sample(fn, x_T, S, steps=20, generator=torch.Generator().manual_seed(1))
    b = ddkit.ddim_sample(fn, x_T, S, steps=20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddkit.ddim_sample(fn, x_T, S, steps=20, eta=0.5, generator=torch.Generator().manual_seed(1))
    d = ddkit.ddim_sample(fn, x_T, S, steps=20, eta=0.5, generator=torch.Generator().manual_seed(1))
    e = ddkit.ddim_sample(fn, x_T, S, steps=20, eta=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(c, d) and not torch.allclose(c, e)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_samplers_keep_dtype_and_shape(gmm, dtype):
    fn = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x_T = torch.randn(3, 1, 4, 4, dtype=dtype)
    s = ddkit.Schedule.linear(num_timesteps=20)
    for out in (
        ddkit.ddpm_sample(fn, x_T, s),
        ddkit.ddim_sample(fn, x_T, s, steps=5, eta=0.3),
        ddkit.ddim_invert(fn, x_T, s, steps=5),
    ):
        assert out.dtype == dtype and out.shape == x_T.shape


def test_model_sees_sequence_and_long_timesteps():
    seen = []

    def fn(x, t):
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        seen.append(int(t[0]))
        return torch.zeros_like(x)

    ddkit.ddim_sample(fn, torch.randn(2, 2), S, steps=4, spacing="trailing")
    assert seen == [999, 749, 499, 249]
    seen.clear()
    ddkit.ddim_invert(fn, torch.randn(2, 2), S, steps=4, spacing="trailing", refine=0)
    assert seen == [249, 499, 749, 999]
    seen.clear()
    ddkit.ddim_sample(fn, torch.randn(2, 2), S, timesteps=[900, 10, 3])
    assert seen == [900, 10, 3]


def test_clip_keeps_final_sample_in_range(gmm):
    fn = lambda x, t: -x  # noqa: E731  (a wildly wrong model)
    out = ddkit.ddim_sample(fn, torch.randn(16, 2) * 3, S, steps=10, clip_x0=(-1, 1))
    assert out.abs().max().item() <= 1.0 + 1e-6
    out = ddkit.ddpm_sample(fn, torch.randn(16, 2) * 3, ddkit.Schedule.linear(50), clip_x0=(-1, 1))
    assert out.abs().max().item() <= 1.0 + 1e-6


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, eta=-0.5), r"eta must be in \[0, 1\], got -0.5"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, eta=1.5), r"eta must be in \[0, 1\]"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, steps=0), r"steps must be an integer in \[1, 1000\]"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, steps=1001), r"steps must be an integer in \[1, 1000\]"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, spacing="bogus"), "allowed: leading, quadratic, trailing, linspace"),
        (lambda fn, x: ddkit.ddim_invert(fn, x, S, spacing="bogus"), "allowed: leading, quadratic, trailing, linspace"),
        (lambda fn, x: ddkit.ddpm_sample(fn, x, S, variance="learned"), "variance must be one of small, large"),
        (lambda fn, x: ddkit.ddim_sample(lambda a, t: a[:, :1], x, S), r"model_fn returned shape \[2, 1\]"),
        (lambda fn, x: ddkit.ddim_sample(fn, x.long(), S), "floating-point"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, clip_x0=(1, -1)), "low < high"),
        (lambda fn, x: ddkit.ddim_sample(fn, x, S, timesteps=[3, 5]), "strictly decreasing"),
        (lambda fn, x: ddkit.ddim_invert(fn, x, S, refine=-1), "refine must be a non-negative integer"),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(lambda a, t: torch.zeros_like(a), torch.randn(2, 2))


@pytest.mark.parametrize("name", sorted(ddkit.samplers.SAMPLERS))
def test_the_registry_holds_each_samplers_defaults(name):
    """SamplerSpec.defaults (read by the CLI and tuning) are the defaults a direct call uses."""
    spec = ddkit.samplers.SAMPLERS[name]
    params = inspect.signature(spec.fn).parameters
    assert {k: params[k].default for k in spec.defaults} == spec.defaults


def test_a_misspelt_common_keyword_is_refused():
    fn = GaussianMixture.default_2d().eps_fn(S.alpha_bars)
    with pytest.raises(TypeError, match="clip_xo"):
        ddkit.ddim_sample(fn, torch.randn(2, 2), S, steps=4, clip_xo=(-1, 1))
