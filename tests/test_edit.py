"""Editing and restoration on the exact oracle: a Gaussian mixture's exact ε, and its exact posterior
under a linear observation (:meth:`GaussianMixture.posterior`), scored by the closed-form energy
distance. The measured numbers (and more settings) are in docs/editing.md (benchmarks/editing.py --oracle)."""

import math

import pytest
import torch

import ddkit
from ddkit import edit
from ddkit.checks import ParameterError
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.oracle import GaussianMixture
from ddkit.rng import SampleGenerators
from ddkit.samplers import SAMPLERS, run_sampler

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: small tensors run faster on one thread

S = ddkit.Schedule.linear()
C = 0.884  # the known coordinate: between the modes at 45° and 315° (and near the one at 0°)


@pytest.fixture(scope="module")
def broad():
    """default_2d's eight modes with std 0.3: neighbouring modes overlap a little, as image classes do."""
    g = GaussianMixture.default_2d()
    return GaussianMixture(g.means, torch.full((8,), 0.3, dtype=torch.float64), g.weights)


@pytest.fixture(scope="module")
def image_oracle():
    """A mixture over 3×4×4 'images' (D = 48): its exact ε stands in for a trained network."""
    g = torch.Generator().manual_seed(0)
    means = torch.rand(4, 48, generator=g, dtype=torch.float64) * 1.6 - 0.8
    return GaussianMixture(means, torch.full((4,), 0.2, dtype=torch.float64), torch.ones(4))


def _posterior_1d(gmm):
    """x₂ given x₁ = C."""
    return gmm.posterior(torch.tensor([[1.0, 0.0]]), torch.tensor([C]))


# ---- the exact posterior ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "A", [[[1.0, 0.0]], [[0.6, 0.8]], [[0.5, 0.5, 0.0], [0.0, 1.0, -1.0]], [[1.0, 2.0, 0.5]]], ids=str
)
def test_posterior_is_bayes_along_the_null_space(A):
    """The posterior density along x = A⁺y + V_n z equals the prior density there, normalised (a
    grid Bayes computation), for a mask row and general linear maps in 2-D and 3-D."""
    A = torch.tensor(A, dtype=torch.float64)
    d = A.shape[1]
    g = GaussianMixture.default_2d()
    gmm = g if d == 2 else GaussianMixture(torch.cat([g.means, 0.3 * g.means[:, :1]], 1), g.stds * 3, g.weights)
    x_true, _ = gmm.sample(1, torch.Generator().manual_seed(1))
    post = gmm.posterior(A, (A @ x_true[0]))
    assert torch.allclose(A @ post.particular, A @ x_true[0], atol=1e-12)
    k = post.basis.shape[1]
    axes = [torch.linspace(-4, 4, 801 if k == 1 else 161, dtype=torch.float64)] * k
    z = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, k)
    x = post.particular + z @ post.basis.T
    log_joint = gmm.log_prob(x)
    cell = math.prod(float(a[1] - a[0]) for a in axes)
    bayes = log_joint - torch.logsumexp(log_joint, 0) - math.log(cell)
    near = bayes > bayes.max() - 10  # where the density is not negligible
    torch.testing.assert_close(post.mixture.log_prob(z)[near], bayes[near], atol=2e-3, rtol=0)
    torch.testing.assert_close(post.coordinates(x), z)


def test_posterior_refuses_y_outside_the_range():
    gmm = GaussianMixture.default_2d()
    with pytest.raises(ValueError, match="not in the range"):
        gmm.posterior(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="point mass"):
        gmm.posterior(torch.eye(2), torch.tensor([1.0, 1.0]))


# ---- inpainting ---------------------------------------------------------------------------------
def test_repaint_reaches_the_exact_conditional_law_and_replace_is_biased(broad, capsys):
    """x₁ = 0.884 known, x₂ filled, 2000 samples: RePaint (100 steps, jump 10, resample 10) lands
    within the noise level of the exact posterior; replacement alone is off by ~40 noise levels.
    Noise level: the spread (sd) of the energy distance of 2000 exact posterior draws."""
    post = _posterior_1d(broad)
    fn = broad.eps_fn(S.alpha_bars)
    n = 2000
    x = torch.zeros(n, 2, dtype=torch.float64)
    x[:, 0] = C
    mask = torch.tensor([[True, False]])
    exact = torch.tensor(
        [
            energy_distance_to_mixture(post.mixture.sample(n, torch.Generator().manual_seed(50 + i))[0], post.mixture)
            for i in range(12)
        ]
    )
    noise = exact.std().item()
    ed = {}
    for method, kw in (("replace", {"steps": 100}), ("repaint", {"steps": 100, "jump_length": 10, "resample": 10})):
        out = edit.inpaint(fn, x, mask, S, method=method, generator=torch.Generator().manual_seed(0), **kw)
        assert torch.equal(out[:, 0], x[:, 0])
        ed[method] = energy_distance_to_mixture(post.coordinates(out), post.mixture)
    with capsys.disabled():
        print(f"\n  inpainting ED to the exact posterior: {ed} (noise level sd {noise:.1e})")
    assert abs(ed["repaint"]) < 3 * noise + 1e-4, (ed, noise)
    assert ed["replace"] > 15 * noise, (ed, noise)


@pytest.mark.parametrize("method", edit.INPAINT_METHODS)
def test_known_values_of_the_output_are_the_input_exactly(image_oracle, method):
    x, _ = image_oracle.sample(6, torch.Generator().manual_seed(2))
    x = x.reshape(6, 3, 4, 4).float()
    mask = edit.mask_preset("random:0.5", 6, 4, 4, generator=torch.Generator().manual_seed(3))
    kw = {"jump_length": 2, "resample": 2} if method == "repaint" else {}
    out = edit.inpaint(image_oracle.eps_fn(S.alpha_bars), x, mask, S, method=method, steps=8, clip_x0=(-1, 1), **kw)
    known = mask.expand_as(x)
    assert out.dtype == x.dtype and torch.equal(out[known], x[known]) and not torch.equal(out, x)


def test_inpaint_noise_is_per_sample(image_oracle):
    """Per-sample generators: a sample's completion does not depend on the others in its batch."""
    x, _ = image_oracle.sample(4, torch.Generator().manual_seed(2))
    x = x.reshape(4, 3, 4, 4).float()
    mask = edit.mask_preset("lower-half", 4, 4, 4)
    fn = image_oracle.eps_fn(S.alpha_bars)
    kw = dict(method="repaint", steps=6, jump_length=2, resample=2)
    whole = edit.inpaint(fn, x, mask, S, generator=SampleGenerators(7, range(4)), **kw)
    part = edit.inpaint(fn, x[2:], mask[2:], S, generator=SampleGenerators(7, range(2, 4)), **kw)
    torch.testing.assert_close(whole[2:], part)


def test_repaint_walk_is_repaints_schedule():
    assert edit.repaint_walk(3, 1, 2) == [0, 1, 0, 1, 2, 1, 2, 3]
    assert edit.repaint_walk(5, 2, 1) == [0, 1, 2, 3, 4, 5]
    walk = edit.repaint_walk(250, 10, 10)
    down = sum(b == a + 1 for a, b in zip(walk, walk[1:]))
    up = [a - b for a, b in zip(walk, walk[1:]) if b < a]
    assert down == 250 + 9 * 10 * 24 and set(up) == {1} and len(up) == 9 * 10 * 24
    assert walk[0] == 0 and walk[-1] == 250 and min(walk) == 0


def test_inpaint_options_belong_to_their_method(broad):
    fn, x = broad.eps_fn(S.alpha_bars), torch.zeros(2, 2)
    m = torch.tensor([[True, False]])
    with pytest.raises(ParameterError, match="apply to method repaint"):
        edit.inpaint(fn, x, m, S, method="replace", resample=3)
    with pytest.raises(ValueError, match="method must be one of repaint, replace"):
        edit.inpaint(fn, x, m, S, method="paint")
    for bad, needle in ((torch.ones(1, 2), "all ones"), (torch.zeros(1, 2), "all zeros"), (torch.ones(3), "fit")):
        with pytest.raises(ParameterError, match=needle):
            edit.inpaint(fn, x, bad, S, method="replace")


# ---- restoration --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: edit.Mask(edit.mask_preset("center", 1, 4, 4)),
        lambda: edit.Downsample(2),
        lambda: edit.Grayscale(),
        lambda: edit.Blur(0.5),
        lambda: edit.Blur(torch.tensor([[0.0, 0.1, 0.0], [0.1, 0.6, 0.1], [0.0, 0.1, 0.0]])),
        lambda: edit.Linear(torch.randn(20, 48, generator=torch.Generator().manual_seed(0)), (3, 4, 4)),
    ],
    ids=["mask", "downsample", "grayscale", "blur", "blur2d", "linear"],
)
def test_ddnm_outputs_satisfy_the_measurement(image_oracle, make):
    op = make()
    x, _ = image_oracle.sample(5, torch.Generator().manual_seed(4))
    x = x.reshape(5, 3, 4, 4).float()
    y = op.A(x)
    out = edit.restore(
        image_oracle.eps_fn(S.alpha_bars), y, op, S, steps=20, generator=torch.Generator().manual_seed(5)
    )
    assert out.shape == x.shape and (op.A(out) - y).abs().max().item() < 1e-5
    if not isinstance(op, edit.Blur):  # (these blurs are invertible on 4×4: the output is the input)
        assert (out - x).abs().max() > 1e-3  # the null space comes from the model


def test_dps_moves_toward_the_exact_posterior(broad, capsys):
    """DPS is approximate (its Tweedie likelihood): reported, with its scale, and closer to the
    posterior than the prior's unconditional samples."""
    post = _posterior_1d(broad)
    fn = broad.eps_fn(S.alpha_bars)
    op = edit.Linear(torch.tensor([[1.0, 0.0]]))
    y = torch.full((1000, 1), C, dtype=torch.float64)
    out = edit.restore(fn, y, op, S, method="dps", steps=100, scale=0.1, generator=torch.Generator().manual_seed(0))
    ed = energy_distance_to_mixture(post.coordinates(out), post.mixture)
    prior = energy_distance_to_mixture(broad.sample(1000, torch.Generator().manual_seed(1))[0][:, 1:], post.mixture)
    with capsys.disabled():
        print(f"\n  DPS (scale 0.1, 100 steps) ED to the exact posterior {ed:.2e}; prior {prior:.2e}")
    assert ed < 0.1 * prior


def test_restore_checks_its_operator_and_options(image_oracle):
    fn = image_oracle.eps_fn(S.alpha_bars)
    y = torch.zeros(2, 3, 2, 2)

    class OnlyA:
        description = "a differentiable map without a pseudo-inverse"

        def A(self, x):
            return torch.nn.functional.avg_pool2d(x, 2) ** 3

    with pytest.raises(ParameterError, match="pseudo-inverse"):
        edit.restore(fn, y, OnlyA(), S, shape=(2, 3, 4, 4))
    with pytest.raises(ParameterError, match="applies to method dps"):
        edit.restore(fn, y, edit.Downsample(2), S, scale=1.0)
    with pytest.raises(ParameterError, match="does not divide"):
        edit.restore(fn, torch.zeros(2, 3, 4, 4), edit.Downsample(3), S, shape=(2, 3, 4, 4))
    with pytest.raises(ParameterError, match="RGB"):
        edit.restore(fn, torch.zeros(2, 1, 4, 4), edit.Grayscale(), S, shape=(2, 1, 4, 4))
    out = edit.restore(fn, y, OnlyA(), S, method="dps", steps=3, shape=(2, 3, 4, 4))  # a user's operator
    assert out.shape == (2, 3, 4, 4) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "op",
    [
        edit.Mask(torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5),
        edit.Downsample(2),
        edit.Grayscale(),
        edit.Blur(0.7),
    ],
    ids=["mask", "downsample", "grayscale", "blur"],
)
def test_operators_pseudo_inverse_properties(op):
    """A A⁺ A = A, A⁺ A A⁺ = A⁺ and A⁺A symmetric (the Moore–Penrose conditions) on random inputs."""
    g = torch.Generator().manual_seed(0)
    x, v = (torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    y = op.A(torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64))
    A, P = op.A, op.A_pinv
    torch.testing.assert_close(A(P(A(x))), A(x))
    torch.testing.assert_close(P(A(P(y))), P(y))
    torch.testing.assert_close((P(A(x)) * v).sum(), (x * P(A(v))).sum())
    assert isinstance(op.description, str) and op.description


def test_parse_operator():
    assert isinstance(edit.parse_operator("downsample:2"), edit.Downsample)
    assert isinstance(edit.parse_operator("grayscale"), edit.Grayscale)
    assert "σ = 1.5" in edit.parse_operator("blur:1.5").description
    for bad in ("downsample", "downsample:x", "blur:-1", "sharpen"):
        with pytest.raises(ParameterError):
            edit.parse_operator(bad)


# ---- SDEdit, translation, interpolation --------------------------------------------------------
def test_sdedit_strength_one_with_inversion_round_trips(broad):
    x0, _ = broad.sample(300, torch.Generator().manual_seed(3))
    rec = edit.sdedit(broad.eps_fn(S.alpha_bars), x0, S, strength=1.0, invert=True, steps=100)
    assert (rec - x0).pow(2).mean().item() < 1e-5


def test_sdedit_starts_at_strength_times_T(broad):
    seen = []
    fn = broad.eps_fn(S.alpha_bars)
    x0, _ = broad.sample(8, torch.Generator().manual_seed(3))
    g = SampleGenerators(0, range(8))
    out = edit.sdedit(fn, x0, S, strength=0.25, steps=10, generator=g, callback=lambda info: seen.append(info.t))
    assert seen[0] == 249 and len(seen) == 10 and out.shape == x0.shape
    assert edit.strength_timestep(S, 1.0) == 999 and edit.strength_timestep(S, 1e-6) == 0
    seen.clear()
    edit.sdedit(fn, x0, S, strength=0.004, sampler="ddpm", callback=lambda info: seen.append(info.t))
    assert seen == [3, 2, 1, 0]
    for bad in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"strength must be a number in \(0, 1\]"):
            edit.sdedit(fn, x0, S, strength=bad)


def _class_conditional(gmm):
    """The exact class-conditional ε of a mixture as a network ``net(x_t, t, y)``; label K = none."""
    fns = [gmm.component(k).eps_fn(S.alpha_bars) for k in range(gmm.num_components)]
    uncond = gmm.eps_fn(S.alpha_bars)

    def net(x, t, y):
        out = uncond(x, t)
        for k, fn in enumerate(fns):
            rows = (y == k).nonzero().squeeze(1)
            if rows.numel():
                out[rows] = fn(x[rows], t[rows])
        return out

    net.num_classes = gmm.num_components
    return net


def test_translate_lands_in_the_target_class(gmm):
    net = _class_conditional(gmm)
    x0, comp = gmm.sample(400, torch.Generator().manual_seed(5))
    target = (comp + 2) % 8
    out = edit.translate(net, x0, S, source=comp, target=target, guidance_scale=1.0, steps=50)
    classify = gmm.classifier_fn(S.alpha_bars)
    pred = classify(out, torch.zeros(400, dtype=torch.long)).argmax(1)
    assert (pred == target).double().mean() > 0.99
    many = edit.translate(net, x0[:3], S, target=torch.tensor([[0, 1], [2, 3], [4, 5]]), steps=20)
    assert many.shape == (3, 2, 2)
    with pytest.raises(ParameterError, match="class-conditional"):
        edit.translate(gmm.eps_fn(S.alpha_bars), x0, S, target=1)


def test_interpolate_end_frames_are_the_inputs(broad):
    x, _ = broad.sample(6, torch.Generator().manual_seed(6))
    frames = edit.interpolate(broad.eps_fn(S.alpha_bars), x[:3], x[3:], S, frames=5, steps=100)
    assert frames.shape == (3, 5, 2)
    torch.testing.assert_close(frames[:, 0], x[:3], atol=3e-3, rtol=0)
    torch.testing.assert_close(frames[:, -1], x[3:], atol=3e-3, rtol=0)


def test_guidance_composes_with_inpainting(broad):
    """Inpainting a class-conditional model with classifier-free guidance: x₁ = C, classes 1 or 7
    both fit; guiding to class 1 (the rarer) moves the completions there."""
    net = _class_conditional(broad)
    x = torch.zeros(300, 2, dtype=torch.float64)
    x[:, 0] = C
    fn = ddkit.classifier_free_guidance(net, 1, 3.0)
    out = edit.inpaint(fn, x, torch.tensor([[True, False]]), S, method="replace", steps=50)
    assert (out[:, 1] > 0).double().mean() > 0.9 and torch.equal(out[:, 0], x[:, 0])


# ---- masks and the method table -------------------------------------------------------------------
def test_mask_presets():
    lower = edit.mask_preset("lower-half", 2, 8, 8)
    assert lower.shape == (2, 1, 8, 8) and lower[:, :, :4].all() and not lower[:, :, 4:].any()
    assert edit.mask_preset("upper-half", 1, 8, 8)[0, 0, 4:].all()
    assert edit.mask_preset("left-half", 1, 8, 8)[0, 0, :, 4:].all()
    assert edit.mask_preset("right-half", 1, 8, 8)[0, 0, :, :4].all()
    center = edit.mask_preset("center", 1, 8, 8)[0, 0]
    assert (~center).sum() == 16 and not center[2:6, 2:6].any()
    rnd = edit.mask_preset("random:0.25", 6, 8, 8, generator=SampleGenerators(1, range(6)))
    assert ((~rnd).reshape(6, -1).sum(1) == 16).all()
    torch.testing.assert_close(
        rnd[3:], edit.mask_preset("random:0.25", 3, 8, 8, generator=SampleGenerators(1, range(3, 6)))
    )
    assert (~edit.mask_preset("random:0.001", 1, 8, 8)).sum() == 1
    for bad in ("random:1", "random:0", "random:x", "bottom"):
        with pytest.raises(ParameterError, match="mask_preset"):
            edit.mask_preset(bad, 1, 8, 8)


def test_the_method_table_refuses_options_a_method_does_not_take():
    for method, option in (("sdedit", "jump_length"), ("ddnm", "dps_scale"), ("repaint", "strength")):
        with pytest.raises(ParameterError, match=f"{option} does not apply to method {method}"):
            edit.check_options(method, [option])
    x = torch.zeros(2, 1, 4, 4)
    fn = lambda x, t: torch.zeros_like(x)  # noqa: E731
    with pytest.raises(ParameterError, match="second image"):
        edit.run_edit("interpolate", x, S, model_fn=fn)
    with pytest.raises(ParameterError, match="needs a mask"):
        edit.run_edit("repaint", x, S, model_fn=fn)
    with pytest.raises(ParameterError, match="class-conditional"):
        edit.run_edit("translate", x, S, model_fn_cond=lambda x, t, y=None: x, target=1)
    r = edit.run_edit("replace", x, S, model_fn=fn, mask=edit.mask_preset("center", 2, 4, 4), steps=3)
    assert r.x.shape == (2, 1, 1, 4, 4) and r.shown.shape == x.shape and r.labels is None


# ---- the samplers' x̂₀ hook ----------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_identity_denoised_fn_changes_nothing_and_a_constant_is_returned(gmm, name):
    fn = gmm.eps_fn(S.alpha_bars)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    # model evaluations: ddpm all T; heun odd (its corrector's x̂₀ is hooked too, with the next point's i)
    opts = {} if name == "ddpm" else {"steps": 9 if name == "heun" else 8}
    plain = run_sampler(name, fn, x_T, S, generator=torch.Generator().manual_seed(1), **opts)
    seen = []

    def hook(x0, info):
        seen.append((info.i, info.t))
        return x0

    hooked = run_sampler(name, fn, x_T, S, generator=torch.Generator().manual_seed(1), denoised_fn=hook, **opts)
    torch.testing.assert_close(hooked, plain, rtol=1e-9, atol=1e-9)
    steps = [i for i, _ in seen]
    if name == "heun":
        assert steps == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    else:
        assert steps == list(range(len(seen))) and len(seen) == (1000 if name == "ddpm" else 8)
    const = torch.full_like(x_T, 0.25)
    out = run_sampler(
        name, fn, x_T, S, generator=torch.Generator().manual_seed(1), denoised_fn=lambda x0, i: const, **opts
    )
    torch.testing.assert_close(out, const, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="denoised_fn must return"):
        run_sampler(name, fn, x_T, S, denoised_fn=lambda x0, i: x0[:1], **opts)
