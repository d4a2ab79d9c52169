"""``ddkit eval`` and ``ddkit train --holdout`` end to end on tiny models (in-process through ``main``)."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from ddkit.cli import main
from ddkit.data import load_data, load_run_data
from ddkit.data.images import to_uint8
from ddkit.eval import evaluate_samples
from ddkit.training.config import RunConfig

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def train_run(digits_run):
    return digits_run  # conftest.py's shared run: 3 steps on digits:train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _eval_json(capsys, *argv):
    capsys.readouterr()
    assert main(["eval", *map(str, argv), "--json", "--no-progress"]) == 0
    return json.loads(capsys.readouterr().out)


def _error(capsys, *argv):
    capsys.readouterr()
    assert main(["eval", *map(str, argv), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: ") and "Traceback" not in err, err
    return err


def _npz(path, images):
    np.savez(path, images=images)
    return path


def test_eval_draws_and_scores_against_digits_test(train_run, cache, capsys):
    out = _eval_json(
        capsys,
        train_run,
        "--num",
        130,
        "--steps",
        2,
        "--fid",
        "--kid",
        "--precision-recall",
        "--memorization",
        "--cache-dir",
        cache,
    )
    for key in ("fid", "kid", "kid_std", "precision", "recall", "nn_median", "nn_median_real", "closer_than_real"):
        assert np.isfinite(out[key]), key
    assert out["reference"] == "digits:test" and out["num"] == 130 and out["features"] == "digits"
    assert out["reference_is_training_data"] is False
    assert out["settings"]["steps"] == 2 and out["settings"]["sampler"] == "ddim" and out["settings"]["num"] == 130
    assert out["fid"] > 50  # two training steps: noise, far from digits
    assert "nll_bpd" not in out


def test_eval_scores_given_samples(train_run, cache, capsys, tmp_path):
    real = to_uint8(load_data("digits:train").x)[:300]
    path = _npz(tmp_path / "real.npz", real)
    out = _eval_json(capsys, train_run, "--samples", path, "--cache-dir", cache)
    assert set(out) >= {"fid", "kid", "kid_std"} and "precision" not in out  # --fid --kid by default
    want = evaluate_samples(real, "digits:test", metrics=("fid", "kid"))
    assert out["fid"] == pytest.approx(want["fid"], rel=1e-9) and out["kid"] == pytest.approx(want["kid"], rel=1e-9)
    assert out["num"] == 300 and out["fid"] < 40  # FID is biased upwards at N = 300 (about 10 at 1,000)
    # the readable report
    capsys.readouterr()
    assert main(["eval", str(train_run), "--samples", str(path), "--memorization", "--no-progress"]) == 0
    report = capsys.readouterr().out
    assert "against digits:test" in report and "NN median" in report and "NOTE" not in report


def test_reference_the_run_trained_on_is_flagged(train_run, capsys, tmp_path):
    path = _npz(tmp_path / "s.npz", to_uint8(load_data("digits:test").x)[:10])
    out = _eval_json(capsys, train_run, "--samples", path, "--memorization", "--reference", "digits:train")
    assert out["reference_is_training_data"] is True and out["nn_median_real"] == 0.0
    capsys.readouterr()
    assert (
        main(
            ["eval", str(train_run), "--samples", str(path), "--memorization", "--reference", "digits", "--no-progress"]
        )
        == 0
    )
    assert "NOTE: the reference contains images this run trained on" in capsys.readouterr().out
    # a run on all the digits has no held-out part: the reference must be explicit
    full = tmp_path / "full"
    shutil.copytree(train_run, full)
    cfg = json.loads((full / "config.json").read_text())
    cfg["data"]["source"] = "digits"
    (full / "config.json").write_text(json.dumps(cfg))
    assert "no held-out part; pass --reference" in _error(capsys, full, "--samples", path, "--memorization")
    out = _eval_json(capsys, full, "--samples", path, "--memorization", "--reference", "digits:test")
    assert out["reference_is_training_data"] is True


def test_eval_errors(train_run, capsys, tmp_path):
    digits = to_uint8(load_data("digits:test").x)
    assert "must be uint8" in _error(
        capsys, train_run, "--samples", _npz(tmp_path / "f.npz", digits.astype(np.float32))
    )
    assert "shape [N, H, W, C]" in _error(capsys, train_run, "--samples", _npz(tmp_path / "s.npz", digits[..., 0]))
    big = np.zeros((200, 16, 16, 1), np.uint8)
    assert "samples are [16, 16, 1]" in _error(capsys, train_run, "--samples", _npz(tmp_path / "b.npz", big))
    np.savez(tmp_path / "x.npz", pictures=digits)
    assert "no 'images' array" in _error(capsys, train_run, "--samples", tmp_path / "x.npz")
    assert "needs at least 129 samples" in _error(capsys, train_run, "--num", 50, "--fid")
    assert "invalid choice: 'vgg'" in _error(capsys, train_run, "--features", "vgg")
    assert "--reference must be" in _error(capsys, train_run, "--reference", "digits:val")


def test_nll_on_a_toy_run_is_refused(toy_run, capsys):
    assert "--nll need an image run" in _error(capsys, toy_run, "--nll")


def test_nll_through_eval(train_run, capsys, tmp_path):
    out = _eval_json(capsys, train_run, "--nll", "--nll-num", 2, "--out", tmp_path / "ev")
    assert out["nll_bpd"] > 0 and out["nll_levels"] == 17 and out["nll_num"] == 2
    assert (tmp_path / "ev" / "nll_terms.png").is_file() and "fid" not in out


def _digit_folder(path, count):
    path.mkdir()
    for i, img in enumerate(to_uint8(load_data("digits").x)[:count, :, :, 0]):
        Image.fromarray(img, "L").save(path / f"{i:03d}.png")
    return path


@pytest.mark.slow
def test_train_holdout_split_is_recorded_and_never_trained_on(tmp_path, capsys):
    folder = _digit_folder(tmp_path / "imgs", 40)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(folder),
                "--image-size",
                "8",
                "--channels",
                "1",
                "--holdout",
                "0.25",
                "--out",
                str(run),
                "--steps",
                "1",
                "--model-channels",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "the data set has 30 examples" in capsys.readouterr().err  # the trainer saw 30 of the 40
    cfg = RunConfig.load(run / "config.json")
    assert cfg.data.holdout == 0.25 and cfg.data.holdout_seed == 0
    train, held = load_run_data(cfg.data, 0, "train"), load_run_data(cfg.data, 0, "heldout")
    assert len(train) == 30 and len(held) == 10
    pairs = (train.x.flatten(1)[:, None] == held.x.flatten(1)[None]).all(-1)
    assert not pairs.any()  # (these 40 digits are distinct)
    samples = _npz(tmp_path / "s.npz", to_uint8(held.x))
    out = _eval_json(capsys, run, "--samples", samples, "--memorization")
    assert out["reference"].endswith("held-out part (0.25)") and out["closer_than_real"] == 0.5
    assert out["nn_median"] == out["nn_median_real"]
    assert "holdout is for image folders" in _train_error(capsys, ["--data", "digits", "--holdout", "0.2"])
    assert "fraction in [0, 1)" in _train_error(capsys, ["--data", str(folder), "--holdout", "1.5"])


def _train_error(capsys, argv):
    capsys.readouterr()
    assert main(["train", "--out", "/nonexistent/x", "--steps", "1", *argv]) == 2
    return capsys.readouterr().err
