"""The Fréchet distance (ddkit.eval.fid) against scipy, and the digits feature network
(ddkit.eval.digits_net). (These tested ddkit.metrics, retired in 0.2; its digits_fid is written out
here from the same pieces.)"""

import types

import numpy as np
import pytest
import torch

from ddkit.eval import digits_net, fid


def _digits_fid(images, reference=None, net=None, batch_size: int = 512) -> float:
    """The retired ``ddkit.metrics.digits_fid``: FID of digits images in a DigitsFeatureNet's space."""
    x = digits_net.digits_images_to_float(images)
    if x.shape[0] < 2:
        raise ValueError(f"images needs at least 2 images, got {x.shape[0]}")
    ref = digits_net.load_digits_data()[0] if reference is None else digits_net.digits_images_to_float(reference)
    net.eval()
    return fid.frechet_distance(
        digits_net.net_features(net, x, batch_size), digits_net.net_features(net, ref, batch_size)
    )


metrics = types.SimpleNamespace(
    frechet_distance=fid.frechet_distance,
    frechet_distance_from_stats=fid.frechet_distance_from_stats,
    gaussian_stats=fid.gaussian_stats,
    load_digits_data=digits_net.load_digits_data,
    digits_images_to_float=digits_net.digits_images_to_float,
    DigitsFeatureNet=digits_net.DigitsFeatureNet,
    train_digits_feature_net=digits_net.train_digits_feature_net,
    feature_net_accuracy=digits_net.feature_net_accuracy,
    digits_fid=_digits_fid,
)

scipy_linalg = pytest.importorskip("scipy.linalg")


def _scipy_fd(fa: np.ndarray, fb: np.ndarray) -> float:
    """The classic FID reference (pytorch-fid's formula) with scipy.linalg.sqrtm."""
    mu1, mu2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.atleast_2d(np.cov(fa, rowvar=False)), np.atleast_2d(np.cov(fb, rowvar=False))
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _random_features(rng, n, d, shift=0.0, scale=1.0):
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    return (rng.standard_normal((n, d)) @ a) * scale + shift


# ----------------------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("d", [1, 5, 32])
def test_frechet_distance_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    fa = _random_features(rng, 400, d)
    fb = _random_features(rng, 300, d, shift=0.3, scale=1.5)
    expected = _scipy_fd(fa, fb)
    got = metrics.frechet_distance(fa, fb)
    assert got == pytest.approx(expected, rel=1e-7, abs=1e-9)
    # torch input, float32, gives the same number up to float32 rounding of the inputs
    got32 = metrics.frechet_distance(torch.from_numpy(fa).float(), torch.from_numpy(fb).float())
    assert got32 == pytest.approx(expected, rel=1e-4)


def test_frechet_distance_rank_deficient_matches_scipy():
    # fewer samples than dimensions: singular covariances, where clamping the eigenvalues matters
    rng = np.random.default_rng(7)
    fa, fb = rng.standard_normal((20, 40)), rng.standard_normal((25, 40)) + 0.1
    assert metrics.frechet_distance(fa, fb) == pytest.approx(_scipy_fd(fa, fb), rel=1e-5)


def test_frechet_distance_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    f = _random_features(rng, 500, 16)
    assert abs(metrics.frechet_distance(f, f)) < 1e-9


def test_frechet_distance_is_symmetric():
    rng = np.random.default_rng(1)
    fa, fb = _random_features(rng, 200, 8), _random_features(rng, 300, 8, shift=1.0)
    assert metrics.frechet_distance(fa, fb) == pytest.approx(metrics.frechet_distance(fb, fa), rel=1e-10)


def test_frechet_distance_from_stats_diagonal_closed_form():
    # Diagonal covariances commute: FD = ||μ1 − μ2||² + Σ_i (√s1_i − √s2_i)²
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    expected = (1.0 + 0.0 + 4.0) + ((1 - 3) ** 2 + (2 - 1) ** 2 + 0.0)
    got = metrics.frechet_distance_from_stats(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_scalar_gaussians_from_samples():
    # N(0, 1) vs N(2, 3²): FD = 4 + (1 − 3)² = 8, recovered from large samples
    g = torch.Generator().manual_seed(0)
    fa = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    fb = 2.0 + 3.0 * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    assert metrics.frechet_distance(fa, fb) == pytest.approx(8.0, abs=0.1)


def test_gaussian_stats_matches_numpy():
    rng = np.random.default_rng(3)
    f = _random_features(rng, 100, 6)
    mu, sigma = metrics.gaussian_stats(f)
    assert mu.dtype == torch.float64 and sigma.shape == (6, 6)
    np.testing.assert_allclose(mu.numpy(), f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(f, rowvar=False), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "fa, fb, match",
    [
        (np.zeros((10,)), np.zeros((10, 3)), r"feats_a must have shape \[N, D\]"),
        (np.zeros((1, 3)), np.zeros((10, 3)), "at least 2"),
        (np.zeros((10, 3)), np.zeros((10, 4)), "same feature size"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "finite"),
    ],
)
def test_frechet_distance_rejects_bad_features(fa, fb, match):
    with pytest.raises(ValueError, match=match):
        metrics.frechet_distance(fa, fb)


def test_frechet_distance_from_stats_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="sigma2 must have shape"):
        metrics.frechet_distance_from_stats(np.zeros(3), np.eye(3), np.zeros(3), np.eye(4))


# ----------------------------------------------------------------------------- digits features


@pytest.fixture(scope="module")
def digits_split():
    """The fixed digits:train / digits:test split and the shipped feature net (trained on digits:train)."""
    from ddkit.data import digits_split_indices
    from ddkit.eval.features import DigitsFeatures

    x, y = metrics.load_digits_data()
    tr, te = (torch.from_numpy(i) for i in digits_split_indices())
    return x, y, tr, te, DigitsFeatures().net


def test_load_digits_data_shapes_and_range():
    x, y = metrics.load_digits_data()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))
    assert x.min() == -1.0 and x.max() == 1.0


def test_feature_net_shapes():
    net = metrics.DigitsFeatureNet()
    x = torch.zeros(3, 1, 8, 8)
    assert net.features(x).shape == (3, net.feature_dim)
    assert net(x).shape == (3, 10)


def test_feature_net_held_out_accuracy(digits_split):
    x, y, tr, te, net = digits_split
    assert not net.training
    assert metrics.feature_net_accuracy(net, x[te], y[te]) >= 0.97


def test_feature_net_training_is_deterministic():
    x, y = metrics.load_digits_data()
    sub = torch.arange(0, 1797, 9)
    a = metrics.train_digits_feature_net(seed=3, epochs=2, images=x[sub], labels=y[sub])
    b = metrics.train_digits_feature_net(seed=3, epochs=2, images=x[sub], labels=y[sub])
    c = metrics.train_digits_feature_net(seed=4, epochs=2, images=x[sub], labels=y[sub])
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_digits_fid_ranks_real_above_degraded(digits_split):
    x, y, tr, te, net = digits_split
    real, other = x[te], x[tr]
    g = torch.Generator().manual_seed(0)
    fid_real = metrics.digits_fid(real, reference=other, net=net)
    noise = torch.rand(real.shape, generator=g) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(real, (1,) * 4, mode="replicate"), 3, stride=1)
    shuffled = real.flatten(1)[:, torch.randperm(64, generator=g)].view_as(real)
    collapsed = real[y[te] < 5]  # half of the classes missing
    fids = {
        name: metrics.digits_fid(imgs, reference=other, net=net)
        for name, imgs in [("noise", noise), ("blurred", blurred), ("shuffled", shuffled), ("collapsed", collapsed)]
    }
    assert 0.0 <= fid_real < 20.0
    for name, score in fids.items():
        assert score > 5 * fid_real, (name, score, fid_real)


def test_digits_fid_accepts_uint8_hwc(digits_split):
    x, y, tr, te, net = digits_split
    u8 = ((x[te] + 1) / 2 * 255).round().to(torch.uint8).permute(0, 2, 3, 1)  # [N, 8, 8, 1]
    as_float = metrics.digits_images_to_float(u8)
    assert as_float.shape == (len(te), 1, 8, 8)
    assert torch.allclose(as_float, x[te], atol=1.01 / 255)  # half a level of 2/255
    fid_u8 = metrics.digits_fid(u8.numpy(), reference=x[te], net=net)  # numpy, HWC
    fid_u8_hw = metrics.digits_fid(u8[..., 0], reference=x[te], net=net)  # [N, 8, 8]
    assert fid_u8 == pytest.approx(fid_u8_hw, abs=1e-6)
    assert fid_u8 < 0.1


@pytest.mark.parametrize(
    "images, match",
    [
        (torch.zeros(4, 3, 8, 8), r"float images must have shape \[N, 1, 8, 8\]"),
        (torch.zeros(4, 8, 8, 3, dtype=torch.uint8), r"uint8 images must have shape \[N, 8, 8, 1\]"),
        (torch.zeros(4, 1, 8, 8, dtype=torch.int64), "dtype"),
        (torch.full((4, 1, 8, 8), float("nan")), "finite"),
        (torch.zeros(1, 1, 8, 8), "at least 2"),
    ],
)
def test_digits_fid_rejects_bad_images(images, match):
    net = metrics.DigitsFeatureNet()  # untrained: validation happens before any training
    with pytest.raises(ValueError, match=match):
        metrics.digits_fid(images, net=net)
