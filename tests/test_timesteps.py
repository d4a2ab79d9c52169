"""The grids (ddkit.timesteps) and what every sampler does with them: strictly decreasing, inside
[0, T-1] and the schedule's σ range, for every spacing, schedule, start_t and solver convention;
σ-grids (karras, exponential, explicit sigmas) mapped to t and back; the per-step callback and
start_t on every registered sampler; one-line errors for the bad grids."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import ddkit
from ddkit.samplers import SAMPLERS, run_sampler
from ddkit.timesteps import (
    ALL_SPACINGS,
    alpha_bar_at,
    exponential,
    karras,
    sampling_grid,
    sigma_range,
    t_from_sigma,
)

pytestmark = pytest.mark.usefixtures("one_thread")
SCHEDULES = {
    "linear": ddkit.Schedule.linear(),
    "cosine": ddkit.Schedule.cosine(),
    "linear-50": ddkit.Schedule.linear(num_timesteps=50),
}


@given(
    name=st.sampled_from(sorted(SCHEDULES)),
    spacing=st.sampled_from(ALL_SPACINGS),
    steps=st.integers(1, 60),
    start=st.one_of(st.none(), st.integers(1, 999)),
    solver=st.booleans(),
)
def test_every_grid_is_decreasing_and_in_range(name, spacing, steps, start, solver):
    schedule = SCHEDULES[name]
    T = schedule.num_timesteps
    start = None if start is None else start % T
    try:
        grid = sampling_grid(schedule, steps, spacing, start_t=start, solver=solver)
    except ValueError as e:  # only too many steps for the timesteps below start_t, or a one-point σ range
        assert "steps must be an integer in" in str(e) or "need σ_min < σ_max" in str(e), e
        return
    t = list(grid.t)
    assert len(t) == steps
    assert all(a > b for a, b in zip(t, t[1:]))
    assert t[-1] >= 0 and t[0] <= (T - 1 if start is None else start)
    lo, hi = sigma_range(schedule)
    assert all(lo * (1 - 1e-9) <= s <= hi * (1 + 1e-9) for s in grid.sigmas)
    assert all(isinstance(a, float) and 0 < a < 1 for a in grid.alpha_bars)
    if start is not None and spacing not in ("karras", "exponential"):
        assert t[0] == start  # the sampler's input is x at start_t


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_sigma_grids(name):
    schedule = SCHEDULES[name]
    lo, hi = sigma_range(schedule)
    k = karras(schedule, 10)
    assert k[0].item() == pytest.approx(hi) and k[-1].item() == pytest.approx(lo)
    # EDM eq. 5: σ^(1/ρ) is linear in i
    assert np.allclose(np.diff(k.numpy() ** (1 / 7), 2), 0, atol=1e-12)
    e = exponential(schedule, 10)
    assert np.allclose(np.diff(np.log(e.numpy()), 2), 0, atol=1e-12)
    # σ → t → ᾱ → σ is the identity, and a discrete step's σ gives that step exactly
    sig = torch.cat([k, e])
    t = torch.from_numpy(t_from_sigma(schedule, sig.numpy()))
    back = ((1 - alpha_bar_at(schedule.alpha_bars, t)) / alpha_bar_at(schedule.alpha_bars, t)).sqrt()
    assert torch.allclose(back, sig, rtol=1e-10)
    assert t_from_sigma(schedule, schedule.sigmas[[0, 17, 999]].numpy()).tolist() == [0.0, 17.0, 999.0]


def test_explicit_sigmas_and_timesteps():
    schedule = SCHEDULES["linear"]
    grid = sampling_grid(schedule, sigmas=[100.0, 10.0, 1.0, 0.1, 0.0])  # a trailing 0 is where sampling ends
    assert len(grid) == 4 and grid.sigmas == pytest.approx([100.0, 10.0, 1.0, 0.1], rel=1e-10)
    assert all(isinstance(t, float) for t in grid.t)
    grid = sampling_grid(schedule, timesteps=[999, 500.5, 3])
    assert grid.t == (999, 500.5, 3) and grid.alpha_bars[0] == schedule.alpha_bar(999)
    # σ-grids computed in float32 (diffusers' sigmas) land on the range's ends
    f32 = karras(schedule, 5).float().double().tolist()
    assert len(sampling_grid(schedule, sigmas=f32)) == 5


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"timesteps": [500, 500, 3]}, "strictly decreasing"),
        ({"timesteps": [3, 500]}, "strictly decreasing"),
        ({"timesteps": [1000, 3]}, r"in \[0, 999\]"),
        ({"timesteps": [10, -1]}, r"in \[0, 999\]"),
        ({"timesteps": []}, "non-empty"),
        ({"sigmas": [1.0, 2.0]}, "strictly decreasing"),
        ({"sigmas": [1e6, 1.0]}, "σ range"),
        ({"sigmas": [1.0, 1e-5]}, "σ range"),
        ({"sigmas": [float("nan")]}, "strictly decreasing"),
        ({"timesteps": [5, 3], "sigmas": [1.0]}, "not both"),
        ({"steps": 5, "spacing": "nope"}, "unknown spacing"),
        ({"steps": 5, "spacing": "tuned"}, "tuned"),
        ({"steps": 0}, "steps must be"),
        ({"steps": 5, "start_t": 1000}, "start_t must be"),
    ],
)
def test_bad_grids_are_one_line_errors(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        sampling_grid(SCHEDULES["linear"], **kw)
    assert "\n" not in str(e.value)


def test_every_sampler_refuses_a_bad_grid(gmm):
    schedule = SCHEDULES["linear"]
    fn = gmm.eps_fn(schedule.alpha_bars)
    for name in SAMPLERS:
        with pytest.raises(ValueError, match="strictly decreasing"):
            run_sampler(name, fn, torch.randn(2, 2), schedule, timesteps=[5, 7])
        with pytest.raises(ValueError, match="σ range"):
            run_sampler(name, fn, torch.randn(2, 2), schedule, sigmas=[1e9, 1.0])


def _options(name):
    steps = 5 if "steps" in SAMPLERS[name].options else None
    return {"steps": steps} if steps else {}


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_reports_every_step(gmm, name):
    schedule = SCHEDULES["linear-50"]
    fn = gmm.eps_fn(schedule.alpha_bars)
    seen = []
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = run_sampler(
        name, fn, x, schedule, callback=seen.append, generator=torch.Generator().manual_seed(1), **_options(name)
    )
    assert [s.i for s in seen] == list(range(len(seen))) and len(seen) >= 3
    ts = [s.t for s in seen]
    assert all(a > b for a, b in zip(ts, ts[1:]))
    for s in seen:
        assert set(s) >= {"i", "t", "sigma", "alpha_bar", "x_t", "x0", "x", "denoised"}
        assert s.sigma == pytest.approx(math.sqrt((1 - s.alpha_bar) / s.alpha_bar))
        assert s.x_t.shape == x.shape and s.x0.shape == x.shape and s.x is s.x_t and s.denoised is s.x0
    # the sampler's output is the last x̂₀ (the last step goes to σ = 0) or a step past it
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_starts_from_start_t(gmm, name):
    """Started at t0 from q(x_t0 | x0) of true samples, every sampler returns samples near the law;
    and its first evaluation is at t0."""
    from ddkit.eval.energy import energy_distance_to_mixture

    schedule = SCHEDULES["linear"]
    fn = gmm.eps_fn(schedule.alpha_bars)
    x0, _ = gmm.sample(3000, torch.Generator().manual_seed(3))
    t0 = 300
    ab = schedule.alpha_bar(t0)
    x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(x0.shape, generator=torch.Generator().manual_seed(4))
    seen = []
    opts = {"steps": 9} if "steps" in SAMPLERS[name].options else {}
    out = run_sampler(
        name,
        fn,
        x_t.float(),
        schedule,
        start_t=t0,
        callback=seen.append,
        generator=torch.Generator().manual_seed(5),
        **opts,
    )
    first = seen[0].t
    if name in ("heun", "euler"):  # a σ-grid from σ(t0)
        assert first == pytest.approx(t0, abs=1e-6)
    else:
        assert first == t0
    assert energy_distance_to_mixture(out.double(), gmm) < 0.02


def test_steps_none_is_every_timestep_from_the_start():
    """DDPM's ancestral walk: every timestep from T-1 (or start_t) down, the schedule's own ᾱ."""
    S = ddkit.Schedule.linear(num_timesteps=50)
    grid = sampling_grid(S, None)
    assert grid.t == tuple(range(49, -1, -1)) and grid.alpha_bars == tuple(S.alpha_bar(t) for t in grid.t)
    assert sampling_grid(S, None, start_t=20).t == tuple(range(20, -1, -1))
