import numpy as np
import pytest
import torch
from scipy import stats

import ddkit

S = ddkit.Schedule.linear()


def test_q_sample_is_closed_form():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, 2, 2, generator=g)
    noise = torch.randn(4, 3, 2, 2, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    ab = S.alpha_bars[t].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(ddkit.q_sample(S, x0, t, noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


@pytest.mark.parametrize("t", [0, 99, 499, 999])
def test_q_sample_moments(t):
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    xt = ddkit.q_sample(S, x0, torch.full((n,), t), torch.randn(n, 1, generator=g, dtype=torch.float64))
    ab = S.alpha_bars[t].item()
    se_mean = np.sqrt((1 - ab) / n)
    assert abs(xt.mean().item() - np.sqrt(ab) * 0.7) < 5 * se_mean
    assert xt.var().item() == pytest.approx(1 - ab, rel=0.02)
    mean, var = ddkit.q_mean_variance(S, x0[:2], torch.full((2,), t))
    assert mean[0].item() == pytest.approx(np.sqrt(ab) * 0.7) and var[0].item() == pytest.approx(1 - ab)


def _iterate_markov_chain(x0, t_stop, g, noise_scale):
    x = x0.clone()
    for i in range(t_stop + 1):
        beta = S.betas[i].item()
        x = np.sqrt(1 - beta) * x + noise_scale(beta) * torch.randn(x.shape, generator=g, dtype=x.dtype)
    return x


@pytest.mark.parametrize("t", [0, 50, 300])
def test_iterated_markov_steps_match_closed_form(t):
    """x_t = √(1-β_t)·x_{t-1} + √β_t·ε iterated t times has the law q(x_t | x_0) (seed eqs. 2-4)."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.full((40_000,), -0.4, dtype=torch.float64)
    x = _iterate_markov_chain(x0, t, g, np.sqrt)
    ab = S.alpha_bars[t].item()
    z = (x - np.sqrt(ab) * -0.4) / np.sqrt(1 - ab)
    assert stats.kstest(z.numpy(), "norm").pvalue > 1e-3
    assert z.std().item() == pytest.approx(1.0, abs=0.02)


def test_seed_slip_noise_scale_beta_does_not_match():
    """The seed's text writes '+β_t ε'; with that noise scale the closed form is wrong."""
    g = torch.Generator().manual_seed(3)
    x = _iterate_markov_chain(torch.zeros(40_000, dtype=torch.float64), 300, g, lambda b: b)
    assert x.var().item() < 0.1 * (1 - S.alpha_bars[300].item())


@pytest.mark.parametrize("t", [1, 5, 200, 999])
@pytest.mark.parametrize("x0, xt", [(0.8, 0.3), (-1.0, 1.5)])
def test_posterior_matches_bayes_on_a_grid(t, x0, xt):
    """q(x_{t-1}|x_t,x_0) ∝ q(x_t|x_{t-1}) q(x_{t-1}|x_0), normalised numerically (seed eq. 10)."""
    beta, ab_prev = S.betas[t].item(), S.alpha_bars[t - 1].item()
    grid = np.linspace(-8, 8, 400_001)
    log_p = stats.norm.logpdf(xt, np.sqrt(1 - beta) * grid, np.sqrt(beta)) + stats.norm.logpdf(
        grid, np.sqrt(ab_prev) * x0, np.sqrt(1 - ab_prev)
    )
    w = np.exp(log_p - log_p.max())
    w /= w.sum()
    grid_mean = (w * grid).sum()
    grid_var = (w * (grid - grid_mean) ** 2).sum()
    mean, var = ddkit.q_posterior(
        S, torch.tensor([[x0]], dtype=torch.float64), torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t])
    )
    assert mean.item() == pytest.approx(grid_mean, abs=1e-6)
    assert var.item() == pytest.approx(grid_var, rel=1e-4)


def test_posterior_at_first_step_is_point_mass_at_x0():
    x0 = torch.tensor([[0.25, -0.5]], dtype=torch.float64)
    mean, var = ddkit.q_posterior(S, x0, torch.tensor([[3.0, 2.0]], dtype=torch.float64), torch.tensor([0]))
    torch.testing.assert_close(mean, x0)
    assert var.item() == 0.0


def test_posterior_mean_equals_eq13_with_true_eps():
    """μ̃_t(x_t, x̂₀(ε)) equals seed eq. (13): (x_t - β_t/√(1-ᾱ_t)·ε)/√α_t."""
    g = torch.Generator().manual_seed(4)
    x0, eps = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([1, 10, 100, 500, 999])
    xt = ddkit.q_sample(S, x0, t, eps)
    mean, _ = ddkit.q_posterior(S, x0, xt, t)
    b, ab = S.betas[t].view(-1, 1), S.alpha_bars[t].view(-1, 1)
    torch.testing.assert_close(mean, (xt - b / (1 - ab).sqrt() * eps) / (1 - b).sqrt())


@pytest.mark.parametrize(
    "t, match",
    [
        (torch.tensor([1000]), r"t must lie in \[0, 999\]"),
        (torch.tensor([-1]), r"t must lie in \[0, 999\]"),
        (torch.tensor([1.0]), "integer"),
        (torch.tensor([1, 2]), r"shape \[1\]"),
    ],
)
def test_bad_timesteps(t, match):
    with pytest.raises(ValueError, match=match):
        ddkit.q_sample(S, torch.zeros(1, 2), t, torch.zeros(1, 2))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        ddkit.q_sample(S, torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 3))
