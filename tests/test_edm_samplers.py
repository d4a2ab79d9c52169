"""EDM's Heun and Euler samplers (Karras et al. 2022, Algorithm 2) on the ε-network: against
diffusers' HeunDiscreteScheduler / EulerDiscreteScheduler on the same σ-grid, Euler against DDIM,
the churn against a direct transcription of Algorithm 2, per-sample churn noise, and accuracy on
the oracle."""

import math

import pytest
import torch

import ddkit
from ddkit.rng import SampleGenerators
from ddkit.samplers import SAMPLERS, ddim_sample, euler_sample, heun_sample, run_sampler
from ddkit.timesteps import karras, sampling_grid, t_from_sigma

pytestmark = pytest.mark.usefixtures("one_thread")


def _diffusers_run(cls, schedule, n, eps_fn, x):
    """diffusers' scheduler over ddkit's ᾱ (float64, so that both map σ to the same t), karras σ-grid,
    started from the same x at the grid's first σ. Returns (samples, the scheduler's σ-grid)."""
    sched = cls(num_train_timesteps=schedule.num_timesteps, trained_betas=schedule.betas.float().numpy())
    sched.alphas_cumprod = schedule.alpha_bars.clone().numpy()
    sched.config.use_karras_sigmas = True
    sched.set_timesteps(n)
    sigmas = list(dict.fromkeys(v for v in sched.sigmas.double().tolist() if v > 0))
    sample = x * math.sqrt(sigmas[0] ** 2 + 1)  # x̃ = x_t/√ᾱ (diffusers' init_noise_sigma drops the +1)
    for t in sched.timesteps:
        model_input = sched.scale_model_input(sample, t)
        sample = sched.step(eps_fn(model_input, torch.full((x.shape[0],), float(t))), t, sample).prev_sample
    return sample, sigmas


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("kind", ["heun", "euler"])
@pytest.mark.parametrize("n", [5, 10])
def test_agrees_with_diffusers_on_the_same_sigma_grid(gmm, name, kind, n):
    from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

    schedule = getattr(ddkit.Schedule, name)()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    cls, ours = (HeunDiscreteScheduler, heun_sample) if kind == "heun" else (EulerDiscreteScheduler, euler_sample)
    theirs, sigmas = _diffusers_run(cls, schedule, n, fn, x)
    assert len(sigmas) == n
    mine = ours(fn, x, schedule, sigmas=sigmas)
    assert (mine - theirs).abs().max() <= 1e-4
    # the same grid from ddkit's own karras(): diffusers' σ-grid is EDM's eq. 5 over the schedule's range
    assert torch.allclose(torch.tensor(sigmas, dtype=torch.float64), karras(schedule, n), rtol=1e-5)


def test_model_evaluations(gmm):
    schedule = ddkit.Schedule.linear()
    calls = []
    fn = gmm.eps_fn(schedule.alpha_bars)

    def counting(x, t):
        calls.append(t[0].item())
        return fn(x, t)

    x = torch.randn(4, 2)
    heun_sample(counting, x, schedule, steps=7)
    assert len(calls) == 7  # N = 4 points: 2·4 − 1
    calls.clear()
    heun_sample(counting, x, schedule, sigmas=[80.0, 10.0, 1.0, 0.1, 0])
    assert len(calls) == 7
    calls.clear()
    euler_sample(counting, x, schedule, steps=6)
    assert len(calls) == 6
    with pytest.raises(ValueError, match="must be odd for heun"):
        heun_sample(counting, x, schedule, steps=6)


@pytest.mark.parametrize("spacing", ["karras", "leading", "trailing", "logsnr"])
def test_euler_without_churn_is_ddim(gmm, spacing):
    """d = (x̃ − D)/σ = ε, so an Euler step in σ is DDIM's η = 0 step (Song et al. 2020, eq. 14)."""
    schedule = ddkit.Schedule.cosine()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    a = euler_sample(fn, x, schedule, steps=8, spacing=spacing)
    b = ddim_sample(fn, x, schedule, steps=8, spacing=spacing)
    assert torch.allclose(a, b, atol=1e-10)


def _algorithm_2(fn, schedule, x_T, sigmas, s_churn, s_tmin, s_tmax, noises, heun=True):
    """EDM's Algorithm 2 transcribed line by line (VE form on x̃), D from the ε-network."""

    def D(x, sigma):
        ab = 1 / (1 + sigma**2)
        t = torch.full((x.shape[0],), float(t_from_sigma(schedule, [sigma])[0]), dtype=torch.float64)
        return x - sigma * fn(x * math.sqrt(ab), t)

    N = len(sigmas)
    t = list(sigmas) + [0.0]
    x = x_T * math.sqrt(1 + t[0] ** 2)
    for i in range(N):
        gamma = min(s_churn / N, math.sqrt(2) - 1) if s_tmin <= t[i] <= s_tmax else 0.0
        t_hat = t[i] * (1 + gamma)
        x_hat = x + math.sqrt(t_hat**2 - t[i] ** 2) * noises[i]
        d = (x_hat - D(x_hat, t_hat)) / t_hat
        x_next = x_hat + (t[i + 1] - t_hat) * d
        if heun and t[i + 1] != 0:
            d2 = (x_next - D(x_next, t[i + 1])) / t[i + 1]
            x_next = x_hat + (t[i + 1] - t_hat) * (0.5 * d + 0.5 * d2)
        x = x_next
    return x


@pytest.mark.parametrize("heun", [True, False])
def test_churn_follows_algorithm_2(gmm, heun):
    schedule = ddkit.Schedule.linear()
    fn = gmm.eps_fn(schedule.alpha_bars)
    sigmas = karras(schedule, 6).tolist()
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    noises = [torch.randn(50, 2, generator=gen, dtype=torch.float64) for _ in sigmas]
    kw = {"s_churn": 4.0, "s_tmin": 0.05, "s_tmax": 50.0}
    want = _algorithm_2(fn, schedule, x, sigmas, noises=noises, heun=heun, **kw)
    sample = heun_sample if heun else euler_sample
    # the sampler draws the churn noise only at steps whose σ lies in [s_tmin, s_tmax]
    drawn = iter([z for z, s in zip(noises, sigmas) if kw["s_tmin"] <= s <= kw["s_tmax"]])
    import ddkit.samplers.edm as edm

    original = edm.noise_like
    edm.noise_like = lambda like, generator: next(drawn)
    try:
        got = sample(fn, x, schedule, sigmas=sigmas, **kw)
    finally:
        edm.noise_like = original
    assert (got - want).abs().max() < 1e-9, (got - want).abs().max()


def test_churn_noise_is_per_sample(gmm):
    """Sample i's churn noise comes from its own generator: the batch never changes a sample."""
    schedule = ddkit.Schedule.linear()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x = SampleGenerators(7, range(6)).randn((6, 2))
    whole = heun_sample(fn, x, schedule, steps=9, s_churn=10.0, generator=SampleGenerators(7, range(6)))
    part = heun_sample(fn, x[2:5], schedule, steps=9, s_churn=10.0, generator=SampleGenerators(7, range(2, 5)))
    assert torch.allclose(whole[2:5], part, atol=1e-6)
    plain = heun_sample(fn, x, schedule, steps=9)
    assert not torch.allclose(whole, plain)
    # churn outside [s_tmin, s_tmax] does nothing
    none = heun_sample(fn, x, schedule, steps=9, s_churn=10.0, s_tmin=1e5, generator=SampleGenerators(7, range(6)))
    assert torch.allclose(none, plain)


def test_accurate_on_the_oracle(gmm):
    """Heun with 35 evaluations (EDM's CIFAR setting: 18 points) is close to the exact law, with
    churn too; the null level of 4,000 true samples is ~1e-4."""
    from ddkit.eval.energy import energy_distance_to_mixture

    schedule = ddkit.Schedule.linear()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(4))
    assert energy_distance_to_mixture(heun_sample(fn, x, schedule, steps=35).double(), gmm) < 2e-3
    churned = heun_sample(fn, x, schedule, steps=35, s_churn=5.0, generator=torch.Generator().manual_seed(5))
    assert energy_distance_to_mixture(churned.double(), gmm) < 3e-3


def test_registered_with_churn_options_and_callback(gmm):
    schedule = ddkit.Schedule.linear()
    fn = gmm.eps_fn(schedule.alpha_bars)
    for name in ("heun", "euler"):
        assert {"steps", "spacing", "s_churn", "s_tmin", "s_tmax", "s_noise"} <= set(SAMPLERS[name].options)
    seen = []
    x = torch.randn(3, 2)
    run_sampler("heun", fn, x, schedule, steps=5, callback=seen.append)
    assert [s.i for s in seen] == [0, 1, 2]
    assert [round(s.sigma, 6) for s in seen] == [round(v, 6) for v in sampling_grid(schedule, 3, "karras").sigmas]
    assert seen[0].x_t.shape == x.shape and seen[-1].denoised.shape == x.shape
    with pytest.raises(ValueError, match="does not take s_churn"):
        run_sampler("ddim", fn, x, schedule, steps=5, s_churn=1.0)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"s_churn": -1.0}, "s_churn must be"),
        ({"s_noise": float("nan")}, "s_noise must be"),
        ({"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmax must be"),
        ({"steps": 0}, "steps must be"),
    ],
)
def test_bad_options(gmm, kw, match):
    schedule = ddkit.Schedule.linear()
    with pytest.raises(ValueError, match=match):
        euler_sample(gmm.eps_fn(schedule.alpha_bars), torch.randn(2, 2), schedule, **kw)
