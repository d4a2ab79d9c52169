import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ddkit
from ddkit.parameterization import clip_eps

S = ddkit.Schedule.linear()


@settings(max_examples=100)
@given(t=st.integers(0, 999), seed=st.integers(0, 2**31 - 1))
def test_round_trips(t, seed):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 4, generator=g, dtype=torch.float64)
    tt = torch.full((3,), t)
    xt = ddkit.q_sample(S, x0, tt, eps)
    ab_t = S.gather(S.alpha_bars, tt, xt)  # tensor [N, 1]
    ab_f = S.alpha_bar(t)  # python float
    for ab in (ab_t, ab_f):
        torch.testing.assert_close(ddkit.x0_from_eps(xt, eps, ab), x0, atol=1e-6 / max(ab_f, 1e-3) ** 0.5, rtol=1e-6)
        torch.testing.assert_close(ddkit.eps_from_x0(xt, x0, ab), eps, atol=1e-8, rtol=1e-6)
        v = ddkit.v_from_eps(xt, eps, ab)
        torch.testing.assert_close(v, ddkit.v_from_x0_eps(x0, eps, ab), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ddkit.eps_from_v(xt, v, ab), eps, atol=1e-8, rtol=1e-6)
        torch.testing.assert_close(ddkit.x0_from_v(xt, v, ab), x0, atol=1e-8, rtol=1e-6)


def test_v_is_rotation_of_x0_and_eps():
    # ‖v‖² + ‖x_t‖² = ‖x0‖² + ‖ε‖² because (x_t, v) is a rotation of (x0, ε).
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1000, generator=g, dtype=torch.float64), torch.randn(1000, generator=g, dtype=torch.float64)
    ab = 0.3
    xt = ab**0.5 * x0 + (1 - ab) ** 0.5 * eps
    v = ddkit.v_from_x0_eps(x0, eps, ab)
    assert (v.square().sum() + xt.square().sum()).item() == pytest.approx(
        (x0.square().sum() + eps.square().sum()).item()
    )


def test_clip_rederives_eps_consistently():
    xt = torch.tensor([[3.0, 0.1]], dtype=torch.float64)
    eps = torch.tensor([[-2.0, 0.0]], dtype=torch.float64)
    x0, eps2 = clip_eps(xt, eps, 0.5, (-1.0, 1.0))
    assert x0.abs().max().item() <= 1.0
    torch.testing.assert_close(ddkit.x0_from_eps(xt, eps2, 0.5), x0)
    assert eps2[0, 1].item() == pytest.approx(0.0, abs=1e-12)  # unclipped entry unchanged
    x0_raw, eps_raw = clip_eps(xt, eps, 0.5, None)
    assert eps_raw is eps and x0_raw[0, 0].item() > 1.0


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_model_fn_from_converts_to_eps(prediction):
    g = torch.Generator().manual_seed(5)
    x0, eps = torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(4, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([3, 100, 600, 990])
    xt = ddkit.q_sample(S, x0, t, eps)
    ab = S.gather(S.alpha_bars, t, xt)
    target = {"eps": eps, "x0": x0, "v": ddkit.v_from_x0_eps(x0, eps, ab)}[prediction]
    net = lambda x, tt, y=None: target + (0 if y is None else y)  # noqa: E731
    fn = ddkit.model_fn_from(net, prediction, schedule=S)
    torch.testing.assert_close(fn(xt, t), eps, atol=1e-7, rtol=1e-6)
    bound = ddkit.model_fn_from(net, "eps", y=1.0)
    torch.testing.assert_close(bound(xt, t), target + 1.0)


def test_model_fn_from_errors():
    with pytest.raises(ValueError, match="eps, x0, v"):
        ddkit.model_fn_from(lambda x, t: x, "score")
    with pytest.raises(ValueError, match="needs the schedule"):
        ddkit.model_fn_from(lambda x, t: x, "v")
