import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddkit
from ddkit.timesteps import make_timesteps


def test_linear_matches_ddpm_definition():
    s = ddkit.Schedule.linear(num_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    expected = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    for name in ("betas", "alphas", "alpha_bars"):
        assert getattr(s, name).dtype == torch.float64
        assert getattr(s, name).shape == (1000,)
    np.testing.assert_allclose(s.betas.numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(s.alphas.numpy(), 1 - expected, atol=1e-15)
    np.testing.assert_allclose(s.alpha_bars.numpy(), np.cumprod(1 - expected), rtol=1e-12)
    # DDPM's schedule leaves almost no signal at T: ᾱ_T ≈ 4.04e-5.
    assert s.alpha_bars[-1].item() == pytest.approx(4.0358e-5, rel=1e-3)


def test_cosine_matches_nichol_dhariwal_and_diffusers():
    from diffusers import DDPMScheduler

    s = ddkit.Schedule.cosine(num_timesteps=1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (1, 10, 500, 900):  # unclipped region: ᾱ_t = f(t)/f(0)
        assert s.alpha_bars[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    assert s.betas.max().item() == pytest.approx(0.999)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").betas.double()
    np.testing.assert_allclose(s.betas.numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)


def test_posterior_variance_and_prev():
    s = ddkit.Schedule.linear(num_timesteps=50)
    assert s.alpha_bars_prev[0] == 1.0
    torch.testing.assert_close(s.alpha_bars_prev[1:], s.alpha_bars[:-1])
    beta_tilde = (1 - s.alpha_bars_prev) / (1 - s.alpha_bars) * s.betas
    torch.testing.assert_close(s.posterior_variance, beta_tilde)
    assert s.posterior_variance[0] == 0.0
    assert bool((s.posterior_variance[1:] < s.betas[1:]).all())


@pytest.mark.parametrize(
    "s", [ddkit.Schedule.linear(100, 1e-3, 0.05), ddkit.Schedule.cosine(64), ddkit.Schedule(torch.full((5,), 0.1))]
)
def test_config_round_trip(s):
    back = ddkit.Schedule.from_config(s.to_config())
    torch.testing.assert_close(back.betas, s.betas, rtol=0, atol=0)
    assert back.name == s.name


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_timesteps": 0}, "positive integer"),
        ({"num_timesteps": 10, "beta_start": 0.1, "beta_end": 0.01}, "beta_start <= beta_end"),
    ],
)
def test_bad_schedules(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ddkit.Schedule.linear(**kwargs)


def test_bad_betas():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ddkit.Schedule(torch.tensor([0.1, 0.0]))
    with pytest.raises(ValueError, match="unknown schedule"):
        ddkit.Schedule.from_config({"name": "sigmoid"})


@settings(max_examples=300)
@given(data=st.data(), spacing=st.sampled_from(ddkit.SPACINGS))
def test_every_spacing_is_strictly_decreasing_unique_in_range(data, spacing):
    T = data.draw(st.integers(1, 1200), label="T")
    S = data.draw(st.integers(1, T), label="S")
    seq = make_timesteps(T, S, spacing)
    assert seq.dtype == torch.int64 and seq.shape == (S,)
    assert int(seq.min()) >= 0 and int(seq.max()) <= T - 1
    assert bool((seq[:-1] > seq[1:]).all())


@pytest.mark.parametrize("T", [1, 2, 7, 1000])
@pytest.mark.parametrize("spacing", ddkit.SPACINGS)
def test_all_steps_visit_every_timestep(T, spacing):
    assert make_timesteps(T, T, spacing).tolist() == list(range(T - 1, -1, -1))


@pytest.mark.parametrize("steps", [10, 50, 7, 333])
@pytest.mark.parametrize(
    "spacing, diffusers_name", [("leading", "leading"), ("trailing", "trailing"), ("linspace", "linspace")]
)
def test_spacings_match_diffusers(steps, spacing, diffusers_name):
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(num_train_timesteps=1000, timestep_spacing=diffusers_name, steps_offset=0)
    sched.set_timesteps(steps)
    assert make_timesteps(1000, steps, spacing).tolist() == sched.timesteps.tolist()


@pytest.mark.parametrize("steps", [10, 20, 29])
def test_quadratic_is_ddims_formula_when_unique(steps):
    # DDIM's code: seq = (np.linspace(0, np.sqrt(T * 0.8), S) ** 2).astype(int)
    ref = (np.linspace(0, np.sqrt(1000 * 0.8), steps) ** 2).astype(int)
    assert make_timesteps(1000, steps, "quadratic").tolist() == ref[::-1].tolist()


def test_quadratic_repairs_ddims_repeated_steps():
    """Deliberate difference: DDIM's formula visits t=0 twice at T=1000, S=50; ddkit moves the
    repeated low steps up by one so that every step is a distinct timestep."""
    ref = (np.linspace(0, np.sqrt(1000 * 0.8), 50) ** 2).astype(int)[::-1]
    ours = make_timesteps(1000, 50, "quadratic").numpy()
    assert ref[-1] == ref[-2] == 0
    np.testing.assert_array_equal(ours[:46], ref[:46])  # 800 … 5
    assert ours[-4:].tolist() == [3, 2, 1, 0]


def test_leading_is_ddims_stride():
    assert make_timesteps(1000, 50, "leading").tolist() == list(range(980, -1, -20))


@pytest.mark.parametrize(
    "steps, spacing, match",
    [
        (0, "leading", r"steps must be an integer in \[1, 1000\]"),
        (1001, "leading", r"steps must be an integer in \[1, 1000\]"),
        (2.5, "leading", "steps must be an integer"),
        (10, "cosine", "allowed: leading, quadratic, trailing, linspace"),
    ],
)
def test_bad_timestep_arguments(steps, spacing, match):
    with pytest.raises(ValueError, match=match):
        make_timesteps(1000, steps, spacing)
