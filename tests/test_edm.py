"""EDM's training formulation on ddkit's VP schedule (Karras et al. 2022, Table 1): the
preconditioning row of TARGETS, the log-normal noise levels carried onto the discrete t, and EDM's
loss weighting."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import ddkit
from ddkit.losses import draw_timesteps, lognormal_timestep_probs, timestep_probs
from ddkit.parameterization import (
    TARGETS,
    edm_coefficients,
    eps_network,
    network_input,
    prediction_target,
)

S = ddkit.Schedule.cosine(1000)


def test_coefficients_match_their_closed_forms():
    sd = 0.6
    for sigma in (0.002, 0.3, 1.0, 7.0, 80.0):
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
        assert c_skip == pytest.approx(sd**2 / (sigma**2 + sd**2), rel=1e-12)
        assert c_out == pytest.approx(sigma * sd / math.sqrt(sigma**2 + sd**2), rel=1e-12)
        assert c_in == pytest.approx(1 / math.sqrt(sigma**2 + sd**2), rel=1e-12)
        assert c_noise == pytest.approx(math.log(sigma) / 4, rel=1e-12)
        # the preconditioned x̃ has unit variance at the network's input for data of std σ_d, and
        # F's target (x₀ - c_skip·x̃)/c_out too (EDM Appendix B.6)
        assert c_in**2 * (sd**2 + sigma**2) == pytest.approx(1.0)
        assert (c_skip**2 * sigma**2 + (1 - c_skip) ** 2 * sd**2) / c_out**2 == pytest.approx(1.0)
    t = torch.tensor([0.002, 1.0, 80.0], dtype=torch.float64)
    for a, b in zip(edm_coefficients(t, sd), zip(*(edm_coefficients(float(s), sd) for s in t))):
        torch.testing.assert_close(a, torch.tensor(b, dtype=torch.float64))


def test_row_is_d_equals_c_skip_x_plus_c_out_f():
    """The row's input, target and ε conversion are EDM's D(x̃; σ) = c_skip·x̃ + c_out·F(c_in·x̃; c_noise)
    with x̃ = x_t/√ᾱ and σ = schedule.sigmas, computed here the plain way in float64."""
    g = torch.Generator().manual_seed(0)
    sd = 0.7
    t = torch.tensor([0, 3, 100, 500, 900, 999])
    x0, eps, out = (torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    x_t = ddkit.q_sample(S, x0, t, eps)
    ab = S.alpha_bars[t].reshape(-1, 1, 1, 1)
    sigma = S.sigmas[t].reshape(-1, 1, 1, 1)
    x_tilde = x_t / ab.sqrt()
    torch.testing.assert_close(x_tilde, x0 + sigma * eps)
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    x_in, t_in = network_input("edm", x_t, t, S, sd)
    torch.testing.assert_close(x_in, c_in * x_tilde)
    torch.testing.assert_close(t_in, c_noise.reshape(-1))  # float64 for float64 x_t, else float32
    target = prediction_target("edm", x0, eps, t, S, sd)
    torch.testing.assert_close(c_skip * x_tilde + c_out * target, x0)  # F's target makes D = x₀
    f = eps_network(lambda x, tt, y=None: out, "edm", S, sigma_data=sd)
    d = c_skip * x_tilde + c_out * out
    torch.testing.assert_close(f(x_t, t), (x_tilde - d) / sigma)  # ε = (x̃ - D)/σ
    # with σ_d = 1 on this schedule, F's target is -v (the networks differ only in what they are fed)
    torch.testing.assert_close(prediction_target("edm", x0, eps, t, S, 1.0), -prediction_target("v", x0, eps, t, S))


@pytest.mark.parametrize("sigma_data", [0.5, 1.3])
@pytest.mark.parametrize("schedule", [S, ddkit.Schedule.linear(1000)])
def test_exact_denoiser_of_gaussian_data_gives_exact_eps(sigma_data, schedule):
    """x₀ ~ N(0, s²I): the exact denoiser is D* = x̃·s²/(s²+σ²). A network F built from it through
    its inputs alone (c_in·x̃ and c_noise), wrapped by eps_network, gives the exact ε = E[ε | x_t]
    (the oracle's, a one-component Gaussian mixture), at every t and on fractional t too."""
    s = 0.8
    oracle = ddkit.oracle.GaussianMixture(torch.zeros(1, 3), torch.tensor([s]), torch.ones(1))

    class ExactF(torch.nn.Module):
        def forward(self, x_in, c_noise, y=None):
            sigma = torch.exp(4 * c_noise.double()).reshape(-1, 1)
            c_skip, c_out, c_in, _ = edm_coefficients(sigma, sigma_data)
            x_tilde = x_in.double() / c_in
            d = x_tilde * s**2 / (s**2 + sigma**2)
            return ((d - c_skip * x_tilde) / c_out).to(x_in.dtype)

    f = eps_network(ExactF(), "edm", schedule, sigma_data=sigma_data)
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 1000, (512,), generator=g)
    x_t = torch.randn(512, 3, generator=g, dtype=torch.float64) * 2
    exact = oracle.eps_fn(schedule.alpha_bars)(x_t, t)
    torch.testing.assert_close(f(x_t, t), exact, rtol=1e-6, atol=1e-6)
    if sigma_data == s:  # σ_d = the data's std: c_skip·x̃ alone is the exact denoiser, F* = 0
        x_in, t_in = network_input("edm", x_t, t, schedule, sigma_data)
        assert ExactF()(x_in, t_in).abs().max().item() < 1e-6
    tf = t.double() + 0.25
    torch.testing.assert_close(
        f(x_t, tf.clamp(max=999)),
        oracle.eps_fn(schedule.alpha_bars)(x_t, tf.clamp(max=999)),
        rtol=1e-6,
        atol=1e-6,
    )


def test_loss_on_the_exact_target_is_zero_and_edm_weighting_gives_f_unit_weight():
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(64, 3, generator=g, dtype=torch.float64), torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 1000, (64,), generator=g)
    sd = 0.5
    exact = lambda x_in, t_in: prediction_target("edm", x0, eps, t, S, sd)  # noqa: E731
    for weighting in ("uniform", "edm", "min-snr"):
        loss = ddkit.diffusion_loss(exact, S, x0, t=t, noise=eps, prediction="edm", sigma_data=sd, weighting=weighting)
        assert loss.item() < 1e-20
    zero = lambda x_in, t_in: torch.zeros_like(x_in)  # noqa: E731
    kw = dict(t=t, noise=eps, prediction="edm", sigma_data=sd, reduction="none")
    plain = ddkit.diffusion_loss(zero, S, x0, **kw)
    # EDM's λ = 1/c_out² on the D error is weight 1 on F's: the same loss as uniform
    assert torch.equal(ddkit.diffusion_loss(zero, S, x0, weighting="edm", **kw), plain)
    # and it is λ·‖D - x₀‖² computed the plain way
    sigma = S.sigmas[t].reshape(-1, 1)
    c_skip, c_out, _, _ = edm_coefficients(sigma, sd)
    d = c_skip * (x0 + sigma * eps)  # F = 0
    torch.testing.assert_close(plain, ((d - x0) ** 2).mean(1) / c_out.reshape(-1) ** 2, check_dtype=False)
    # min-SNR on the x₀ error, as for the other targets: min(SNR, γ)·c_out² on F's
    snr = S.snr[t]
    w = snr.clamp(max=5.0) * c_out.reshape(-1) ** 2
    got = ddkit.diffusion_loss(zero, S, x0, weighting="min-snr", **kw)
    torch.testing.assert_close(got, (plain * w).float(), rtol=1e-5, atol=1e-9)
    assert TARGETS["edm"].diffusers_name is None and TARGETS["edm"].preconditioned


def test_preconditioned_rows_need_sigma_data():
    with pytest.raises(ValueError, match="needs sigma_data"):
        eps_network(torch.nn.Identity(), "edm", S)
    with pytest.raises(ValueError, match="needs sigma_data"):
        ddkit.diffusion_loss(lambda x, t: x, S, torch.ones(2, 2), prediction="edm")
    with pytest.raises(ValueError, match="edm"):
        ddkit.diffusion_loss(lambda x, t: x, S, torch.ones(2, 2), weighting="edm")


@pytest.mark.parametrize("schedule", [S, ddkit.Schedule.linear(1000), ddkit.Schedule.cosine(50)])
def test_lognormal_timesteps_match_their_density(schedule):
    """A χ² test of 200,000 draws against the log-normal density of σ, ln σ ~ N(-1.2, 1.2²), carried
    onto the discrete t (each t's σ-bin: halfway to its neighbours in ln σ), computed here with scipy."""
    T = schedule.num_timesteps
    log_sigma = np.log(schedule.sigmas.numpy())
    edges = np.concatenate([[-np.inf], (log_sigma[1:] + log_sigma[:-1]) / 2, [np.inf]])
    expected = np.diff(stats.norm.cdf(edges, loc=-1.2, scale=1.2))
    probs = lognormal_timestep_probs(schedule, -1.2, 1.2)
    np.testing.assert_allclose(probs.numpy(), expected, atol=1e-12)
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-12)
    n = 200_000
    t = draw_timesteps(n, T, torch.Generator().manual_seed(0), "cpu", probs)
    assert t.dtype == torch.int64 and t.min() >= 0 and t.max() < T
    counts = np.bincount(t.numpy(), minlength=T)
    # pool neighbouring timesteps into cells of >= 20 expected draws (χ²'s condition), the tails too
    cells_obs, cells_exp, acc_o, acc_e = [], [], 0, 0.0
    for o, e in zip(counts, expected * n):
        acc_o, acc_e = acc_o + o, acc_e + e
        if acc_e >= 20:
            cells_obs.append(acc_o)
            cells_exp.append(acc_e)
            acc_o, acc_e = 0, 0.0
    cells_obs[-1] += acc_o
    cells_exp[-1] += acc_e
    assert len(cells_obs) >= 10
    chi2, p = stats.chisquare(cells_obs, np.array(cells_exp) * sum(cells_obs) / sum(cells_exp))
    assert p > 1e-3, (chi2, p, len(cells_obs))
    if T >= 1000:  # fine steps: as many draws fall within two P_std of P_mean as the density says
        sig = schedule.sigmas[t]
        inside = ((sig > math.exp(-3.6)) & (sig < math.exp(1.2))).double().mean().item()
        assert inside == pytest.approx(stats.norm.cdf(2) - stats.norm.cdf(-2), abs=0.01)


def test_uniform_noise_levels_draw_as_before():
    assert timestep_probs(S, "uniform") is None
    a = draw_timesteps(100, 1000, torch.Generator().manual_seed(4), "cpu")
    b = torch.randint(0, 1000, (100,), generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="uniform, lognormal"):
        timestep_probs(S, "beta")
    with pytest.raises(ValueError, match="p_std"):
        lognormal_timestep_probs(S, -1.2, 0.0)
