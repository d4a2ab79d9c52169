import pytest
import torch

import ddkit

S = ddkit.Schedule.linear()


def test_zero_model_loss_is_noise_variance():
    x0 = torch.randn(4096, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    loss = ddkit.diffusion_loss(lambda x, t: torch.zeros_like(x), S, x0, generator=torch.Generator().manual_seed(1))
    assert loss.item() == pytest.approx(1.0, abs=0.02)


def test_loss_is_exact_mse_with_given_t_and_noise():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)
    t = torch.arange(8) * 100
    perfect = lambda x_t, tt: (
        (x_t - S.gather(S.alpha_bars.sqrt(), tt, x_t) * x0) / S.gather((1 - S.alpha_bars).sqrt(), tt, x_t)
    )  # noqa: E731
    assert ddkit.diffusion_loss(perfect, S, x0, t=t, noise=noise).item() == pytest.approx(0.0, abs=1e-9)
    per = ddkit.diffusion_loss(lambda x, tt: torch.ones_like(x), S, x0, t=t, noise=noise, reduction="none")
    assert per.shape == (8,)
    torch.testing.assert_close(per, (1 - noise).pow(2).mean(1))


def test_exact_gmm_eps_beats_zero_and_gradients_flow():
    from ddkit.oracle import GaussianMixture

    gmm = GaussianMixture.default_2d()
    x0, _ = gmm.sample(20000, torch.Generator().manual_seed(0))
    best = ddkit.diffusion_loss(gmm.eps_fn(S.alpha_bars), S, x0, generator=torch.Generator().manual_seed(1))
    zero = ddkit.diffusion_loss(lambda x, t: 0 * x, S, x0, generator=torch.Generator().manual_seed(1))
    assert best.item() < 0.6 * zero.item()
    w = torch.zeros(1, requires_grad=True)
    ddkit.diffusion_loss(lambda x, t: w * x, S, x0[:64]).backward()
    assert w.grad is not None and w.grad.abs().item() > 0


def test_timesteps_are_uniform_and_seeded():
    seen = []
    fn = lambda x, t: (seen.append(t.clone()), torch.zeros_like(x))[1]  # noqa: E731
    ddkit.diffusion_loss(fn, S, torch.zeros(50000, 1), generator=torch.Generator().manual_seed(3))
    t = seen[0]
    assert t.min().item() >= 0 and t.max().item() <= 999
    assert t.float().mean().item() == pytest.approx(499.5, abs=5)
    a = ddkit.diffusion_loss(lambda x, t: x, S, torch.ones(4, 2), generator=torch.Generator().manual_seed(5))
    b = ddkit.diffusion_loss(lambda x, t: x, S, torch.ones(4, 2), generator=torch.Generator().manual_seed(5))
    assert a.item() == b.item()


def test_loss_errors():
    with pytest.raises(ValueError, match="mean, none"):
        ddkit.diffusion_loss(lambda x, t: x, S, torch.ones(2, 2), reduction="sum")
    with pytest.raises(ValueError, match=r"net returned shape \[2, 1\]"):
        ddkit.diffusion_loss(lambda x, t: x[:, :1], S, torch.ones(2, 2))


def test_min_snr_weighting_is_min_snr_gamma_over_snr():
    s = ddkit.Schedule.cosine()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    t = torch.tensor([0, 50, 200, 500, 800, 999])
    zero = lambda x, tt: torch.zeros_like(x)  # noqa: E731
    plain = ddkit.diffusion_loss(zero, s, x0, t=t, noise=noise, reduction="none")
    weighted = ddkit.diffusion_loss(zero, s, x0, t=t, noise=noise, reduction="none", weighting="min-snr", snr_gamma=5.0)
    ab = s.alpha_bars[t]
    snr = ab / (1 - ab)
    torch.testing.assert_close(s.snr[t], snr)
    expected_w = torch.clamp(snr, max=5.0) / snr
    torch.testing.assert_close(weighted, plain * expected_w.float())
    # noisy steps (SNR < 5) keep weight 1; the least noisy step is scaled by 5/SNR_0 (tiny)
    assert (snr[3:] < 5).all() and torch.equal(weighted[3:], plain[3:])
    assert weighted[0].item() == pytest.approx(plain[0].item() * 5 / snr[0].item(), rel=1e-5)
    assert weighted[0].item() < 1e-3 * plain[0].item()
    with pytest.raises(ValueError, match="uniform, min-snr"):
        ddkit.diffusion_loss(zero, s, x0, weighting="p2")
