"""UniPC (ddkit.unipc_sample): agreement with diffusers' UniPCMultistepScheduler, its special cases
(UniP-1 is DDIM, UniP-2 with B(h) = e^{-h}-1 is DPM-Solver++(2M)), convergence to the exact flow map
of a Gaussian against DPM-Solver++, the registry, the CLI options and the argument checks."""

import pytest
import torch
from diffusers import UniPCMultistepScheduler

import ddkit
from conftest import energy_distance
from ddkit.checks import ParameterError
from ddkit.oracle import GaussianMixture
from ddkit.samplers import get_sampler, run_sampler
from ddkit.tasks.sampling import SamplingOptions, sampler_options
from ddkit.timesteps import ALL_SPACINGS, sampling_grid

pytestmark = pytest.mark.usefixtures("one_thread")

S = ddkit.Schedule.linear()
GMM = GaussianMixture.default_2d()
MU, SD = torch.tensor([[0.7, -1.2]], dtype=torch.float64), 0.3  # the Gaussian data N(μ, s²I)
GAUSS = GaussianMixture(MU, torch.tensor([SD]), torch.ones(1))


def dpm_solver_timesteps(schedule, steps, spacing):
    """The multistep solvers' evaluation points."""
    return list(sampling_grid(schedule, steps, spacing, solver=True).t)


def _x_T(n=512, seed=0, dim=2):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _diffusers_unipc(fn, x, steps, order, variant, spacing, corrector=True):
    """diffusers' sample and timesteps. Returned is the last data prediction x̂₀ it computed, which
    is what its last step to σ = 0 returns: with "bh1" diffusers' own last step gives NaN (it
    multiplies B(h) = -∞ by a zero correction), with "bh2" the step's output (checked)."""
    sched = UniPCMultistepScheduler(
        trained_betas=S.betas.float().numpy(),
        solver_order=order,
        solver_type=variant,
        prediction_type="epsilon",
        predict_x0=True,
        lower_order_final=True,
        timestep_spacing=spacing,
        disable_corrector=[] if corrector else list(range(steps)),
    )
    sched.set_timesteps(steps)
    for t in sched.timesteps:
        x = sched.step(fn(x, torch.full((x.shape[0],), int(t))), t, x).prev_sample
    x0 = sched.model_outputs[-1]
    if variant == "bh2":
        torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)
    return x0, sched.timesteps.tolist()


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [5, 10, 20])
@pytest.mark.parametrize("ours, theirs", [("linspace", "linspace"), ("leading", "leading"), ("trailing", "trailing")])
def test_matches_diffusers_unipc_multistep(variant, order, steps, ours, theirs):
    """Same timesteps as diffusers' spacings, same samples to float32 precision (diffusers computes
    the coefficients in float32, ddkit in float64): the largest difference measured over these 54
    cases is 2.0e-5 (bh2, order 2, 20 leading steps)."""
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T()
    ref, ref_timesteps = _diffusers_unipc(fn, x_T, steps, order, variant, theirs)
    assert dpm_solver_timesteps(S, steps, ours) == ref_timesteps
    out = ddkit.unipc_sample(fn, x_T, S, steps=steps, order=order, spacing=ours, variant=variant)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_predictor_alone_matches_diffusers_with_the_corrector_disabled(order):
    """``corrector=False`` is diffusers' ``disable_corrector`` at every step (measured ≤ 2.5e-6)."""
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T()
    ref, _ = _diffusers_unipc(fn, x_T, 10, order, "bh2", "linspace", corrector=False)
    out = ddkit.unipc_sample(fn, x_T, S, steps=10, order=order, spacing="linspace", corrector=False)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("spacing", ["trailing", "leading", "logsnr"])
def test_order_one_predictor_is_ddim_and_the_corrector_changes_it(spacing):
    """UniP-1 is DDIM η = 0 (measured ≤ 2.2e-6 in float32); UniC-1 corrects it (by 0.20–0.52 here),
    so order 1 with the corrector, the default, is not DDIM."""
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T()
    ddim = ddkit.ddim_sample(fn, x_T, S, timesteps=dpm_solver_timesteps(S, 10, spacing))
    alone = ddkit.unipc_sample(fn, x_T, S, steps=10, order=1, spacing=spacing, corrector=False)
    torch.testing.assert_close(alone, ddim, rtol=0, atol=1e-5)
    corrected = ddkit.unipc_sample(fn, x_T, S, steps=10, order=1, spacing=spacing)
    assert (corrected - ddim).abs().max().item() > 0.1


def test_second_order_bh2_predictor_is_dpm_solver_pp_2m():
    """ρ = ½ and B(h) = e^{-h} - 1 turn UniP-2 into DPM-Solver++'s Algorithm 2 (same timesteps and
    lower-order rule at order 2)."""
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T()
    for spacing, steps in (("leading", 10), ("logsnr", 20)):
        ours = ddkit.unipc_sample(fn, x_T, S, steps=steps, order=2, spacing=spacing, corrector=False)
        dpm = ddkit.dpm_solver_sample(fn, x_T, S, steps=steps, order=2, spacing=spacing)
        torch.testing.assert_close(ours, dpm, rtol=0, atol=1e-5)


def _gaussian_flow(x_T, t_end=None):
    """Data N(μ, s²I): ε* is linear in x_t and the probability-flow ODE from t = T-1 keeps
    u = (x_t - α_t·μ)/√(α_t²s² + σ_t²) fixed. ``t_end`` None: the exact map to the data, μ + s·u.
    Else the exact ODE to t_end followed by the samplers' shared last step to σ = 0, which returns
    x̂₀ there: μ + α·s²·u/√(α²s² + σ²). The difference between the two is the last step's own
    error, the same for every solver on a grid (≈ σ²/(2α²s²)·s|u|: 1.5e-3 from t = 1)."""
    ab = S.alpha_bar(999)
    u = (x_T - ab**0.5 * MU) / (ab * SD**2 + 1 - ab) ** 0.5
    if t_end is None:
        return MU + SD * u
    a = S.alpha_bar(t_end)
    return MU + a**0.5 * SD**2 * u / (a * SD**2 + 1 - a) ** 0.5


def _solver_error(sample, steps, spacing, **options):
    """Max error against the exact ODE up to the last evaluation point (then the shared last step)."""
    x_T = _x_T(4000, seed=3).double()
    out = sample(GAUSS.eps_fn(S.alpha_bars), x_T, S, steps=steps, spacing=spacing, **options)
    return (out - _gaussian_flow(x_T, dpm_solver_timesteps(S, steps, spacing)[-1])).abs().max().item()


@pytest.mark.parametrize("order, variant", [(2, "bh1"), (2, "bh2"), (3, "bh1"), (3, "bh2")])
def test_single_gaussian_converges_faster_than_dpm_solver_pp(order, variant):
    """logSNR steps; max error against the exact ODE up to the last evaluation point. Measured
    (steps 5 / 10 / 20 / 40 / 80):

        DDIM            0.45   0.26   0.14   0.072   0.036
        DPM-Solver++ 2  0.24   0.016  0.016  0.0042  0.00097
        DPM-Solver++ 3  0.21   0.15   0.0095 0.0018  0.00040
        UniPC 2 bh1     0.070  0.22   0.025  0.0028  0.00037
        UniPC 2 bh2     0.20   0.051  0.011  0.0014  0.00020
        UniPC 3 bh1     0.069  0.19   0.0022 2.0e-5  5.9e-5
        UniPC 3 bh2     0.19   0.15   0.0015 9.7e-7  3.9e-5

    (order 3 at 80 steps is held up by the integer rounding of the λ grid near t = 0). Against the
    exact flow map itself every solver here ends within the last step's 1.5e-3 by 40–80 steps."""
    unipc = dict(order=order, variant=variant)
    e20, e40, e80 = (_solver_error(ddkit.unipc_sample, n, "logsnr", **unipc) for n in (20, 40, 80))
    assert e40 < e20 / 4 and e80 < 5e-4, (e20, e40, e80)
    dpm40, dpm80 = (_solver_error(ddkit.dpm_solver_sample, n, "logsnr", order=order) for n in (40, 80))
    assert e80 < dpm80 / 2, (e80, dpm80)
    if variant == "bh2":
        assert e40 < dpm40 / 2, (e40, dpm40)
    x_T = _x_T(4000, seed=3).double()
    x = ddkit.unipc_sample(GAUSS.eps_fn(S.alpha_bars), x_T, S, steps=80, spacing="logsnr", **unipc)
    assert (x - _gaussian_flow(x_T)).abs().max().item() < 2e-3


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_ten_leading_steps_at_least_as_accurate_as_dpm_solver_pp(order, variant):
    """At 10 steps with the default leading spacing (max error as above; measured DPM-Solver++
    0.021 / 0.017 at orders 2 / 3, UniPC bh1 0.0029 / 0.0031, bh2 0.016 / 0.015). Not so with
    logSNR steps at 10 (see the table above: there DPM-Solver++ 2 is the best of these, 0.016 against
    UniPC 2 bh2's 0.051, and at order 3 bh2 ties, 0.15). The final sample's error against the exact
    flow map is dominated at 10 leading steps by the shared last step from t = 90 (0.38–0.40 all)."""
    ours = _solver_error(ddkit.unipc_sample, 10, "leading", order=order, variant=variant)
    dpm = _solver_error(ddkit.dpm_solver_sample, 10, "leading", order=order)
    assert ours < 0.95 * dpm, (ours, dpm)


def test_beats_dpm_solver_pp_on_the_gmm_at_10_steps():
    """Energy distance to true samples at 10 model evaluations, logSNR steps (as the DPM-Solver++
    test; floor 0.0018 between two true sample sets). Measured: DPM-Solver++ 0.0026 / 0.0022 at
    orders 2 / 3, UniPC bh2 0.0012 / 0.0015."""
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T(4000)
    data = GMM.sample(4000, torch.Generator().manual_seed(1))[0].float()
    for order in (2, 3):
        dpm = energy_distance(ddkit.dpm_solver_sample(fn, x_T, S, steps=10, order=order, spacing="logsnr"), data)
        ours = energy_distance(ddkit.unipc_sample(fn, x_T, S, steps=10, order=order, spacing="logsnr"), data)
        assert ours < 0.8 * dpm, (order, ours, dpm)


def test_every_spacing_and_explicit_timesteps():
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T(64)
    for spacing in ALL_SPACINGS:
        seq = dpm_solver_timesteps(S, 8, spacing)
        out = ddkit.unipc_sample(fn, x_T, S, steps=8, order=3, spacing=spacing)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(ddkit.unipc_sample(fn, x_T, S, order=3, timesteps=seq), out, rtol=0, atol=0)
    small = ddkit.Schedule.linear(20, 1e-3, 0.2)  # every timestep, T = 20
    assert torch.isfinite(ddkit.unipc_sample(GMM.eps_fn(small.alpha_bars), x_T, small, steps=20, order=3)).all()
    clipped = ddkit.unipc_sample(fn, 3 * x_T, S, steps=5, clip_x0=(-0.5, 0.5))
    assert clipped.abs().max().item() <= 0.5 + 1e-6


def test_registered_with_options_and_through_guidance():
    spec = get_sampler("unipc")
    assert spec.fn is ddkit.unipc_sample and set(spec.options) == {"steps", "order", "spacing"}
    assert "unipc_sample" in ddkit.__all__
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T(8)
    out = run_sampler("unipc", fn, x_T, S, steps=6, order=3, spacing="trailing")
    torch.testing.assert_close(out, ddkit.unipc_sample(fn, x_T, S, steps=6, order=3, spacing="trailing"))
    with pytest.raises(ValueError, match="does not take eta"):
        run_sampler("unipc", fn, x_T, S, eta=0.5)

    def cond(x, t, y):  # a conditional ε: the mixture's, shifted by 0.1·y
        return fn(x, t) + 0.1 * y[:, None].to(x.dtype)

    # guidance is a model_fn wrapper: w = 3 with the null label 0 gives ε + 0.1·(0 + 3·(1 - 0))
    guided = ddkit.classifier_free_guidance(cond, torch.ones(8, dtype=torch.long), 3.0, null_label=0)
    torch.testing.assert_close(
        run_sampler("unipc", guided, x_T, S, steps=6), ddkit.unipc_sample(lambda x, t: fn(x, t) + 0.3, x_T, S, steps=6)
    )


def test_sampling_options():
    options = SamplingOptions(sampler="unipc", order=3, steps=8, spacing="logsnr")
    assert sampler_options(options, S) == {"steps": 8, "order": 3, "spacing": "logsnr"}
    with pytest.raises(ParameterError, match="sampler unipc does not take eta") as caught:
        sampler_options(SamplingOptions(sampler="unipc", eta=0.5), S)
    assert caught.value.render(lambda name: "--" + name) == "--sampler unipc does not take --eta"


def test_bad_arguments_name_the_allowed_values():
    fn, x_T = GMM.eps_fn(S.alpha_bars), _x_T(8)
    for order in (0, 4, True):
        with pytest.raises(ValueError, match="order must be one of 1, 2, 3"):
            ddkit.unipc_sample(fn, x_T, S, order=order)
    with pytest.raises(ValueError, match="variant must be one of bh1, bh2, got 'bh3'"):
        ddkit.unipc_sample(fn, x_T, S, variant="bh3")
    allowed = "leading, quadratic, trailing, linspace, logsnr"
    with pytest.raises(ValueError, match=f"unknown spacing 'cosine'; allowed: {allowed}"):
        ddkit.unipc_sample(fn, x_T, S, spacing="cosine")
    with pytest.raises(ValueError, match="steps must be an integer in"):
        ddkit.unipc_sample(fn, x_T, S, steps=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddkit.unipc_sample(fn, x_T, S, timesteps=[10, 500])
    with pytest.raises(ValueError, match="finite"):
        ddkit.samplers.unipc_corrector_step(x_T, [x_T], [0.0], x_T, 1.0, 1.0, 0.0, float("inf"))
