"""The energy distance: V- and U-statistics, and the exact-law score against a Gaussian mixture
(closed forms checked by numerical integration)."""

import math

import pytest
import torch
from scipy import integrate

from ddkit.eval.energy import energy_distance, energy_distance_to_mixture
from ddkit.oracle import GaussianMixture


def _quad_mean_norm_2d(m: tuple[float, float], s: float) -> float:
    """E|Z|, Z ~ N(m, s² I₂), by 2-D quadrature in polar coordinates around the origin."""

    def f(r, th):
        d2 = (r * math.cos(th) - m[0]) ** 2 + (r * math.sin(th) - m[1]) ** 2
        return r * r * math.exp(-d2 / (2 * s * s)) / (2 * math.pi * s * s)

    return integrate.dblquad(f, 0, 2 * math.pi, 0, math.hypot(*m) + 12 * s, epsabs=1e-13, epsrel=1e-12)[0]


def test_mean_distance_2d_matches_quadrature():
    gmm = GaussianMixture(torch.tensor([[0.0, 0.0], [1.0, -0.5]]), torch.tensor([0.1, 0.4]), torch.tensor([1.0, 3.0]))
    x = torch.tensor([[0.0, 0.0], [1.25, 0.3], [0.02, -0.03], [-2.0, 1.0]])
    got = gmm.mean_distance(x)
    for i, xi in enumerate(x.tolist()):
        want = sum(
            w * _quad_mean_norm_2d((xi[0] - mu[0], xi[1] - mu[1]), s)
            for w, mu, s in zip([0.25, 0.75], gmm.means.tolist(), gmm.stds.tolist())
        )
        assert got[i].item() == pytest.approx(want, rel=1e-10)


def test_mean_distance_1d_matches_quadrature():
    gmm = GaussianMixture(torch.tensor([[0.0], [2.0]]), torch.tensor([0.5, 1.0]), torch.tensor([1.0, 3.0]))
    x = torch.tensor([[0.0], [1.0], [-3.0]])
    for i, xi in enumerate(x[:, 0].tolist()):
        want = sum(
            w
            * integrate.quad(
                lambda z: abs(xi - z) * math.exp(-((z - mu) ** 2) / (2 * s * s)) / math.sqrt(2 * math.pi * s * s),
                mu - 14 * s,
                mu + 14 * s,
                points=[xi],
                epsabs=1e-13,
            )[0]
            for w, mu, s in ((0.25, 0.0, 0.5), (0.75, 2.0, 1.0))
        )
        assert gmm.mean_distance(x)[i].item() == pytest.approx(want, rel=1e-9)


def test_self_distance_closed_forms():
    # one 2-D component: Y - Y' ~ N(0, 2 s² I), whose norm has mean s·√π
    one = GaussianMixture(torch.tensor([[0.3, -0.2]]), torch.tensor([0.7], dtype=torch.float64), torch.tensor([1.0]))
    assert one.self_distance() == pytest.approx(0.7 * math.sqrt(math.pi), rel=1e-12)
    # two far-apart tight 1-D components: ≈ 2·w₀·w₁·distance
    two = GaussianMixture(torch.tensor([[0.0], [100.0]]), torch.tensor([1e-3, 1e-3]), torch.tensor([1.0, 3.0]))
    assert two.self_distance() == pytest.approx(2 * 0.25 * 0.75 * 100.0, rel=1e-4)
    with pytest.raises(ValueError, match="D = 1 or 2"):
        GaussianMixture(torch.zeros(1, 3), torch.ones(1), torch.ones(1)).self_distance()


@pytest.mark.slow
def test_energy_to_mixture_is_unbiased_and_sensitive():
    gmm = GaussianMixture.default_2d()
    null = [energy_distance_to_mixture(gmm.sample(4000, torch.Generator().manual_seed(s))[0], gmm) for s in range(8)]
    mean, sd = sum(null) / 8, torch.tensor(null).std().item()
    assert abs(mean) < 3 * sd / math.sqrt(8) + 1e-5 and sd < 6e-4  # centred on 0 (measured sd 3.0e-4)
    wider = gmm.sample(4000, torch.Generator().manual_seed(99))[0] * 1.05  # every mode 5 % further out
    assert energy_distance_to_mixture(wider, gmm) > 8 * sd
    # the same number as the two-sample statistic against a very large true sample, within its noise
    big = gmm.sample(40_000, torch.Generator().manual_seed(7))[0]
    assert energy_distance(wider, big, unbiased=True) == pytest.approx(energy_distance_to_mixture(wider, gmm), abs=3e-4)


def test_unbiased_two_sample_energy():
    gmm = GaussianMixture.default_2d()
    g = torch.Generator().manual_seed(0)
    pairs = [(gmm.sample(1000, g)[0], gmm.sample(1000, g)[0]) for _ in range(10)]
    v = [energy_distance(a, b) for a, b in pairs]
    u = [energy_distance(a, b, unbiased=True) for a, b in pairs]
    floor = (gmm.self_distance() * 2) / 1000  # the V-statistic's bias for N = M = 1000
    assert sum(v) / 10 == pytest.approx(floor, rel=0.25)
    assert abs(sum(u) / 10) < floor / 4
    # the V-statistic is the plain all-pairs mean
    a, b = pairs[0]
    direct = 2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()
    assert v[0] == pytest.approx(direct.item(), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 points"):
        energy_distance(a[:1], b, unbiased=True)
