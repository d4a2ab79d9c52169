"""Consistency students (ddkit.consistency, ddkit.training.distill): the boundary condition, ECT's
loss on a single Gaussian against the exact consistency function, the student's config and sampling."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from ddkit.consistency import ConsistencyNetwork, cm_coefficients, consistency_grid, t_of_sigma
from ddkit.nn import MLPConfig, build_model
from ddkit.parameterization import eps_network
from ddkit.samplers import SAMPLERS, run_sampler
from ddkit.schedule import Schedule
from ddkit.training.config import DataConfig, DiffusionConfig, RunConfig
from ddkit.training.distill import (
    ECTObjective,
    default_double_every,
    ect_loss,
    ect_r,
    ect_weight,
    sample_t,
    student_options,
    teacher_note,
    teacher_step,
)
from ddkit.training.student import DistillConfig

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULES = {"cosine": Schedule.cosine(1000), "linear": Schedule.linear(1000)}


def _student_config(**diffusion) -> RunConfig:
    return RunConfig(
        model=MLPConfig(dim=2, hidden=32, depth=2),
        diffusion=DiffusionConfig(consistency_sigma_data=1.0, **diffusion),
        data=DataConfig(source="toy:moons"),
        distill=DistillConfig(teacher="t", teacher_weights="w", teacher_sha256="0"),
    )


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("target", ["eps", "x0", "v", "edm"])
def test_boundary_condition_holds_exactly(schedule, target):
    sched = SCHEDULES[schedule]
    torch.manual_seed(0)
    net = build_model(MLPConfig(dim=2, hidden=32, depth=2))
    student = ConsistencyNetwork(eps_network(net, target, sched, sigma_data=0.7), sched, 0.5)
    x = torch.randn(64, 2) * 3
    sigma_min = torch.full((64,), student.sigma_min, dtype=torch.float64)
    assert torch.equal(student.denoise(x, sigma_min), x)
    # and seen as an ε-network at t = 0 (σ = σ_min): ε = (x̃ − f)/σ = 0
    assert torch.equal(student(x, torch.zeros(64, dtype=torch.long)), torch.zeros_like(x))
    c_skip, c_out = cm_coefficients(student.sigma_min, student.sigma_min, 0.5)
    assert (c_skip, c_out) == (1.0, 0.0)


def test_coefficients_approach_edm_above_sigma_min():
    s = torch.tensor([1.0, 10.0, 80.0], dtype=torch.float64)
    c_skip, c_out = cm_coefficients(s, 0.002, 0.5)
    torch.testing.assert_close(c_skip, 0.25 / (s**2 + 0.25), rtol=1e-2, atol=0)
    torch.testing.assert_close(c_out, s * 0.5 / (s**2 + 0.25).sqrt(), rtol=1e-2, atol=0)


def test_student_starts_as_the_teachers_denoiser():
    """Far above σ_min the consistency coefficients are EDM's: f is the teacher's x̂₀."""
    sched = SCHEDULES["cosine"]
    torch.manual_seed(1)
    teacher = eps_network(build_model(MLPConfig(dim=2, hidden=32, depth=2)), "eps", sched)
    student = ConsistencyNetwork(teacher, sched, 0.5)
    x, sigma = torch.randn(16, 2, dtype=torch.float64), torch.full((16,), 5.0, dtype=torch.float64)
    t = t_of_sigma(sched, sigma)
    with torch.no_grad():
        d_teacher = x - 5.0 * teacher.double()(x / math.sqrt(26.0), t)
        d_student = student.double().denoise(x, sigma)
    rel = (5.0 - student.sigma_min) ** 2 / 25.0
    assert (d_student - d_teacher).abs().max() < 5e-3 + rel


def test_t_of_sigma_inverts_the_schedule():
    sched = SCHEDULES["cosine"]
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(t_of_sigma(sched, sched.sigmas[t]), t.double())


def test_ect_mapping_is_authors_sigmoid_schedule():
    t = torch.tensor([0.01, 0.5, 2.0, 80.0], dtype=torch.float64)
    for stage in (0, 1, 5):
        ratio = 1 - (1 + 8 * torch.sigmoid(-t)) / 2 ** (stage + 1)
        torch.testing.assert_close(ect_r(t, stage, 0.002), (t * ratio).clamp(min=0.002))
    # Δt shrinks by q = 2 per stage at large t, and r never passes below σ_min
    assert ect_r(t, 0, 0.002)[-1] / 80 == pytest.approx(0.5, abs=1e-3)
    assert (ect_r(t, 3, 0.002) >= 0.002).all()


def test_ect_loss_shares_dropout_mask_and_stops_gradient():
    """The target pass sees the dropout mask of the online pass; only the online pass has gradient."""
    torch.manual_seed(0)
    lin = nn.Linear(3, 3)
    drop = nn.Dropout(0.5)
    masks = []

    def denoise(x, sigma, y):
        out = drop(torch.ones_like(x))
        masks.append(out.detach().clone())
        return lin(x) * out

    x0, z = torch.randn(8, 3), torch.randn(8, 3)
    t = torch.full((8,), 2.0, dtype=torch.float64)
    r = torch.full((8,), 1.0, dtype=torch.float64)
    loss = ect_loss(denoise, x0, None, t, r, z)
    assert torch.equal(masks[0], masks[1])
    loss.sum().backward()
    # d/dW of ‖W x_t − sg[W x_r]‖ has only the online pass's term
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()
    assert loss.shape == (8,)


def test_ect_loss_weighting_and_pseudo_huber():
    ident = lambda x, s, y: x  # noqa: E731
    x0, z = torch.zeros(4, 2), torch.ones(4, 2)
    t = torch.full((4,), 3.0, dtype=torch.float64)
    r = torch.full((4,), 1.0, dtype=torch.float64)
    # f = identity: ‖x_t − x_r‖ = (t − r)·‖z‖ = 2√2; weighted by 1/(t − r)
    torch.testing.assert_close(ect_loss(ident, x0, None, t, r, z), torch.full((4,), math.sqrt(2.0)))
    c = 0.5
    want = (math.sqrt(8.0 + c * c) - c) / 2.0
    torch.testing.assert_close(ect_loss(ident, x0, None, t, r, z, c=c), torch.full((4,), want))
    # the authors' ImageNet weight: SNR(t) + 1/σ_d² = 1/9 + 1/0.25, whatever r is
    snr = ect_loss(ident, x0, None, t, r, z, weighting="snr", sigma_data=0.5)
    torch.testing.assert_close(snr, torch.full((4,), 2.0 * math.sqrt(2.0) * (1 / 9 + 4.0)))
    torch.testing.assert_close(ect_weight(t, r / 2, "snr", 0.5), ect_weight(t, r, "snr", 0.5))
    with pytest.raises(ValueError, match="weighting must be one of gap, snr; got .huber."):
        ect_loss(ident, x0, None, t, r, z, weighting="huber")
    with pytest.raises(ValueError, match="weighting must be one of gap, snr"):
        DistillConfig(teacher="t", teacher_weights="w", teacher_sha256="0", weighting="snrpk")


class _Correction(nn.Module):
    """The exact Gaussian ε plus a learned correction a(t)·x_t + b(t) (zero at the start): a student
    of the right form, whose network starts as the exact teacher."""

    def __init__(self, sched, mu, c):
        super().__init__()
        self.sched, self.mu, self.c = sched, mu, c
        self.net = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 2))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x_t, t, y=None):
        ab = self.sched.alpha_bars_at(t, x_t)
        exact = (1 - ab).sqrt() * (x_t - ab.sqrt() * self.mu) / (ab * self.c**2 + 1 - ab)
        u = t.float()[:, None] / 1000
        a, b = self.net(torch.cat([u, u * u, torch.sin(3 * u), torch.ones_like(u)], 1)).split(1, dim=1)
        return exact + a * x_t + b


def test_teacher_step_is_euler_on_the_exact_flow():
    """Method cd's pair point on a single Gaussian N(μ, c²I) with its exact ε: one Euler step of the
    PF-ODE, whose exact solution is x̃_r = μ + √(c²+r²)/√(c²+t²)·(x̃_t − μ); the error is second order
    in t − r (halving the step quarters it)."""
    sched, mu, c, t = SCHEDULES["cosine"], 0.5, 0.8, 5.0
    step = teacher_step(_Correction(sched, mu, c), sched)
    x = mu + math.sqrt(c * c + t * t) * torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    x = x.double()
    errors = []
    for h in (0.4, 0.2, 0.1):
        r = t - h
        with torch.no_grad():
            got = step(
                x, torch.full((4000,), t, dtype=torch.float64), torch.full((4000,), r, dtype=torch.float64), None
            )
        exact = mu + math.sqrt(c * c + r * r) / math.sqrt(c * c + t * t) * (x - mu)
        errors.append(float((got - exact).abs().max()))
    assert errors[-1] < 1e-3
    assert 3.6 < errors[0] / errors[1] < 4.4 and 3.6 < errors[1] / errors[2] < 4.4, errors


# the snr weight is smaller than 1/(t − r) where t − r is small, so it converges more slowly: its error
# at σ = 1 is 0.110 after 2,000 steps at 1e-3, 0.074 at 3e-3, and 0.062 after 4,000 steps at 3e-3
@pytest.mark.parametrize(
    "method, weighting, lr, steps", [("ect", "gap", 1e-3, 2000), ("ect", "snr", 3e-3, 4000), ("cd", "gap", 1e-3, 2000)]
)
def test_single_gaussian_student_converges_to_exact_consistency_function(method, weighting, lr, steps):
    """Data N(μ, c²I): the PF-ODE maps x̃_σ to μ + √(c²+σ_min²)/√(c²+σ²)·(x̃ − μ) at σ_min (f* of the
    issue, whose boundary is σ = 0, differs from it by < 3·10⁻⁵ relative here). ECT's loss, started
    from the exact denoiser (f = the posterior mean, far from f* at large σ), gets there with either
    of the authors' weights; so does consistency distillation (method cd) from the exact teacher."""
    sched = SCHEDULES["cosine"]
    mu, c, dim = 0.5, 0.8, 2
    torch.manual_seed(0)
    student = ConsistencyNetwork(_Correction(sched, mu, c), sched, 0.5)
    s_min = student.sigma_min
    opt = torch.optim.Adam(student.parameters(), lr)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i / steps, 1))))
    g = torch.Generator().manual_seed(1)
    teacher = teacher_step(_Correction(sched, mu, c), sched) if method == "cd" else None

    def errors():
        out = []
        for s in (0.3, 1.0, 3.0, 10.0, 80.0):
            x = mu + math.sqrt(c * c + s * s) * torch.randn(4000, dim, generator=torch.Generator().manual_seed(5))
            with torch.no_grad():
                f = student.denoise(x, torch.full((4000,), s, dtype=torch.float64))
            exact = mu + math.sqrt(c * c + s_min**2) / math.sqrt(c * c + s * s) * (x - mu)
            out.append(float((f - exact).pow(2).mean().sqrt()) / c)
        return out

    before = errors()
    for step in range(steps):
        x0 = mu + c * torch.randn(256, dim, generator=g)
        t = sample_t(256, g, "cpu", -1.1, 2.0, 1.001 * s_min, float(sched.sigmas[-1]))
        z = torch.randn(256, dim, generator=g)
        r = ect_r(t, step // (steps // 8), s_min)
        loss = ect_loss(student.denoise, x0, None, t, r, z, ode_step=teacher, weighting=weighting, sigma_data=c)
        loss = loss.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    after = errors()
    assert before[-1] > 0.9  # the posterior mean at σ = 80 is nearly μ: far from f*
    assert max(after) < 0.08, after
    assert all(a < b / 5 for a, b in zip(after[1:], before[1:])), (before, after)


def test_consistency_sampler_is_registered_and_one_step_is_f_at_sigma_max():
    sched = SCHEDULES["cosine"]
    assert "consistency" in SAMPLERS
    torch.manual_seed(0)
    student = ConsistencyNetwork(eps_network(build_model(MLPConfig(dim=2)), "eps", sched), sched, 0.5).eval()
    x_T = torch.randn(8, 2)
    with torch.no_grad():
        out = run_sampler("consistency", lambda x, t: student(x, t), x_T, sched, sigmas=[80.0])
        want = student.denoise(x_T * math.sqrt(1 + 80.0**2), torch.full((8,), 80.0, dtype=torch.float64))
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    two = run_sampler("consistency", lambda x, t: student(x, t), x_T, sched, steps=2)
    assert two.shape == x_T.shape and torch.isfinite(two).all()
    with pytest.raises(ValueError, match="1 or 2"):
        consistency_grid(3)


def test_default_stage_length_is_a_quarter_of_the_steps_up_to_500():
    assert [default_double_every(n) for n in (3, 400, 2000, 4000, 6000)] == [1, 100, 500, 500, 500]
    assert default_double_every(None) == 250  # a budget in minutes


def test_student_config_round_trips_and_teacher_config_is_unchanged():
    config = _student_config()
    assert RunConfig.from_dict(config.to_dict()) == config
    plain = RunConfig(model=MLPConfig(dim=2))
    assert "distill" not in plain.to_dict() and "consistency_sigma_data" not in plain.to_dict()["diffusion"]
    assert isinstance(config.diffusion.eps_network(build_model(config.model)), ConsistencyNetwork)
    x0_student = _student_config(prediction="x0")
    net = x0_student.diffusion.eps_network(build_model(x0_student.model))
    assert x0_student.diffusion.eps_network(net) is net  # wrapping twice changes nothing


def test_student_sampling_options_use_the_recorded_grid():
    config = _student_config()
    config = config.replace(distill=dataclasses.replace(config.distill, sigma_mid=1.5))
    assert student_options(config, "consistency", {}) == {"sigmas": [80.0], "gamma": 1.0}
    assert student_options(config, "consistency", {"steps": 2}) == {"sigmas": [80.0, 1.5], "gamma": 1.0}
    assert student_options(config, "ddim", {"steps": 2}) == {"steps": 2}
    config = config.replace(distill=dataclasses.replace(config.distill, gamma=0.0))
    assert student_options(config, "consistency", {"steps": 2}) == {"sigmas": [80.0, 1.5], "gamma": 0.0}
    assert student_options(config, "consistency", {"steps": 2, "gamma": 1.0})["gamma"] == 1.0  # given wins


def test_objective_loss_is_finite_and_stage_follows_the_step():
    config = _student_config()
    obj = ECTObjective(config)
    torch.manual_seed(0)
    net = build_model(config.model)
    g = torch.Generator().manual_seed(0)
    loss = obj.loss(net, torch.randn(32, 2), None, g)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    obj.bind(lambda: 3 * config.distill.double_every + 1)
    assert obj.stage == 3


def test_sample_t_without_uniform_share_draws_ects_log_normal_bit_for_bit():
    lo, hi = 1.001 * 0.002, 80.0
    g = torch.Generator().manual_seed(0)
    ects = (torch.randn(4096, generator=g, dtype=torch.float64) * 2.0 - 1.1).exp().clamp(lo, hi)
    for kwargs in ({}, {"uniform": 0.0}):
        assert torch.equal(sample_t(4096, torch.Generator().manual_seed(0), "cpu", -1.1, 2.0, lo, hi, **kwargs), ects)


def test_sample_t_mixes_a_log_uniform_share_within_the_clamp():
    lo, hi, n = 1.001 * 0.002, 80.0, 200_000
    t = sample_t(n, torch.Generator().manual_seed(1), "cpu", -1.1, 2.0, lo, hi, uniform=0.5)
    assert t.min() >= lo and t.max() <= hi
    normal_tail = 0.5 * math.erfc((math.log(20.0) + 1.1) / 2.0 / math.sqrt(2.0))  # P(t > 20), log-normal
    uniform_tail = math.log(hi / 20.0) / math.log(hi / lo)  # P(t > 20), log-uniform on [lo, hi]
    share = (t > 20.0).double().mean().item()
    assert share == pytest.approx(0.5 * normal_tail + 0.5 * uniform_tail, abs=0.003)  # 5 standard errors
    all_uniform = sample_t(n, torch.Generator().manual_seed(2), "cpu", -1.1, 2.0, lo, hi, uniform=1.0)
    assert (all_uniform > 20.0).double().mean().item() == pytest.approx(uniform_tail, abs=0.004)


def test_t_max_caps_the_objectives_noise_levels_and_bad_values_are_refused():
    config = _student_config()
    top = ECTObjective(config).sigma_hi
    capped = config.replace(distill=dataclasses.replace(config.distill, t_max=5.0, t_uniform=0.5))
    obj = ECTObjective(capped)
    assert top > 80.0 and obj.sigma_hi == 5.0
    big = ECTObjective(config.replace(distill=dataclasses.replace(config.distill, t_max=1e9)))
    assert big.sigma_hi == top  # above the schedule's largest σ the schedule's bound stays
    with pytest.raises(ValueError, match="t_max must be above the schedule's smallest tuning σ"):
        ECTObjective(config.replace(distill=dataclasses.replace(config.distill, t_max=1e-4)))
    for bad in ({"t_max": 0.0}, {"t_max": -1.0}, {"t_uniform": 1.5}, {"t_uniform": -0.1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(config.distill, **bad)


def test_consistency_gamma_one_is_fresh_noise_and_zero_is_ddim_on_the_same_grid():
    """CTM's γ-sampling: γ = 1 is Algorithm 1 (fresh noise, the default, bit for bit), γ = 0 is DDIM
    η = 0 on the same σ-grid (clipping included), and γ in between mixes the two noises with
    variance kept: √(1−γ²)·ε̂ + γ·z."""
    sched = SCHEDULES["cosine"]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()
    model_fn = lambda x, t: net(x) + 0.01 * t.to(x.dtype)[:, None]  # noqa: E731
    x_T = torch.randn(64, 2, dtype=torch.float64)
    grid = {"sigmas": [80.0, 3.0, 0.5], "clip_x0": (-1.0, 1.0)}

    def draw(name, **kw):
        return run_sampler(name, model_fn, x_T, sched, generator=torch.Generator().manual_seed(5), **grid, **kw)

    assert torch.equal(draw("consistency"), draw("consistency", gamma=1.0))
    torch.testing.assert_close(draw("consistency", gamma=0.0), draw("ddim"), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(draw("consistency", gamma=0.5), draw("consistency", gamma=0.0))
    # γ = 0.6: the step mixes ε̂ and z as 0.8·ε̂ + 0.6·z, z the generator's first draw
    one = {"sigmas": [80.0, 3.0]}
    out = run_sampler("consistency", model_fn, x_T, sched, generator=torch.Generator().manual_seed(5), gamma=0.6, **one)
    first = run_sampler("consistency", model_fn, x_T, sched, sigmas=[80.0])
    eps_hat = (x_T / math.sqrt(sched_ab(80.0)) - first) / 80.0
    z = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(5), dtype=x_T.dtype)
    x_mid = first + 3.0 * (0.8 * eps_hat + 0.6 * z)
    expect = run_sampler("consistency", model_fn, x_mid * math.sqrt(sched_ab(3.0)), sched, sigmas=[3.0])
    torch.testing.assert_close(out, expect, rtol=1e-9, atol=1e-9)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="gamma"):
            draw("consistency", gamma=bad)


def sched_ab(sigma: float) -> float:
    """ᾱ of the noise level σ (σ² = (1 − ᾱ)/ᾱ)."""
    return 1.0 / (1.0 + sigma * sigma)


def test_teacher_note_names_an_unpreconditioned_eps_teacher_only():
    assert "predicts ε without EDM's preconditioning" in teacher_note(_student_config(), "runs/t")
    for diffusion in ({"preconditioning": "edm"}, {"prediction": "x0"}, {"prediction": "v"}):
        assert teacher_note(_student_config(**diffusion), "runs/t") is None, diffusion
