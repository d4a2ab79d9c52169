"""Timesteps tuned for a model (ddkit.tune_timesteps, `ddkit tune-steps`, `--spacing tuned`): the
tuned sequence beats every hand-made grid on the tuning set and on fresh start noise, the record
round-trips and refuses what it was not made for, and the command line end to end."""

import json
import shutil

import numpy as np
import pytest
import torch

import ddkit
from ddkit.cli import main
from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.samplers import run_sampler
from ddkit.tuning import TunedTimesteps, teacher_solution, tuned

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def oracle_tuned(gmm):
    schedule = ddkit.Schedule.linear()
    fn = gmm.eps_fn(schedule.alpha_bars)
    x_T = torch.randn(512, 2, generator=torch.Generator().manual_seed(11))
    teacher = teacher_solution(fn, schedule, x_T, steps=200)
    rec = ddkit.tune_timesteps(fn, schedule, sampler="dpm++", nfe=5, x_T=x_T, teacher=teacher, max_evals=60)
    return schedule, fn, x_T, teacher, rec


def test_tuned_beats_every_hand_made_grid(oracle_tuned, gmm):
    schedule, fn, _, _, rec = oracle_tuned
    assert rec.sampler == "dpm++" and rec.nfe == 5 and len(rec.timesteps) == 5 and rec.options == {"order": 2}
    assert rec.score_after < min(rec.score_before.values())
    assert rec.baseline == "leading" and set(rec.score_before) >= {"leading", "logsnr", "karras", "exponential", "dp"}
    assert rec.teacher == {"sampler": "dpm++", "order": 2, "spacing": "trailing", "steps": 200}
    assert "dynamic programming" in rec.method and rec.version == ddkit.__version__
    t = list(rec.timesteps)
    assert all(a > b for a, b in zip(t, t[1:])) and t[-1] >= 0 and t[0] <= 999
    # on fresh start noise, against the exact law: better than the best hand-made grid
    x = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    tuned_score = energy_distance_to_mixture(run_sampler("dpm++", fn, x, schedule, timesteps=t).double(), gmm)
    hand = min(
        energy_distance_to_mixture(run_sampler("dpm++", fn, x, schedule, steps=5, spacing=sp).double(), gmm)
        for sp in ("leading", "logsnr", "exponential")
    )
    assert tuned_score < hand


def test_teacher_is_reused_and_checked(oracle_tuned):
    schedule, fn, x_T, teacher, _ = oracle_tuned
    rec = ddkit.tune_timesteps(fn, schedule, sampler="heun", nfe=5, x_T=x_T, teacher=teacher, max_evals=10)
    assert len(rec.timesteps) == 3 and rec.teacher["steps"] == 200
    with pytest.raises(ValueError, match="another x_T"):
        ddkit.tune_timesteps(fn, schedule, sampler="ddim", nfe=4, x_T=x_T.clone(), teacher=teacher)


def test_record_round_trip_and_checks(oracle_tuned, tmp_path):
    schedule, _, _, _, rec = oracle_tuned
    path = rec.save(tmp_path / "dpm++-5.json")
    back = TunedTimesteps.load(path)
    assert back == rec
    assert tuned(path, schedule, sampler="dpm++", nfe=5) == list(rec.timesteps)
    for kw, match in (
        ({"sampler": "unipc", "nfe": 5}, "tuned for sampler 'dpm\\+\\+', not 'unipc'"),
        ({"sampler": "dpm++", "nfe": 6}, "tuned for 5 model evaluations, not 6"),
    ):
        with pytest.raises(ValueError, match=match):
            tuned(path, schedule, **kw)
    with pytest.raises(ValueError, match="T = 1000, not 50"):
        tuned(path, ddkit.Schedule.linear(num_timesteps=50), sampler="dpm++", nfe=5)
    d = json.loads(path.read_text())
    for bad, match in (([999, 500, 500, 3, 1], "strictly decreasing"), ([1200, 500, 50, 3, 1], r"in \[0, 999\]")):
        path.write_text(json.dumps(d | {"timesteps": bad}))
        with pytest.raises(ValueError, match=match):
            tuned(path, schedule, sampler="dpm++", nfe=5)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TunedTimesteps.load(path)
    path.write_text(json.dumps({"timesteps": [1]}))
    with pytest.raises(ValueError, match="not a tuned-timesteps file"):
        TunedTimesteps.load(path)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"sampler": "ddpm", "nfe": 5}, "cannot be tuned"),
        ({"sampler": "ddim", "nfe": 1}, "2 <= K <"),
        ({"sampler": "ddim", "nfe": 500}, "2 <= K <"),
        ({"sampler": "ddim", "nfe": 50, "teacher_steps": 40}, "2 <= K <"),
        ({"sampler": "heun", "nfe": 4}, "must be odd for heun"),
        ({"sampler": "ddim", "nfe": 4, "order": 2}, "does not take order"),
        ({"sampler": "dpm++", "nfe": 4, "order": 5}, "order must be one of"),
    ],
)
def test_bad_tuning_input(gmm, kw, match):
    schedule = ddkit.Schedule.linear()
    with pytest.raises(ValueError, match=match):
        ddkit.tune_timesteps(gmm.eps_fn(schedule.alpha_bars), schedule, x_T=torch.randn(8, 2), **kw)


# ---- the command line ---------------------------------------------------------------------------
TINY = ["--model-channels", "8", "--batch-size", "16", "--ckpt-every", "2", "--sample-every", "100", "--no-progress"]
TUNE = ["--num", "16", "--teacher-steps", "30", "--max-evals", "6", "--objective", "rmse"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    a, b = root / "a", root / "b"
    assert main(["train", "--out", str(a), "--steps", "2", "--num-timesteps", "100", *TINY]) == 0
    assert main(["train", "--out", str(b), "--steps", "2", "--num-timesteps", "100", "--seed", "3", *TINY]) == 0
    return a, b


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: "), err
    return err


def test_tune_steps_then_sample_with_them(runs, tmp_path, capsys):
    run = runs[0]
    assert main(["tune-steps", str(run), "--sampler", "dpm++", "--nfe", "4", *TUNE]) == 0
    path = run / "timesteps" / "dpm++-4.json"
    record = json.loads(path.read_text())
    for key in ("timesteps", "sigmas", "method", "teacher", "score_before", "score_after", "version", "model"):
        assert key in record, key
    assert record["teacher"]["steps"] == 30 and record["version"] == ddkit.__version__
    capsys.readouterr()
    traj = tmp_path / "traj.npz"
    args = ["sample", str(run), "--sampler", "dpm++", "--steps", "4", "--spacing", "tuned", "--num", "5"]
    assert main([*args, "--out", str(tmp_path / "s.npz"), "--trajectory", str(traj)]) == 0
    with np.load(traj) as z:
        assert np.allclose(z["t"], record["timesteps"])  # the sampler walked the tuned sequence
    # the order it was tuned with is part of the sequence
    assert main([*args, "--order", "3", "--out", str(tmp_path / "s.npz")]) == 2
    assert "tuned for --order 2, not 3" in _error_line(capsys)


def test_spacing_tuned_refusals(runs, tmp_path, capsys):
    a, b = runs
    assert main(["tune-steps", str(a), "--sampler", "ddim", "--nfe", "3", *TUNE]) == 0
    out = ["--num", "2", "--out", str(tmp_path / "s.npz")]
    capsys.readouterr()
    # missing: the error names the command that makes it
    assert main(["sample", str(a), "--sampler", "ddim", "--steps", "5", "--spacing", "tuned", *out]) == 2
    assert "ddkit tune-steps" in (err := _error_line(capsys)) and "--sampler ddim --nfe 5" in err
    # a file made for another sampler or NFE, renamed into place
    shutil.copy(a / "timesteps" / "ddim-3.json", a / "timesteps" / "euler-3.json")
    assert main(["sample", str(a), "--sampler", "euler", "--steps", "3", "--spacing", "tuned", *out]) == 2
    assert "tuned for sampler 'ddim', not 'euler'" in _error_line(capsys)
    shutil.copy(a / "timesteps" / "ddim-3.json", a / "timesteps" / "ddim-4.json")
    assert main(["sample", str(a), "--sampler", "ddim", "--steps", "4", "--spacing", "tuned", *out]) == 2
    assert "tuned for 3 model evaluations, not 4" in _error_line(capsys)
    # a file made for another run's weights
    (b / "timesteps").mkdir(exist_ok=True)
    shutil.copy(a / "timesteps" / "ddim-3.json", b / "timesteps" / "ddim-3.json")
    assert main(["sample", str(b), "--sampler", "ddim", "--steps", "3", "--spacing", "tuned", *out]) == 2
    assert "tuned for other weights" in _error_line(capsys)
    # the same file still serves its own run
    assert main(["sample", str(a), "--sampler", "ddim", "--steps", "3", "--spacing", "tuned", *out]) == 0


@pytest.mark.parametrize(
    "args, match",
    [
        (["--sampler", "ddim", "--nfe", "1"], "--nfe (K) must be an integer with 2 <= K < --teacher-steps = 99"),
        (["--sampler", "ddim", "--nfe", "30", "--teacher-steps", "30"], "2 <= K < --teacher-steps = 30"),
        (["--sampler", "heun", "--nfe", "4"], "--nfe must be odd for heun"),
        (["--sampler", "dpm++", "--nfe", "4", "--s-churn", "1"], "unrecognized arguments: --s-churn"),
        (["--sampler", "ddim", "--nfe", "4", "--order", "2"], "does not take --order"),
        (["--sampler", "ddpm", "--nfe", "4"], "invalid choice"),
        (["--sampler", "ddim", "--nfe", "4", "--objective", "kl"], "invalid choice"),
        (["--sampler", "ddim", "--nfe", "4", "--num", "16"], "needs at least 129 samples"),
    ],
)
def test_tune_steps_bad_input(runs, capsys, args, match):
    assert main(["tune-steps", str(runs[0]), *args]) == 2
    assert match in _error_line(capsys)


@pytest.mark.slow
def test_tune_steps_klub_records_candidates(runs, capsys):
    run = runs[0]
    assert main(["tune-steps", str(run), "--sampler", "ddim", "--nfe", "4", "--num", "130"]) == 0
    out = capsys.readouterr().out
    assert "chosen" in out and "wrote" in out
    record = json.loads((run / "timesteps" / "ddim-4.json").read_text())
    assert record["objective"] == "klub" and record["chosen"] in record["candidates"]
    assert {name.split("@")[0] for name in record["candidates"]} == {
        "klub",
        "kl-optimal",
        "between-0.25",
        "between-0.5",
        "between-0.75",
    }
    for cand in record["candidates"].values():
        assert len(cand["timesteps"]) == 4 and np.isfinite(cand["score"]) and cand["klub"] > 0
    chosen = record["candidates"][record["chosen"]]
    assert record["timesteps"] == chosen["timesteps"] and record["score_after"] == chosen["score"]
    assert min(c["score"] for c in record["candidates"].values()) == chosen["score"]
    assert "FID against a held-out 0.1 of the training data" in record["method"]
    # from each top, the KL bound's own grid has the least bound
    for name, cand in record["candidates"].items():
        top = name.split("@")[1]
        assert record["candidates"][f"klub@{top}"]["klub"] <= cand["klub"] * (1 + 1e-9)


def test_a_record_written_before_the_renames_loads_with_the_new_names(tmp_path):
    """0.1 wrote DDIM's leading spacing as "uniform"; its files load with the new name."""
    old = {
        "format": "ddkit-tuned-timesteps",
        "format_version": 1,
        "sampler": "ddim",
        "nfe": 3,
        "timesteps": [999, 500, 20],
        "sigmas": [1.0, 0.5, 0.1],
        "options": {},
        "baseline": "uniform",
        "score_before": {"uniform": 0.3, "trailing": 0.2, "dp": 0.1},
        "score_after": 0.05,
        "num_timesteps": 1000,
        "version": "0.1.0",
    }
    path = tmp_path / "ddim-3.json"
    path.write_text(json.dumps(old))
    rec = TunedTimesteps.load(path)
    assert rec.baseline == "leading" and rec.score_before == {"leading": 0.3, "trailing": 0.2, "dp": 0.1}
    assert tuned(path, ddkit.Schedule.linear(), sampler="ddim", nfe=3) == [999, 500, 20]
