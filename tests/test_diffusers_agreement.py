"""ddkit against diffusers' schedulers, for the same ε model and x_T.

Conventions where ddkit deliberately differs are written down as tests at the end.
"""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

import ddkit
from ddkit.oracle import GaussianMixture

S = ddkit.Schedule.linear()
GMM = GaussianMixture.default_2d()


def _fn():
    return GMM.eps_fn(S.alpha_bars)


def _x_T(n=256, seed=0):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def _diffusers_ddim(fn, x, steps, eta=0.0, spacing="leading", generator=None):
    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        set_alpha_to_one=True,
        clip_sample=False,
        timestep_spacing=spacing,
        steps_offset=0,
    )
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        eps = fn(x, torch.full((x.shape[0],), int(t)))
        x = sched.step(eps, t, x, eta=eta, generator=generator).prev_sample
    return x


@pytest.mark.parametrize("steps", [10, 50, 100])
def test_ddim_eta0_matches_diffusers(steps):
    x_T = _x_T()
    ours = ddkit.ddim_sample(_fn(), x_T, S, steps=steps, eta=0.0, spacing="leading")
    ref = _diffusers_ddim(_fn(), x_T, steps)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_ddim_eta_positive_matches_diffusers_with_the_same_generator():
    x_T = _x_T()
    ours = ddkit.ddim_sample(_fn(), x_T, S, steps=20, eta=0.7, generator=torch.Generator().manual_seed(4))
    ref = _diffusers_ddim(_fn(), x_T, 20, eta=0.7, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variance, name", [("small", "fixed_small"), ("large", "fixed_large")])
def test_ddpm_matches_diffusers_with_the_same_generator(variance, name):
    s = ddkit.Schedule.linear(num_timesteps=200, beta_start=1e-3, beta_end=0.05)
    fn = GMM.eps_fn(s.alpha_bars)
    sched = DDPMScheduler(
        num_train_timesteps=200,
        beta_schedule="linear",
        beta_start=1e-3,
        beta_end=0.05,
        variance_type=name,
        clip_sample=False,
    )
    sched.set_timesteps(200)
    x_T = _x_T()
    g = torch.Generator().manual_seed(7)
    ref = x_T
    for t in sched.timesteps:
        ref = sched.step(fn(ref, torch.full((ref.shape[0],), int(t))), t, ref, generator=g).prev_sample
    ours = ddkit.ddpm_sample(fn, x_T, s, variance=variance, generator=torch.Generator().manual_seed(7))
    # the same draws in the same order: agreement to float32 precision, except where the last
    # steps amplify rounding (diffusers rounds its schedule to float32; see the test below)
    assert (ours - ref).abs().mean().item() < 1e-4
    assert (ours - ref).abs().max().item() < 5e-3


def test_difference_float64_schedule_is_closer_to_exact_than_diffusers():
    """diffusers keeps alphas_cumprod in float32; ddkit keeps the schedule in float64 and only the
    sample in float32. Against the same chain run wholly in float64, ddkit's float32 DDPM is
    several times closer than diffusers'."""
    ref_sched = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    assert ref_sched.dtype == torch.float32 and S.alpha_bars.dtype == torch.float64
    torch.testing.assert_close(S.alpha_bars.float(), ref_sched, rtol=1e-5, atol=1e-7)

    s = ddkit.Schedule.linear(num_timesteps=200, beta_start=1e-3, beta_end=0.05)
    fn = GMM.eps_fn(s.alpha_bars)
    sched = DDPMScheduler(
        num_train_timesteps=200,
        beta_schedule="linear",
        beta_start=1e-3,
        beta_end=0.05,
        variance_type="fixed_small",
        clip_sample=False,
    )
    sched.set_timesteps(200)
    ref = ours = _x_T()
    exact = ours.double()
    g_ref, g_ours, g_exact = (torch.Generator().manual_seed(7) for _ in range(3))
    for t in range(199, -1, -1):
        tt = torch.full((ours.shape[0],), t)
        ref = sched.step(fn(ref, tt), t, ref, generator=g_ref).prev_sample
        ours = ddkit.ddpm_step(ours, fn(ours, tt), s, t, generator=g_ours)
        noise = torch.randn(ours.shape, generator=g_exact).double() if t > 0 else None
        exact = ddkit.ddpm_step(exact, fn(exact, tt), s, t, noise=noise)
    err_ours = (ours.double() - exact).abs().max().item()
    err_ref = (ref.double() - exact).abs().max().item()
    assert err_ours < err_ref / 3, (err_ours, err_ref)


def test_plain_inversion_matches_diffusers_inverse_scheduler():
    from diffusers import DDIMInverseScheduler

    sched = DDIMInverseScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=1e-4,
        beta_end=0.02,
        set_alpha_to_one=True,
        clip_sample=False,
        timestep_spacing="leading",
        steps_offset=0,
    )
    sched.set_timesteps(50)
    fn = _fn()
    x0, _ = GMM.sample(128, torch.Generator().manual_seed(2))
    x = x0.float()
    for t in sched.timesteps:
        x = sched.step(fn(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    ours = ddkit.ddim_invert(fn, x0.float(), S, steps=50, refine=0)
    torch.testing.assert_close(ours, x, rtol=1e-3, atol=1e-3)


# ---- deliberate differences ------------------------------------------------------------


def test_difference_previous_step_comes_from_the_sequence_not_a_stride():
    """diffusers' DDIM steps from t to t - T//S even when the spacing is 'linspace', so with
    S = 7 it jumps 999 → 857 while its own next timestep is 832 (diffusers #11347, #12633).
    ddkit takes the previous step from the sequence it walks."""
    x_T = _x_T()
    ours = ddkit.ddim_sample(_fn(), x_T, S, steps=7, spacing="linspace")
    seq = ddkit.make_timesteps(1000, 7, "linspace").tolist()
    assert seq == [999, 832, 666, 500, 333, 166, 0]
    walked = ddkit.ddim_sample(_fn(), x_T, S, timesteps=seq)
    ref = _diffusers_ddim(_fn(), x_T, 7, spacing="linspace")
    torch.testing.assert_close(ours, walked, rtol=0, atol=0)
    assert (ours - ref).abs().max().item() > 1e-2
