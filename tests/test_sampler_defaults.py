"""No documented default gives garbage: on the exact oracle, heun, euler, dpm++ and unipc with their
default spacing reach DDIM-50's energy distance at <= 50 model evaluations on both schedules (paired
start noise, 3 draws of 4,000), where heun's karras grid from the cosine schedule's σ_{T-1} ≈ 2·10⁴
did not (docs/few-steps.md, "Why heun broke")."""

import pytest
import torch

import ddkit
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.samplers import run_sampler
from ddkit.timesteps import karras

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

TOL = 2e-4  # about two standard errors of the paired mean; the old heun default was 0.01 above


def _energy(gmm, schedule, sampler, **options) -> float:
    fn = gmm.eps_fn(schedule.alpha_bars)
    scores = []
    for seed in range(3):
        x_T = torch.randn(4000, 2, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
        scores.append(energy_distance_to_mixture(run_sampler(sampler, fn, x_T, schedule, **options), gmm))
    return sum(scores) / len(scores)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_default_spacings_reach_ddim50(gmm, name):
    schedule = getattr(ddkit.Schedule, name)()
    ddim = _energy(gmm, schedule, "ddim", steps=50)
    for sampler, nfe in (("heun", 49), ("euler", 50), ("dpm++", 50), ("unipc", 50)):
        assert _energy(gmm, schedule, sampler, steps=nfe) <= ddim + TOL, sampler


def test_heun_from_the_cosine_top_was_broken(gmm):
    schedule = ddkit.Schedule.cosine()
    ddim = _energy(gmm, schedule, "ddim", steps=50)
    old = karras(schedule, 25).tolist()  # the old default: karras over the schedule's whole σ range
    with pytest.warns(UserWarning, match="overshoots"):
        assert _energy(gmm, schedule, "heun", sigmas=karras(schedule, 13).tolist()) > 0.1  # 25 NFE
    assert _energy(gmm, schedule, "heun", sigmas=old) > ddim + 20 * TOL  # 49 NFE
