"""Tests for ddkit.eval: closed forms for FID and KID, precision/recall on identical and disjoint
sets, memorisation on constructed sets, the shipped digits feature net and evaluate_samples."""

import importlib.resources
import importlib.util

import numpy as np
import pytest
import scipy.linalg
import torch

from ddkit.data import load_data
from ddkit.data.images import to_uint8
from ddkit.eval import evaluate_samples, fid, kid, memorization, precision_recall
from ddkit.eval.features import DigitsFeatures, FeatureExtractor, get_features

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return {
        "train": to_uint8(load_data("digits:train").x),
        "test": to_uint8(load_data("digits:test").x),
        "test_labels": load_data("digits:test").y.numpy(),
    }


@pytest.fixture(scope="module")
def shipped():
    return DigitsFeatures()


# ----------------------------------------------------------------------------- Fréchet distance


def _scipy_fd(fa, fb):
    mu1, mu2 = fa.mean(0), fb.mean(0)
    s1, s2 = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    fa = rng.normal(size=(300, 12)) @ rng.normal(size=(12, 12))
    fb = rng.normal(size=(250, 12)) @ rng.normal(size=(12, 12)) + 0.3
    assert fid.frechet_distance(fa, fb) == pytest.approx(_scipy_fd(fa, fb), rel=1e-6)


def test_frechet_distance_closed_form_two_gaussians():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 6))
    s1 = a @ a.T + np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    # Σ2 = c² Σ1 commutes with Σ1: FD = |Δμ|² + (1 − c)² Tr Σ1
    c = 1.7
    want = ((mu1 - mu2) ** 2).sum() + (1 - c) ** 2 * np.trace(s1)
    assert fid.frechet_distance_from_stats(mu1, s1, mu2, c**2 * s1) == pytest.approx(want, rel=1e-9)
    # diagonal covariances: Σ_d (σ1 − σ2)²
    d1, d2 = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert fid.frechet_distance_from_stats(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(want, rel=1e-9)


def test_reference_stats_are_cached(tmp_path, shipped, digits):
    first = fid.reference_stats(shipped, digits["test"], cache_dir=tmp_path)
    files = list(tmp_path.glob("fid-stats-digits-*.npz"))
    assert len(files) == 1
    again = fid.reference_stats(shipped, digits["test"], cache_dir=tmp_path)
    np.testing.assert_array_equal(first.sigma, again.sigma)
    assert first.feats.shape == (500, 128)
    other = fid.reference_stats(shipped, digits["test"][:400], cache_dir=tmp_path)
    assert other.key != first.key and len(list(tmp_path.glob("*.npz"))) == 2


def test_fid_asks_for_more_samples_than_dimensions(shipped, digits):
    stats = fid.reference_stats(shipped, digits["test"])
    with pytest.raises(ValueError, match="at least 129 samples"):
        fid.fid(shipped(digits["train"][:100]), stats)


# ----------------------------------------------------------------------------- KID


def test_mmd2_unbiased_matches_brute_force():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 1
    k = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert kid.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_kid_zero_for_one_distribution_positive_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    mean, sd = kid.kid(a, b, num_subsets=40, seed=0)
    assert sd > 0 and abs(mean) < sd
    shifted, sd2 = kid.kid(a, b + 0.5, num_subsets=40, seed=0)
    assert shifted > 10 * sd2 > 0
    # the subsets, and so the result, depend only on the seed
    assert kid.kid(a, b, num_subsets=40, seed=0) == (mean, sd) and kid.kid(a, b, num_subsets=40, seed=1) != (mean, sd)


# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_identical_and_disjoint_sets():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(300, 8))
    assert precision_recall.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert precision_recall.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_precision_recall_half_the_modes():
    """Samples from one of two well-separated real modes: all look real, half the data is covered."""
    rng = np.random.default_rng(5)
    real = np.concatenate([rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 50])
    fake = rng.normal(size=(200, 4))
    p, r = precision_recall.precision_recall(real, fake)
    assert p > 0.9 and 0.4 < r <= 0.5


def test_knn_radii_skip_self():
    pts = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]], dtype=torch.float64)
    assert precision_recall.knn_radii(pts, 1).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert precision_recall.knn_radii(pts, 3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]


# ----------------------------------------------------------------------------- memorisation


def test_memorization_on_constructed_sets():
    rng = np.random.default_rng(6)
    train = rng.integers(0, 256, size=(200, 4, 4, 1)).astype(np.uint8)

    def jitter(images, amount):  # move every pixel by ±amount grey levels (clipped)
        signs = rng.choice([-1, 1], size=images.shape)
        return np.clip(images.astype(int) + signs * amount, 0, 255).astype(np.uint8)

    heldout = jitter(train[:100], 20)
    copies = train[100:].copy()
    m = memorization.memorization(copies, heldout, train)
    assert m["nn_median"] == 0.0 and m["closer_than_real"] == 1.0
    assert m["nn_median_real"] == pytest.approx(20 / 127.5 * 4, rel=0.15)  # √16 pixels · 20/127.5
    far = memorization.memorization(jitter(train[100:], 60), heldout, train)
    assert far["closer_than_real"] == 0.0 and far["nn_median"] > m["nn_median_real"]
    # held-out images against themselves score one half by construction
    same = memorization.memorization(heldout, heldout, train)
    assert same["nn_median"] == same["nn_median_real"] and 0.4 <= same["closer_than_real"] <= 0.5


# ----------------------------------------------------------------------------- features


def test_shipped_digits_features_load_and_reach_their_accuracy(shipped, digits):
    assert isinstance(shipped, FeatureExtractor) and shipped.name == "digits"
    assert importlib.resources.files("ddkit.eval").joinpath("digits_features.safetensors").is_file()
    assert shipped.metadata["trained_on"] == "digits:train"
    assert shipped.heldout_accuracy >= 0.98
    pred = shipped.predict(digits["test"])
    assert pred.dtype == np.int64 and pred.shape == (500,)
    # the uint8 round trip moves pixels by under half a grey level: within one digit of the stated figure
    assert (pred == digits["test_labels"]).mean() >= shipped.heldout_accuracy - 0.002
    f = shipped(digits["test"][:7])
    assert f.dtype == np.float64 and f.shape == (7, 128)


def test_features_reject_bad_input(shipped):
    with pytest.raises(ValueError, match="uint8"):
        shipped(np.zeros((3, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="8×8"):
        shipped(np.zeros((3, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="unknown feature set 'vgg'"):
        get_features("vgg")


@pytest.mark.skipif(
    bool(importlib.util.find_spec("torch_fidelity") or importlib.util.find_spec("pytorch_fid")),
    reason="an Inception library is installed",
)
def test_inception_without_library_says_what_to_install():
    with pytest.raises(ValueError, match="pip install torch-fidelity"):
        get_features("inception")


# ----------------------------------------------------------------------------- evaluate_samples


def test_evaluate_samples_real_digits(digits):
    out = evaluate_samples(digits["train"][:600], metrics=("fid", "kid", "precision_recall", "memorization"))
    assert out["reference"] == "digits:test" and out["num"] == 600
    assert set(out) == {
        "reference",
        "num",
        "fid",
        "kid",
        "kid_std",
        "precision",
        "recall",
        "nn_median",
        "nn_median_real",
        "closer_than_real",
    }
    assert 0 < out["fid"] < 20 and abs(out["kid"]) < 2 * out["kid_std"]
    assert out["precision"] > 0.8 and out["recall"] > 0.8
    assert out["nn_median"] == 0.0 and out["closer_than_real"] == 1.0  # these are training images
    noise = np.random.default_rng(0).integers(0, 256, size=(600, 8, 8, 1)).astype(np.uint8)
    bad = evaluate_samples(noise, metrics=("fid", "kid", "precision_recall"))
    assert bad["fid"] > 10 * out["fid"] and bad["kid"] > 10 * bad["kid_std"] and bad["precision"] < 0.05


def test_evaluate_samples_errors(digits):
    with pytest.raises(ValueError, match=r"samples are \[16, 16, 1\]"):
        evaluate_samples(np.zeros((200, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="unknown metric 'is'"):
        evaluate_samples(digits["train"][:200], metrics=("fid", "is"))
    with pytest.raises(ValueError, match="fid .* needs at least 129 samples"):
        evaluate_samples(digits["train"][:50])
    with pytest.raises(ValueError, match="train_images"):
        evaluate_samples(digits["train"][:50], reference=digits["test"], metrics=("memorization",))
    with pytest.raises(ValueError, match="uint8"):
        evaluate_samples(digits["train"][:200].astype(np.float32))
