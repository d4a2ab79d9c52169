"""The variational bound (ddkit.eval.likelihood.nll_bpd, ddkit.losses' bound terms) against closed
forms: for data drawn from N(0, s²·I) the exact ε is linear in x_t, so every KL term has a closed
form; L_T has its own; the discretised decoder against numerical integration."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import ddkit
from ddkit.eval.likelihood import BoundTerms, nll_bpd
from ddkit.losses import bound_variance, discretized_gaussian_log_likelihood, normal_kl, prior_kl, vb_terms
from ddkit.nn import MLPDenoiser
from ddkit.oracle import GaussianMixture

LN2 = math.log(2.0)


def linear_eps(schedule, s):
    """ε*(x_t, t) = √(1-ᾱ)·x_t / (ᾱ·s² + 1 - ᾱ), the exact ε for x_0 ~ N(0, s²·I)."""
    ab = schedule.alpha_bars

    def model_fn(x_t, t):
        a = ab[t].reshape(-1, *([1] * (x_t.ndim - 1)))
        return ((1 - a).sqrt() / (a * s**2 + 1 - a) * x_t.double()).to(x_t.dtype)

    return model_fn


def kl_coefficients(schedule, s, i, variance):
    """For 0-based step i ≥ 1: μ̃ - μ_θ = A·x_0 + B·n (n the noise of x_t), and σ² and β̃, all by hand
    from DDPM eqs. 7 and 11 (μ_θ = (x_t - β/√(1-ᾱ)·ε)/√α), not through the library's functions."""
    ab, ab_prev, beta = (float(v[i]) for v in (schedule.alpha_bars, schedule.alpha_bars_prev, schedule.betas))
    alpha = 1 - beta
    c0 = math.sqrt(ab_prev) * beta / (1 - ab)
    ct = math.sqrt(alpha) * (1 - ab_prev) / (1 - ab)
    k = math.sqrt(1 - ab) / (ab * s**2 + 1 - ab)
    m = (1 - beta * k / math.sqrt(1 - ab)) / math.sqrt(alpha)
    A, B = c0 + (ct - m) * math.sqrt(ab), (ct - m) * math.sqrt(1 - ab)
    post_var = beta * (1 - ab_prev) / (1 - ab)
    sigma2 = post_var if variance == "small" else beta
    return A, B, sigma2, post_var


def kl_closed_form(A, B, sigma2, post_var, x0, noise=None):
    """Σ_d KL(N(μ̃, β̃) ‖ N(μ_θ, σ²)) per image, nats; with noise=None its expectation over the noise."""
    const = 0.5 * (math.log(sigma2 / post_var) + post_var / sigma2 - 1) * x0[0].numel()
    sq = (A * x0 + B * noise) ** 2 if noise is not None else (A * x0) ** 2 + B**2
    return const + 0.5 * sq.reshape(len(x0), -1).sum(1) / sigma2


@pytest.mark.parametrize("variance", ["small", "large"])
def test_every_kl_term_matches_the_closed_form_for_gaussian_data_given_the_noise(variance):
    S, s = ddkit.Schedule.linear(200, 1e-4, 0.05), 0.6
    g = torch.Generator().manual_seed(0)
    x0 = s * torch.randn(7, 3, 2, 2, dtype=torch.float64, generator=g)
    noise = torch.randn(x0.shape, dtype=torch.float64, generator=g)
    for i in (1, 2, 17, 100, 199):
        t = torch.full((7,), i)
        got = vb_terms(linear_eps(S, s), S, x0, t, noise, levels=256, variance=variance)
        want = kl_closed_form(*kl_coefficients(S, s, i, variance), x0, noise)
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_nll_bpd_matches_the_closed_form_term_by_term_for_gaussian_data():
    """Each L_{t-1} of nll_bpd (one draw of x_t per image and t) against its closed-form expectation:
    the mean over 1,500 images within 5 standard errors (the error's sd is known in closed form too)."""
    S, s, N, D = ddkit.Schedule.cosine(40), 0.5, 1500, 2
    x0 = s * torch.randn(N, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    bound = nll_bpd(linear_eps(S, s), S, x0, levels=256, generator=torch.Generator().manual_seed(2))  # "auto": no clip
    assert float(x0.abs().max()) > 1  # so the default clip_x0="auto" leaves x̂₀ alone
    assert isinstance(bound, BoundTerms) and bound.terms.shape == (N, S.num_timesteps)
    for i in range(1, S.num_timesteps):
        A, B, sigma2, post_var = kl_coefficients(S, s, i, "large")
        want = kl_closed_form(A, B, sigma2, post_var, x0) / (D * LN2)
        # per element: Var[(a + B·n)²] = 4a²B² + 2B⁴ with a = A·x_0
        var = ((4 * (A * x0) ** 2 * B**2 + 2 * B**4).sum(1) / (2 * sigma2 * D * LN2) ** 2).mean()
        se = math.sqrt(float(var) / N)
        assert abs(float(bound.terms[:, i].mean() - want.mean())) < 5 * se + 1e-12, i
    # the bound adds up, and the decoder field is the t = 0 column
    torch.testing.assert_close(bound.total, bound.prior + bound.terms.sum(1))
    torch.testing.assert_close(bound.decoder, bound.terms[:, 0])
    # the toy module's exact ε for a one-component mixture is the same model
    t = torch.arange(S.num_timesteps)
    x_t = torch.randn(S.num_timesteps, D, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    oracle = GaussianMixture(torch.zeros(1, D), torch.tensor([s]), torch.ones(1)).eps_fn(S.alpha_bars)
    torch.testing.assert_close(oracle(x_t, t), linear_eps(S, s)(x_t, t))


def test_prior_term_matches_its_closed_form():
    S = ddkit.Schedule.linear(100, 1e-4, 0.02)  # ᾱ_T ≈ 0.36: a prior term far from 0
    x0 = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ab = float(S.alpha_bars[-1])
    want = 0.5 * (ab * x0.double() ** 2 + (1 - ab) - 1 - math.log(1 - ab)).reshape(5, -1).sum(1)
    torch.testing.assert_close(prior_kl(S, x0), want, rtol=1e-12, atol=0)
    bound = nll_bpd(lambda x, t: torch.zeros_like(x), S, x0, levels=17)
    torch.testing.assert_close(bound.prior, want / (16 * LN2), rtol=1e-12, atol=0)


@pytest.mark.parametrize("levels", [17, 256])
def test_discretised_decoder_matches_numerical_integration(levels):
    rng = np.random.default_rng(levels)
    grid = np.linspace(-1, 1, levels)
    x = np.concatenate([grid[[0, 1, levels // 2, -2, -1]], rng.choice(grid, 20)])
    mean = x + rng.uniform(-0.3, 0.3, x.shape)  # within 10 sd: masses float64 integration can represent
    std = rng.uniform(0.03, 0.6, x.shape)
    half = 1 / (levels - 1)
    got = discretized_gaussian_log_likelihood(torch.tensor(x), torch.tensor(mean), torch.tensor(std), levels=levels)
    for xi, m, sd, lp in zip(x, mean, std, got.tolist()):
        # the extreme bins reach to ∓inf: integrate from 40 sd beyond the mean (e^-800 is left out)
        lo = min(m, xi + half) - 40 * sd if xi < -1 + half else xi - half
        hi = max(m, xi - half) + 40 * sd if xi > 1 - half else xi + half
        points = [m] if lo < m < hi else None  # tell quad where the peak is
        mass, _ = integrate.quad(
            lambda u: stats.norm.pdf(u, m, sd), lo, hi, points=points, epsabs=0, epsrel=1e-11, limit=500
        )
        assert lp == pytest.approx(math.log(mass), rel=1e-7, abs=1e-9)
    # the masses of all levels sum to one
    total = (
        discretized_gaussian_log_likelihood(torch.tensor(grid), torch.tensor(0.3), torch.tensor(0.2), levels=levels)
        .exp()
        .sum()
    )
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_decoder_is_accurate_far_in_the_tails():
    """log(Φ(b) - Φ(a)) without cancellation: a bin 50 sd right of the mean, and the top bin 200 sd."""
    got = discretized_gaussian_log_likelihood(
        torch.tensor([0.5, 1.0]), torch.tensor(0.0), torch.tensor([0.01, 0.005], dtype=torch.float64), levels=17
    )
    a, b = stats.norm.logsf(43.75), stats.norm.logsf(56.25)  # edges (0.5 ∓ 1/16) / 0.01; masses ~ e^-960
    want_bin = a + math.log1p(-math.exp(b - a))
    assert float(got[0]) == pytest.approx(want_bin, rel=1e-9)
    assert float(got[1]) == pytest.approx(stats.norm.logsf((1 - 1 / 16) / 0.005), rel=1e-9)


def test_normal_kl_against_monte_carlo_free_identities():
    m1, v1, m2, v2 = (torch.tensor(v, dtype=torch.float64) for v in (0.3, 0.5, -0.2, 2.0))
    assert float(normal_kl(m1, v1, m1, v1)) == 0.0
    want = math.log(math.sqrt(2.0) / math.sqrt(0.5)) + (0.5 + 0.25) / (2 * 2.0) - 0.5
    assert float(normal_kl(m1, v1, m2, v2)) == pytest.approx(want, rel=1e-14)


def _mixture_on_grid(levels, n, seed):
    gmm = GaussianMixture(
        torch.tensor([[-0.5, -0.4], [0.4, 0.5], [0.5, -0.5]]),
        torch.tensor([0.08, 0.1, 0.06]),
        torch.tensor([1.0, 2.0, 1.0]),
    )
    x = gmm.sample(n, torch.Generator().manual_seed(seed))[0].clamp(-1, 1)
    return gmm, (torch.round((x + 1) / 2 * (levels - 1)) / (levels - 1) * 2 - 1).float()  # on the grid of levels


def test_oracle_bound_is_in_range_near_the_entropy_and_below_an_untrained_network():
    """The "trained" model is the exact ε of the data's mixture; the untrained one a fresh MLP. The
    bound lies in (0, log2 levels), is at least the data's own discrete entropy (up to the x_t draws)
    and not far above it, and is far below the untrained network's."""
    levels, S = 256, ddkit.Schedule.cosine(200)
    gmm, x0 = _mixture_on_grid(levels, 200, seed=0)
    oracle = nll_bpd(gmm.eps_fn(S.alpha_bars), S, x0, levels=levels, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = MLPDenoiser(dim=2, hidden=32, depth=2).eval()
    untrained = nll_bpd(lambda x, t: net(x, t), S, x0, levels=levels, generator=torch.Generator().manual_seed(0))
    # -log2 of the bin mass under the true mixture ≈ -log2 q(x) - log2(width), per dimension
    entropy = float((-gmm.log_prob(x0) / LN2 - 2 * math.log2(2 / (levels - 1))).mean() / 2)
    nll = float(oracle.total.mean())
    assert 0 < nll < math.log2(levels)
    assert entropy - 0.05 < nll < entropy + 0.3, (nll, entropy)  # measured: 6.44 against 6.27
    assert float(untrained.total.mean()) > nll + 1.0


def test_batching_over_timesteps_gives_the_same_terms():
    S = ddkit.Schedule.cosine(30)
    gmm, x0 = _mixture_on_grid(256, 10, seed=1)
    a = nll_bpd(gmm.eps_fn(S.alpha_bars), S, x0, levels=256, generator=torch.Generator().manual_seed(5))
    b = nll_bpd(
        gmm.eps_fn(S.alpha_bars), S, x0, levels=256, generator=torch.Generator().manual_seed(5), batch_size=70
    )  # 7 timesteps per network call, the last call with 2
    torch.testing.assert_close(a.terms, b.terms, rtol=0, atol=0)
    c = nll_bpd(gmm.eps_fn(S.alpha_bars), S, x0, levels=256, batch_size=4)  # images in chunks
    assert c.terms.shape == (10, 30) and torch.isfinite(c.total).all()


def test_bound_variance_conventions():
    S = ddkit.Schedule.cosine(50)
    small, large = bound_variance(S, "small"), bound_variance(S, "large")
    assert small[0] == large[0] == S.posterior_variance[1]
    torch.testing.assert_close(small[1:], S.posterior_variance[1:])
    torch.testing.assert_close(large[1:], S.betas[1:])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"levels": 1}, "levels must be an integer >= 2"),
        ({"levels": 17, "variance": "medium"}, "variance must be one of small, large"),
        ({"levels": 17, "batch_size": 0}, "batch_size must be a positive integer"),
        ({"levels": 17, "clip_x0": "always"}, "clip_x0 must be 'auto', None or"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, match):
    S = ddkit.Schedule.cosine(5)
    with pytest.raises(ValueError, match=match):
        nll_bpd(lambda x, t: torch.zeros_like(x), S, torch.zeros(2, 1, 2, 2), **kwargs)


def test_clipping_x0_changes_nothing_where_the_mean_stays_inside_and_tames_the_last_step():
    S, s = ddkit.Schedule.cosine(40), 0.2
    x0 = s * torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    plain = nll_bpd(linear_eps(S, s), S, x0, levels=256, generator=torch.Generator().manual_seed(0), clip_x0=None)
    clipped = nll_bpd(linear_eps(S, s), S, x0, levels=256, generator=torch.Generator().manual_seed(0), clip_x0=(-1, 1))
    torch.testing.assert_close(clipped.terms, plain.terms)  # E[x0 | x_t] of N(0, 0.04) data stays in [-1, 1]
    wrong = lambda x, t: linear_eps(S, s)(x, t) + 0.05  # noqa: E731  (a slightly wrong ε: x̂₀ blows up at t = T)
    last_plain = (
        nll_bpd(wrong, S, x0, levels=256, generator=torch.Generator().manual_seed(0), clip_x0=None).terms[:, -1].mean()
    )
    last_clip = nll_bpd(wrong, S, x0, levels=256, generator=torch.Generator().manual_seed(0), clip_x0=(-1, 1))
    assert float(last_clip.terms[:, -1].mean()) < float(last_plain)
