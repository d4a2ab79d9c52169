"""AYS's KL upper bound (ddkit.klub) and its closed-form optimum for Gaussian data (spacing
kl-optimal): the estimator against the exact per-interval bound of a Gaussian, the theorem through
ddkit's own DDIM sampler, and the dynamic programme against brute force."""

import itertools
import math

import numpy as np
import pytest
import torch

import ddkit
from ddkit import klub
from ddkit.oracle import GaussianMixture
from ddkit.samplers import run_sampler
from ddkit.timesteps import kl_optimal, sampling_grid, sigma_spacing

pytestmark = pytest.mark.usefixtures("one_thread")

MU, C = torch.tensor([0.3, -0.2], dtype=torch.float64), 0.5


def _gaussian():
    return GaussianMixture(MU[None], torch.tensor([C], dtype=torch.float64), torch.tensor([1.0]))


def _exact_interval(lo: float, hi: float, c: float, d: int) -> float:
    """∫_lo^hi σ⁻³·c⁴·d·(1/(σ²+c²) − 1/(hi²+c²)) dσ by its antiderivative."""

    def F(s):
        return (
            c**4
            * d
            * (
                -1 / (2 * c**2 * s**2)
                - math.log(s) / c**4
                + math.log(s**2 + c**2) / (2 * c**4)
                + 1 / (2 * s**2 * (hi**2 + c**2))
            )
        )

    return F(hi) - F(lo)


@pytest.mark.parametrize("lo, hi", [(0.05, 0.3), (0.3, 2.0), (2.0, 40.0)])
def test_estimator_matches_the_gaussian_closed_form(lo, hi):
    schedule = ddkit.Schedule.cosine()
    D = klub.denoiser(_gaussian().eps_fn(schedule.alpha_bars), schedule)
    x0 = MU + C * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigmas = np.exp(np.linspace(math.log(lo), math.log(hi), 200))
    est, se = klub.klub_interval(D, x0, sigmas, generator=torch.Generator().manual_seed(1))
    exact = _exact_interval(lo, hi, C, 2)
    assert abs(est - exact) <= 3 * se, (est, exact, se)
    assert se < 0.1 * exact  # the test has power
    # the cost matrix's interval term is the same estimator
    cost = klub.klub_costs(
        D, x0, np.exp(np.linspace(math.log(lo), math.log(hi), 41)), generator=torch.Generator().manual_seed(1)
    )
    assert cost[0, -1] == pytest.approx(exact, rel=0.05)


def _ddim_kl(schedule, sigmas) -> float:
    """KL(DDIM's output law ‖ the exact one) for N(μ, C²I) data: DDIM (η = 0) with the exact ε is
    affine in its start x̃, started from the exact law at σ_max; run through ddkit's sampler."""
    fn = _gaussian().eps_fn(schedule.alpha_bars)
    hi, lo = sigmas[0], sigmas[-1]
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64) / math.sqrt(1 + hi**2)  # x_t = x̃·√ᾱ
    out = run_sampler("ddim", fn, x, schedule, sigmas=list(sigmas))
    slope = float(out[1, 0] - out[0, 0])  # per unit of x̃
    intercept = out[0]
    var = slope**2 * (hi**2 + C**2)
    mean = intercept + slope * MU
    k = C**2 / (lo**2 + C**2)  # the exact output: D(x̃_{σ_min}) of the exact x̃ ~ N(μ, (σ_min² + C²)I)
    var_true = k**2 * (lo**2 + C**2)
    r = var / var_true
    return float(0.5 * 2 * (r - 1 - math.log(r)) + 0.5 * ((mean - MU) ** 2).sum() / var_true)


@pytest.mark.parametrize("n", [4, 6])
def test_kl_optimal_is_the_ddim_kl_optimum_for_gaussian_data(n):
    schedule = ddkit.Schedule.linear()
    sig = kl_optimal(schedule, n, sigma_max=80.0, sigma_data=C).tolist()
    # uniform in θ = atan(σ/c) between the ends
    theta = np.arctan(np.array(sig) / C)
    assert np.allclose(np.diff(theta, 2), 0, atol=1e-12) and sig[0] == 80.0 and sig[-1] == schedule.sigmas[0].item()
    best = _ddim_kl(schedule, sig)
    assert best > 0
    for i in range(1, n - 1):
        for f in (0.99, 1.01):
            moved = list(sig)
            moved[i] *= f
            assert _ddim_kl(schedule, moved) > best, (i, f)
    assert _ddim_kl(schedule, sigma_spacing(schedule, n, "karras").tolist()) > best


def test_dp_equals_brute_force():
    rng = np.random.default_rng(0)
    M = 30
    for _ in range(6):
        cost = rng.exponential(size=(M, M))
        for n in (2, 3, 4):
            path = klub.least_cost_path(cost, n)
            assert path[0] == 0 and path[-1] == M - 1 and len(path) == n
            brute = min(
                klub.path_cost(cost, (0, *mid, M - 1)) for mid in itertools.combinations(range(1, M - 1), n - 2)
            )
            assert klub.path_cost(cost, path) == pytest.approx(brute, rel=1e-12)


def test_kl_optimal_spacing_and_sigma_defaults():
    for name in ("linear", "cosine"):
        schedule = getattr(ddkit.Schedule, name)()
        grid = sampling_grid(schedule, 5, "kl-optimal")
        assert grid.sigmas[0] == pytest.approx(min(80.0, schedule.sigmas[-1].item()))
        assert grid.sigmas[-1] == pytest.approx(schedule.sigmas[0].item())
        assert sigma_spacing(schedule, 5, "karras")[0].item() == pytest.approx(80.0)
    with pytest.raises(ValueError, match="need σ_min < σ_max"):
        sigma_spacing(ddkit.Schedule.linear(), 5, "karras", sigma_min=10.0, sigma_max=5.0)
    with pytest.raises(ValueError, match="sigma_data must be a positive"):
        kl_optimal(ddkit.Schedule.linear(), 5, sigma_data=0.0)
