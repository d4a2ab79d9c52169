"""Tests for ddkit.data.toy and ddkit.oracle: Gaussian mixtures, their exact score / ε, and the toy data sets."""

import math

import pytest
import torch

from ddkit.data.toy import TOY_NAMES, make_toy, toy_num_classes
from ddkit.oracle import GaussianMixture


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def mixture() -> GaussianMixture:
    """Three overlapping components with unequal weights and stds."""
    f64 = dict(dtype=torch.float64)
    means = torch.tensor([[-1.0, 0.5], [1.0, 0.0], [0.0, -1.5]], **f64)
    stds = torch.tensor([0.3, 0.6, 0.2], **f64)
    return GaussianMixture(means, stds, torch.tensor([2.0, 5.0, 3.0]))


def _moments(m: GaussianMixture) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean [D] and covariance [D, D] of a mixture."""
    w, mu = m.weights, m.means
    mean = w @ mu
    second = (w[:, None, None] * (mu[:, :, None] * mu[:, None, :])).sum(0)
    second += (w * m.stds**2).sum() * torch.eye(m.dim, dtype=torch.float64)
    return mean, second - torch.outer(mean, mean)


def test_weights_are_normalised_and_float64(mixture):
    assert mixture.weights.dtype == torch.float64
    torch.testing.assert_close(mixture.weights, torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64))
    assert mixture.means.dtype == mixture.stds.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(means=[[0.0, 0.0]], stds=[0.0], weights=[1.0]), "stds must be positive"),
        (dict(means=[[0.0, 0.0]], stds=[1.0], weights=[-1.0]), "weights must be positive"),
        (dict(means=[[0.0, 0.0]], stds=[1.0, 1.0], weights=[1.0]), r"stds must have shape \[K\]"),
        (dict(means=[[0.0], [1.0]], stds=[1.0, 1.0], weights=[1.0]), "weights must have shape"),
        (dict(means=[0.0, 1.0], stds=[1.0, 1.0], weights=[1.0, 1.0]), r"shape \[K, D\]"),
    ],
)
def test_invalid_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(**kwargs)


def test_sample_moments_match_parameters(mixture):
    n = 200_000
    x, comp = mixture.sample(n, generator=_gen(1))
    assert x.shape == (n, 2) and x.dtype == torch.float64
    assert comp.dtype == torch.int64 and comp.shape == (n,)
    freq = torch.bincount(comp, minlength=3).double() / n
    binomial_std = (mixture.weights * (1 - mixture.weights) / n).sqrt()
    assert ((freq - mixture.weights).abs() < 5 * binomial_std).all(), freq
    for k in range(3):
        xk = x[comp == k]
        torch.testing.assert_close(xk.mean(0), mixture.means[k], atol=0.01, rtol=0)
        torch.testing.assert_close(xk.std(0), mixture.stds[k].expand(2), atol=0.01, rtol=0)


def test_sample_is_reproducible_with_a_generator(mixture):
    a, _ = mixture.sample(100, generator=_gen(7))
    b, _ = mixture.sample(100, generator=_gen(7))
    c, _ = mixture.sample(100, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_log_prob_single_gaussian_closed_form():
    m = GaussianMixture(torch.tensor([[1.0, -2.0, 0.5]]), torch.tensor([0.7]), torch.tensor([1.0]))
    x = torch.randn(10, 3, generator=_gen(2), dtype=torch.float64)
    expected = torch.distributions.MultivariateNormal(
        m.means[0], covariance_matrix=0.49 * torch.eye(3, dtype=torch.float64)
    ).log_prob(x)
    torch.testing.assert_close(m.log_prob(x), expected)


def test_log_prob_integrates_to_one_on_a_grid(mixture):
    axis = torch.linspace(-5, 5, 801, dtype=torch.float64)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    density = mixture.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).exp()
    step = (axis[1] - axis[0]).item()
    assert abs(density.sum().item() * step**2 - 1.0) < 1e-4


@pytest.mark.parametrize("alpha_bar", [0.05, 0.5, 0.95])
def test_marginal_matches_forward_noised_samples(mixture, alpha_bar):
    marg = mixture.marginal(alpha_bar)
    torch.testing.assert_close(marg.means, math.sqrt(alpha_bar) * mixture.means)
    torch.testing.assert_close(marg.stds**2, alpha_bar * mixture.stds**2 + 1 - alpha_bar)
    n = 200_000
    g = _gen(3)
    x0, _ = mixture.sample(n, generator=g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    xt = math.sqrt(alpha_bar) * x0 + math.sqrt(1 - alpha_bar) * eps
    mean, cov = _moments(marg)
    torch.testing.assert_close(xt.mean(0), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(torch.cov(xt.T), cov, atol=0.015, rtol=0)
    # the density itself: the empirical mean log-likelihood matches −entropy of the marginal
    direct, _ = marg.sample(n, generator=_gen(4))
    assert abs(marg.log_prob(xt).mean() - marg.log_prob(direct).mean()) < 0.02


def test_marginal_endpoints(mixture):
    same = mixture.marginal(1.0)
    torch.testing.assert_close(same.means, mixture.means)
    torch.testing.assert_close(same.stds, mixture.stds)
    noise = mixture.marginal(0.0)
    assert torch.equal(noise.means, torch.zeros_like(mixture.means))
    torch.testing.assert_close(noise.stds, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"alpha_bar must be in \[0, 1\], got 1.5"):
        mixture.marginal(1.5)


@pytest.mark.parametrize("alpha_bar", [1.0, 0.7, 0.1])
def test_score_matches_finite_differences_and_autograd(mixture, alpha_bar):
    x = 1.5 * torch.randn(16, 2, generator=_gen(5), dtype=torch.float64)
    score = mixture.score(x, alpha_bar)
    assert score.dtype == torch.float64 and score.shape == (16, 2)
    marg = mixture.marginal(alpha_bar)
    h = 1e-5
    for d in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[d] = h
        fd = (marg.log_prob(x + e) - marg.log_prob(x - e)) / (2 * h)
        torch.testing.assert_close(score[:, d], fd, atol=1e-6, rtol=1e-6)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(marg.log_prob(xg).sum(), xg)
    torch.testing.assert_close(score, grad, atol=1e-10, rtol=1e-10)


def test_score_is_stable_far_from_all_modes(mixture):
    x = torch.tensor([[1e3, -1e3], [50.0, 50.0]], dtype=torch.float64)
    score = mixture.score(x, 1.0)
    assert torch.isfinite(score).all()
    # far away the widest component (std 0.6, mean [1, 0]) dominates
    expected = -(x - mixture.means[1]) / 0.36
    torch.testing.assert_close(score, expected, rtol=1e-9, atol=1e-9)


def test_score_accepts_one_alpha_bar_per_sample(mixture):
    x = torch.randn(5, 2, generator=_gen(6), dtype=torch.float64)
    abs_ = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    batched = mixture.score(x, abs_)
    for i in range(5):
        torch.testing.assert_close(batched[i], mixture.score(x[i : i + 1], abs_[i].item())[0])


def _alpha_bars(T: int = 1000) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0)


def test_eps_fn_single_gaussian_closed_form():
    mu = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    m = GaussianMixture(mu, torch.tensor([0.4], dtype=torch.float64), torch.tensor([1.0]))
    ab = _alpha_bars()
    model_fn = m.eps_fn(ab)
    x = torch.randn(6, 2, generator=_gen(9), dtype=torch.float64)
    t = torch.tensor([0, 1, 10, 300, 700, 999])
    a = ab[t][:, None]
    expected = (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * 0.16 + 1 - a)
    torch.testing.assert_close(model_fn(x, t), expected, rtol=1e-12, atol=1e-12)


def test_eps_fn_tiny_noise_near_a_mode():
    """At ᾱ ≈ 1 near mode k: ε* ≈ √(1−ᾱ)(x − √ᾱ μ_k) / (ᾱ s_k² + 1 − ᾱ)."""
    m = GaussianMixture.default_2d()
    ab = torch.tensor([1 - 1e-4], dtype=torch.float64)
    x = math.sqrt(ab.item()) * m.means + 0.05  # [8, 2], each near its own mode
    eps = m.eps_fn(ab)(x, torch.zeros(8, dtype=torch.long))
    var = ab * m.stds**2 + 1 - ab
    expected = (1 - ab).sqrt() * 0.05 / var
    torch.testing.assert_close(eps, expected[:, None].expand(8, 2), rtol=1e-6, atol=0)


def test_eps_fn_is_the_conditional_mean_of_the_noise(mixture):
    """ε* = E[ε | x_t]: the residual ε − ε* has mean zero and is orthogonal to x_t."""
    ab = torch.tensor([0.5], dtype=torch.float64)
    n = 200_000
    g = _gen(10)
    x0, _ = mixture.sample(n, generator=g)
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    resid = eps - mixture.eps_fn(ab)(xt, torch.zeros(n, dtype=torch.long))
    assert resid.mean(0).abs().max() < 0.01
    assert (resid[:, :, None] * xt[:, None, :]).mean(0).abs().max() < 0.01
    # and it beats the best linear predictor of ε from x_t (0.84 vs 0.90 here)
    mse_star = (resid**2).sum(1).mean()
    design = torch.cat([xt, torch.ones(n, 1, dtype=torch.float64)], 1)
    coef = torch.linalg.lstsq(design, eps).solution
    mse_linear = ((eps - design @ coef) ** 2).sum(1).mean()
    assert mse_star < 0.95 * mse_linear


def test_eps_fn_at_pure_noise_returns_x():
    m = GaussianMixture.default_2d()
    ab = torch.tensor([1e-8], dtype=torch.float64)
    x = torch.randn(32, 2, generator=_gen(11))
    torch.testing.assert_close(m.eps_fn(ab)(x, torch.zeros(32, dtype=torch.long)), x, atol=1e-3, rtol=0)


def test_eps_fn_per_sample_timesteps_dtype_and_image_shapes():
    g = _gen(12)
    means = torch.randn(4, 12, generator=g, dtype=torch.float64)  # D = C*H*W = 3*2*2
    m = GaussianMixture(means, torch.full((4,), 0.3), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    ab = _alpha_bars(50)
    model_fn = m.eps_fn(ab)
    x = torch.randn(5, 3, 2, 2, generator=g)  # float32 "images"
    t = torch.tensor([0, 49, 7, 7, 20])
    out = model_fn(x, t)
    assert out.shape == x.shape and out.dtype == torch.float32
    for i in range(5):
        one = model_fn(x[i : i + 1].double().reshape(1, 12), t[i : i + 1])
        torch.testing.assert_close(out[i].reshape(1, 12), one.float())
    with pytest.raises(ValueError, match=r"t must be in \[0, 49\], got \[0, 50\]"):
        model_fn(x, torch.tensor([0, 50, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 12\]"):
        model_fn(torch.zeros(2, 3, 2, 3), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("name", TOY_NAMES)
def test_make_toy_shapes_labels_and_scale(name):
    x, labels = make_toy(name, 5000, generator=_gen(13))
    assert x.shape == (5000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    std = x.std(0)
    assert ((std > 0.4) & (std < 1.1)).all(), std
    assert (x.mean(0).abs() < 0.5).all()
    k = toy_num_classes(name)
    if k is None:
        assert labels is None
    else:
        assert labels.dtype == torch.int64 and labels.shape == (5000,)
        counts = torch.bincount(labels, minlength=k)
        assert counts.numel() == k and (counts > 0).all()
    again, _ = make_toy(name, 5000, generator=_gen(13))
    assert torch.equal(x, again)


def test_make_toy_gmm_labels_are_components():
    x, labels = make_toy("gmm", 4000, generator=_gen(14))
    means = GaussianMixture.default_2d().means.float()
    nearest = torch.cdist(x, means).argmin(1)
    assert (nearest == labels).float().mean() > 0.999


def test_make_toy_moons_labels_separate_the_moons():
    x, labels = make_toy("moons", 4000, generator=_gen(15))
    # the upper moon (label 0) lies above the lower one on average, by ~0.6 after centring
    assert x[labels == 0, 1].mean() - x[labels == 1, 1].mean() > 0.5


def test_make_toy_unknown_name_lists_allowed_names():
    with pytest.raises(ValueError) as info:
        make_toy("spiral", 10)
    message = str(info.value)
    assert "'spiral'" in message
    for name in TOY_NAMES:
        assert name in message
