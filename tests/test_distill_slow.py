"""Consistency students end to end (slow): ECT from a small MLP teacher on the 2-D mixture, and
``ddkit distill`` / ``sample`` / ``eval`` / ``edit`` on a tiny digits run."""

import copy
import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from ddkit.cli import main
from ddkit.nn import MLPConfig, build_model
from ddkit.samplers import run_sampler
from ddkit.timesteps import karras
from ddkit.training.config import DataConfig, DiffusionConfig, RunConfig, TrainConfig
from ddkit.training.distill import ECTObjective, distill, student_config
from ddkit.training.ema import EMA
from ddkit.training.objectives import DiffusionObjective
from ddkit.training.precision import resolve_precision
from ddkit.training.student import DistillConfig, sha256_file

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def _endpoint_error(x, ref):
    return float((x - ref).norm(dim=1).mean())


@pytest.mark.parametrize("method", ["ect", "cd"])
def test_mixture_student_approaches_the_teachers_flow_and_becomes_self_consistent(gmm, method, tmp_path):
    """A small MLP teacher on the 2-D mixture, with EDM's preconditioning, log-normal noise levels and
    loss weighting; its probability-flow endpoint from σ = 80 (DPM-Solver++, 100 steps) is the
    reference. Tuning moves the student's one-step output towards it. ECT, which learns the data's
    flow, gets past the teacher's 6-evaluation Euler (DDIM η = 0) solution in one step and its
    8-evaluation one in two (γ = 0, σ_mid = 3), not to DDIM-10 (docs/distill.md, Measurements: 0.236
    and 0.166 against 0.156). Consistency distillation, which learns the teacher's, gets past DDIM-10
    in one step and two (0.130 and 0.070). The self-consistency violation (f at σ = 80 against f at
    σ = 1 on the same teacher trajectory) falls."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    sigma_data = float(gmm.sample(4000, torch.Generator().manual_seed(9))[0].std())
    edm = DiffusionConfig(preconditioning="edm", sigma_data=sigma_data)
    teacher_config = RunConfig(
        model=MLPConfig(dim=2, hidden=MIX_HIDDEN, depth=3),
        diffusion=edm,
        data=DataConfig(source="toy:gmm"),
        train=TrainConfig(noise_levels="lognormal", loss_weighting="edm"),
    )
    sched = edm.build()
    teacher = build_model(teacher_config.model)
    teacher_loss = DiffusionObjective(teacher_config, None)
    opt = torch.optim.Adam(teacher.parameters(), 2e-3)
    ema = EMA(teacher, 0.99)
    for _ in range(MIX_TEACHER_STEPS):
        loss = teacher_loss.loss(teacher, gmm.sample(256, g)[0].float(), None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(teacher)
    teacher = ema.model.eval()
    weights = tmp_path / "teacher.safetensors"  # cd reads the teacher from its weights, as a student does
    save_file(teacher.state_dict(), weights)
    config = RunConfig(
        model=teacher_config.model,
        diffusion=dataclasses.replace(edm, consistency_sigma_data=sigma_data),
        data=teacher_config.data,
        distill=DistillConfig(
            teacher="t",
            teacher_weights=str(weights),
            teacher_sha256=sha256_file(weights),
            method=method,
            double_every=MIX_DOUBLE,
        ),  # fmt: skip
    )
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    teps = teacher_config.diffusion.eps_network(teacher, sched)
    with torch.no_grad():
        ref = run_sampler("dpm++", teps, z, sched, sigmas=karras(sched, 100, sigma_max=80.0).tolist())
        euler = {}  # the teacher's Euler (DDIM η = 0) error with k evaluations on a karras grid from σ = 80
        for k in (6, 8, 10):
            x = run_sampler("euler", teps, z, sched, sigmas=karras(sched, k, sigma_max=80.0).tolist())
            euler[k] = _endpoint_error(x, ref)
        # the teacher's trajectory at σ = 1: x̃_1 from the same start (Euler to σ = 1, x_t kept)
        grid = [s for s in karras(sched, 60, sigma_max=80.0).tolist() if s > 1.0]
        traj = {}
        run_sampler("euler", teps, z, sched, sigmas=grid + [1.0], callback=lambda info: traj.update({info.i: info}))
        x1 = traj[len(grid)].x_t * math.sqrt(2.0)  # x̃ at σ = 1
        x80 = z * math.sqrt(1 + 80.0**2)

    student_net = copy.deepcopy(teacher).train().requires_grad_(True)
    objective = ECTObjective(config)
    state = {"step": 0}
    objective.bind(lambda: state["step"])

    def measure(net, sigmas=(80.0,)):
        """(error of the consistency samples on ``sigmas`` to the endpoint, self-consistency violation)"""
        s = config.diffusion.eps_network(net.eval(), sched)
        with torch.no_grad():
            out = run_sampler("consistency", s, z, sched, sigmas=list(sigmas), gamma=0.0)
            f1 = s.denoise(x1, torch.full((len(z),), 1.0, dtype=torch.float64))
            f80 = s.denoise(x80, torch.full((len(z),), 80.0, dtype=torch.float64))
        net.train()
        return _endpoint_error(out, ref), float((f80 - f1).norm(dim=1).mean())

    err0, viol0 = measure(student_net)
    opt = torch.optim.Adam(student_net.parameters(), MIX_LR)
    ema = EMA(student_net, 0.999)
    for step in range(MIX_STEPS):
        state["step"] = step
        loss = objective.loss(student_net, gmm.sample(MIX_BATCH, g)[0].float(), None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(student_net)
    (err, viol), (err2, _) = measure(ema.model), measure(ema.model, sigmas=(80.0, 3.0))
    print(f"one-step error {err0:.3f} -> {err:.3f}, two steps {err2:.3f} (Euler-k {euler})")
    print(f"self-consistency violation {viol0:.3f} -> {viol:.3f}")
    assert err < err0 / 2
    assert viol < viol0 / 2
    if method == "ect":
        assert err < euler[6] and err2 < euler[8]
    else:  # the bound
        assert err < euler[10] and err2 < euler[10]


# the mixture test's budget, about 20 s of one CPU thread (docs/distill.md gives the measurements behind it)
MIX_HIDDEN, MIX_TEACHER_STEPS, MIX_STEPS, MIX_BATCH, MIX_LR, MIX_DOUBLE = 64, 1500, 2000, 512, 5e-4, 500


TINY = ["--model-channels", "16", "--batch-size", "32", "--ckpt-every", "2", "--sample-every", "100", "--no-progress"]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("distill") / "teacher"
    assert main(["train", "--out", str(run), "--steps", "3", *TINY]) == 0
    return run


def _error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("ddkit: error: "), err
    return err[-1]


def test_cli_distill_sample_eval_edit(teacher_run, tmp_path, capsys):
    student = tmp_path / "student"
    args = ["distill", str(teacher_run), "--out", str(student), "--steps", "4", "--batch-size", "32", "--no-progress"]
    assert main(args) == 0
    assert "predicts ε without EDM's preconditioning" in capsys.readouterr().err  # the one-line note
    saved = json.loads((student / "config.json").read_text())
    d = saved["distill"]
    assert d["teacher"] == str(teacher_run.resolve()) and len(d["teacher_sha256"]) == 64
    assert d["sigma_max"] == 80.0 and d["sigma_mid"] in d["sigma_mid_candidates"]
    assert saved["train"]["steps"] == 4
    # precision auto, as ddkit train (bf16 where native), which the trainer resolves and records
    assert student_config(teacher_run)[0].train.precision == "auto"
    model = build_model(RunConfig.from_dict(saved).model)
    assert saved["train"]["precision"] == resolve_precision("auto", "cpu", model)[0]
    assert saved["train"]["lr"] == 2e-3  # the default rate, chosen on the digits' training slice (docs/distill.md)
    for steps in ("1", "2"):
        out = tmp_path / f"s{steps}.npz"
        assert main(["sample", str(student), "--steps", steps, "--num", "6", "--out", str(out)]) == 0
    assert main(["eval", str(student), "--num", "200", "--reference", "digits:test"]) == 0
    capsys.readouterr()
    # bad input: one line, exit 2
    assert main(["sample", str(student), "--steps", "3", "--num", "2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "1 or 2" in _error_line(capsys)
    assert main(["distill", str(student), "--out", str(tmp_path / "again")]) == 2
    assert "student already" in _error_line(capsys)
    assert main(["distill", str(teacher_run), "--out", str(student), "--resume", "--method", "cd"]) == 2
    assert "--method cd (the run has ect)" in _error_line(capsys)
    for flag, value in (("--weighting", "snr"), ("--lr", "0.001"), ("--double-every", "7")):
        assert main(["distill", str(teacher_run), "--out", str(student), "--resume", flag, value]) == 2
        assert f"{flag} {value} (the run has " in _error_line(capsys)
    # the budget and the checkpoint cadence may change on resume
    resumed = ["distill", str(teacher_run), "--out", str(student), "--resume", "--steps", "5", "--ckpt-every", "5"]
    assert main([*resumed, "--no-progress", "--weighting", "gap"]) == 0
    saved = json.loads((student / "config.json").read_text())
    assert saved["train"]["steps"] == 5 and saved["train"]["ckpt_every"] == 5
    capsys.readouterr()
    cd = ["distill", str(teacher_run), "--out", str(tmp_path / "cd"), "--method", "cd", "--weighting", "snr"]
    assert main([*cd, "--dropout", "0.2", *args[4:]]) == 0
    saved = json.loads((tmp_path / "cd" / "config.json").read_text())
    assert (saved["distill"]["method"], saved["distill"]["weighting"], saved["model"]["dropout"]) == ("cd", "snr", 0.2)
    assert main([*cd, "--dropout", "0.1", "--resume", "--steps", "5"]) == 2
    assert "--dropout 0.1 (the run has 0.2)" in _error_line(capsys)
    # a resume repeats none of it: the student's method and settings are its own
    assert (
        main(["distill", str(teacher_run), "--out", str(tmp_path / "cd"), "--resume", "--steps", "5", "--no-progress"])
        == 0
    )
    saved = json.loads((tmp_path / "cd" / "config.json").read_text())
    assert (saved["distill"]["method"], saved["distill"]["weighting"], saved["train"]["steps"]) == ("cd", "snr", 5)
    capsys.readouterr()
    assert main(["distill", str(teacher_run), "--out", str(tmp_path / "zero"), "--steps", "0"]) == 2
    assert "steps" in _error_line(capsys)
    for flag, value, words in (
        ("--t-max", "0.001", "--t-max must be above"),
        ("--t-uniform", "1.5", "--t-uniform must be a share in [0, 1]"),
        ("--dropout", "1", "--dropout must be"),
    ):
        out = tmp_path / "bad-t"
        assert main(["distill", str(teacher_run), "--out", str(out), flag, value]) == 2
        assert words in _error_line(capsys) and not out.exists()
    (tmp_path / "in").mkdir()
    from PIL import Image

    Image.new("L", (8, 8)).save(tmp_path / "in" / "a.png")
    edit = [
        "edit",
        str(student),
        "--input",
        str(tmp_path / "in"),
        "--method",
        "sdedit",
        "--out",
        str(tmp_path / "e.npz"),
    ]
    assert main(edit) == 2
    assert "not defined for a consistency student" in _error_line(capsys)


def test_cli_distill_refuses_a_run_without_checkpoint(teacher_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((teacher_run / "config.json").read_text())
    assert main(["distill", str(empty), "--out", str(tmp_path / "s")]) == 2
    assert "no checkpoint yet" in _error_line(capsys)


def test_student_refused_when_teachers_weights_change(teacher_run, tmp_path, capsys):
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_run, teacher)
    student = tmp_path / "student"
    distill(teacher, student, steps=2, batch_size=32, progress=False)
    weights = json.loads((student / "config.json").read_text())["distill"]["teacher_weights"]
    tensors = load_file(weights)
    from safetensors.torch import save_file

    save_file({k: v + 1e-3 for k, v in tensors.items()}, weights)
    assert main(["sample", str(student), "--num", "2", "--out", str(tmp_path / "x.npz")]) == 2
    assert "changed since the student" in _error_line(capsys)
    assert main(["eval", str(student), "--num", "200", "--reference", "digits:test"]) == 2
    assert "changed since the student" in _error_line(capsys)


@pytest.mark.parametrize("method", ["ect", "cd"])
def test_student_resumes_bit_identically(teacher_run, tmp_path, method):
    """Two steps, then a resume to four, ends with the weights of four straight steps (the ECT stage
    comes from the trainer's step; the teacher's weights start the student only at step 0, and cd's
    teacher is read again on resume)."""
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    options = dict(batch_size=32, double_every=2, progress=False, method=method)
    distill(teacher_run, straight, steps=4, **options)
    distill(teacher_run, halves, steps=2, **options)
    distill(teacher_run, halves, steps=4, resume=True, **options)
    a = load_file(straight / "checkpoints" / "step-000004" / "ema.safetensors")
    b = load_file(halves / "checkpoints" / "step-000004" / "ema.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_toy_student_of_a_seeded_teacher_resumes_bit_identically(tmp_path):
    """A toy teacher trained with --seed 3: the student draws its points with its own seed (default
    0) when made and when resumed, so a resumed student ends where a straight one does."""
    teacher = tmp_path / "teacher"
    toy = ["--data", "toy:moons", "--num-timesteps", "50", "--batch-size", "32", "--no-progress"]
    assert main(["train", "--out", str(teacher), "--steps", "2", "--seed", "3", *toy]) == 0
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    options = dict(batch_size=32, double_every=2, progress=False)
    distill(teacher, straight, steps=4, **options)
    distill(teacher, halves, steps=2, **options)
    distill(teacher, halves, steps=4, resume=True, **options)
    assert RunConfig.load(straight / "config.json").train.seed == 0
    a = load_file(straight / "checkpoints" / "step-000004" / "ema.safetensors")
    b = load_file(halves / "checkpoints" / "step-000004" / "ema.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
