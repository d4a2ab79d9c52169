"""`ddkit sample`'s few-step options end to end on a tiny run: σ-grids, EDM's samplers and churn,
explicit grids, the trajectory file and the progression grid, sampling precision; and each bad
input as one line on stderr with exit code 2."""

import numpy as np
import pytest
from PIL import Image

from ddkit.cli import main


@pytest.fixture(scope="module")
def run(digits_run):
    return digits_run  # conftest.py's shared run (T = 1000)


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "args",
    [
        ["--sampler", "heun", "--steps", "5"],
        [
            "--sampler",
            "euler",
            "--steps",
            "4",
            "--s-churn",
            "2",
            "--s-tmin",
            "0.1",
            "--s-tmax",
            "50",
            "--s-noise",
            "1.003",
        ],
        ["--sampler", "dpm++", "--steps", "4", "--spacing", "karras"],
        ["--sampler", "unipc", "--steps", "4", "--spacing", "exponential"],
        ["--sampler", "ddim", "--timesteps", "99", "60.5", "20", "3"],
        ["--sampler", "dpm++", "--sigmas", "50", "5", "0.5", "0.05", "0"],
        ["--sampler", "ddim", "--steps", "3", "--precision", "bf16"],
    ],
)
def test_sample_options(run, tmp_path, args):
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--num", "3", "--out", str(out), *args]) == 0
    with np.load(out) as z:
        assert z["images"].shape == (3, 8, 8, 1)


def test_trajectory_and_progression_grid(run, tmp_path):
    traj, grid = tmp_path / "t.npz", tmp_path / "g.png"
    args = ["sample", str(run), "--num", "5", "--batch-size", "2", "--sampler", "dpm++", "--steps", "4"]
    assert main([*args, "--out", str(tmp_path / "s.npz"), "--trajectory", str(traj), "--trajectory-num", "3"]) == 0
    with np.load(traj) as z:
        assert z["x0"].shape == (4, 3, 1, 8, 8) and z["x_t"].shape == (4, 3, 1, 8, 8)
        assert z["x0"].dtype == np.float32 and z["t"].shape == (4,) and z["sigma"].shape == (4,)
        assert np.all(np.diff(z["t"]) < 0) and np.all(np.abs(z["x0"]) <= 1)  # x̂₀ clipped as sampled
    three = [*args[:-1], "3", "--out", str(tmp_path / "s.npz"), "--trajectory", str(traj), "--grid", str(grid)]
    assert main(three) == 0
    # one row per recorded sample (min(8, --num) = 5), one column per step (3) plus the sample
    width, height = Image.open(grid).size
    assert (width - 1) * 5 == (height - 1) * 4


@pytest.mark.parametrize(
    "args, match",
    [
        (["--sampler", "ddim", "--s-churn", "1"], "--sampler ddim does not take --s-churn"),
        (["--sampler", "dpm++", "--s-noise", "1.1"], "does not take --s-noise"),
        (["--sampler", "heun", "--steps", "4"], "must be odd for heun"),
        (["--sampler", "euler", "--s-churn", "-1"], "--s-churn must be"),
        (["--timesteps", "50", "60"], "strictly decreasing"),
        (["--timesteps", "1000", "60"], r"in [0, 999]"),
        (["--sigmas", "1e6", "1"], "σ range"),
        (["--sigmas", "1", "2"], "strictly decreasing"),
        (["--timesteps", "50", "10", "--steps", "4"], "drop --steps and --spacing"),
        (["--timesteps", "50", "--sigmas", "1"], "not allowed with argument"),
        (["--precision", "fp16"], "--precision fp16 needs --device cuda"),
        (["--spacing", "tuned", "--steps", "4"], "ddkit tune-steps"),
        (["--spacing", "linear"], "invalid choice"),
    ],
)
def test_bad_sampling_input(run, tmp_path, capsys, args, match):
    assert main(["sample", str(run), "--num", "2", "--out", str(tmp_path / "s.npz"), *args]) == 2
    assert match in _error_line(capsys)


def test_bad_trajectory_paths(run, tmp_path, capsys):
    base = ["sample", str(run), "--num", "2", "--out", str(tmp_path / "s.npz")]
    assert main([*base, "--trajectory", str(tmp_path / "t.txt")]) == 2
    assert "--trajectory must name a .npz file" in _error_line(capsys)
    assert main([*base, "--trajectory", str(tmp_path / "nowhere" / "t.npz")]) == 2
    assert "does not exist" in _error_line(capsys)


@pytest.mark.slow
def test_sigma_bounds_and_kl_optimal(run, tmp_path, capsys):
    out = tmp_path / "s.npz"
    base = ["sample", str(run), "--num", "3", "--out", str(out)]
    for args in (
        ["--sampler", "euler", "--steps", "4", "--spacing", "kl-optimal"],
        ["--sampler", "heun", "--steps", "7", "--sigma-min", "0.05", "--sigma-max", "2"],
        ["--sampler", "dpm++", "--steps", "4", "--spacing", "karras", "--sigma-max", "1"],
    ):
        assert main([*base, *args]) == 0
        with np.load(out) as z:
            assert z["images"].shape == (3, 8, 8, 1)
    capsys.readouterr()
    # a Heun grid known to overshoot: one warning line naming a better choice, and the samples
    assert main([*base, "--sampler", "heun", "--steps", "3"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ddkit: warning: heun:") and "--sampler dpm++ --steps 3" in err[0]


@pytest.mark.parametrize(
    "args, match",
    [
        (["--sigma-min", "0.5", "--sigma-max", "0.5", "--spacing", "karras"], "--sigma-max must be above --sigma-min"),
        (["--sigma-min", "0.5", "--sigma-max", "0.1", "--sampler", "heun"], "--sigma-max must be above --sigma-min"),
        (["--sigma-min", "0.1"], "σ-grid spacings"),
        (["--sigma-max", "1e9", "--spacing", "exponential"], "σ range"),
    ],
)
@pytest.mark.slow
def test_bad_sigma_bounds(run, tmp_path, capsys, args, match):
    assert main(["sample", str(run), "--num", "2", "--out", str(tmp_path / "s.npz"), *args]) == 2
    assert match in _error_line(capsys)
