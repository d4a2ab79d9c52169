"""Reliability and security: safe loading, run locks, checkpoint completeness, sharding, non-finite
losses, Ctrl-C, a full disk, broken schedules and bad input everywhere (issue 9). The kill -9 tests
are in test_crash.py."""

import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

import ddkit
from ddkit.cli import main
from ddkit.data import Dataset, load_data
from ddkit.nn import MLPConfig, UNetConfig, build_model, config_to_dict
from ddkit.samplers import run_sampler
from ddkit.schedule import Schedule
from ddkit.training import DistContext, ShardedBatches, train
from ddkit.training.checkpoint import (
    MODEL_METADATA,
    clean_incomplete,
    latest_checkpoint,
    load_matching,
    load_train_state,
)
from ddkit.training.config import DataConfig, DiffusionConfig, RunConfig, TrainConfig
from ddkit.training.rundir import RunLock, RunLockedError
from ddkit.training.stops import NonFiniteLossError

TOY = [
    "--data",
    "toy:moons",
    "--model-channels",
    "8",
    "--batch-size",
    "32",
    "--num-timesteps",
    "50",
    "--sample-every",
    "1000",
    "--log-every",
    "1",
    "--no-progress",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def toy_config(**train_kw):
    kw = dict(steps=4, batch_size=16, ckpt_every=2, log_every=1, sample_every=1000, seed=1)
    return RunConfig(
        model=MLPConfig(dim=2, hidden=8),
        diffusion=DiffusionConfig(num_timesteps=50),
        data=DataConfig(source="toy:moons", toy_size=64),
        train=TrainConfig(**{**kw, **train_kw}),
    )


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()  # notes ("ddkit: precision auto -> fp32") may come before it
    errors = [line for line in err.splitlines() if line.startswith("ddkit: error: ")]
    assert len(errors) == 1 and err.endswith(errors[0]), err
    assert "internal error" not in err and "Traceback" not in err, err
    return errors[0]


# ---- safe loading ---------------------------------------------------------------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would run os.system(...)
        return (os.system, (f"touch {self.marker}",))


def test_malicious_state_pt_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "state.pt"
    torch.save({"step": 1, "payload": _Evil(marker)}, evil)
    with pytest.raises(ValueError, match="refused to load"):
        load_train_state(evil)
    assert not marker.exists()
    # planted in a real run, resuming refuses it with one line and runs nothing
    run = train(toy_config(), tmp_path / "run", progress=False)
    os.replace(evil, run / "checkpoints" / "step-000004" / "state.pt")
    ckpt = run / "checkpoints" / "step-000004"  # the manifest re-written to match: a whole, planted checkpoint
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["state.pt"] = (ckpt / "state.pt").stat().st_size
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="refused to load"):
        train(toy_config(steps=6), run, resume=True, progress=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.update(extra=1), "unknown config section"),
        (lambda d: d["train"].update(lr="fast"), r"TrainConfig.lr must be float"),
        (lambda d: d["train"].update(steps=2.5), r"TrainConfig.steps must be int \| None"),
        (lambda d: d["diffusion"].update(num_timesteps=True), "num_timesteps must be int"),
        (lambda d: d["data"].update(sauce="x"), "unknown DataConfig field"),
        (lambda d: d.update(version=3), "unsupported config version"),
        (lambda d: d.update(train=[1]), "section 'train' must be a JSON object"),
    ],
)
def test_config_json_is_validated_before_anything_is_built(change, match):
    d = toy_config().to_dict()
    change(d)
    with pytest.raises(ValueError, match=match):
        RunConfig.from_dict(d)


def test_checkpoint_of_another_network_says_what_differs(tmp_path):
    a = train(toy_config(), tmp_path / "a", progress=False)
    wide = RunConfig(
        model=MLPConfig(dim=2, hidden=16),
        diffusion=toy_config().diffusion,
        data=toy_config().data,
        train=toy_config().train,
    )
    b = train(wide, tmp_path / "b", progress=False)
    with pytest.raises(ValueError, match=r"another network \(hidden 16 vs 8"):
        ddkit.load(a, checkpoint=latest_checkpoint(b))


def test_load_matching_lets_an_ignored_field_differ_and_no_other(tmp_path):
    """A consistency student may set its own dropout (no tensor depends on it): the teacher's weights
    load into it when ``ignore`` names the field, and not otherwise."""
    teacher = UNetConfig(image_size=8, in_channels=1, base_channels=8, attn_resolutions=(), dropout=0.0)
    net = build_model(teacher)
    path = tmp_path / "ema.safetensors"
    save_file(net.state_dict(), path, metadata={MODEL_METADATA: json.dumps(config_to_dict(teacher))})
    student = dataclasses.replace(teacher, dropout=0.2)
    into = build_model(student)
    with pytest.raises(ValueError, match=r"another network \(dropout 0.0 vs 0.2"):
        load_matching(into, path, config_to_dict(student))
    load_matching(into, path, config_to_dict(student), ignore=("dropout",))
    assert all(torch.equal(a, b) for a, b in zip(into.state_dict().values(), net.state_dict().values()))
    wider = dataclasses.replace(student, base_channels=16)
    with pytest.raises(ValueError, match="base_channels 8 vs 16"):
        load_matching(build_model(wider), path, config_to_dict(wider), ignore=("dropout",))


# ---- checkpoints, locks, sharding -------------------------------------------------------------
def test_incomplete_checkpoints_are_ignored_and_cleaned(tmp_path):
    run = train(toy_config(), tmp_path / "run", progress=False)
    ck = run / "checkpoints"
    (ck / ".tmp-step-000006-123").mkdir()
    (ck / ".tmp-step-000006-123" / "model.safetensors").write_bytes(b"half")
    half = ck / "step-000008"  # renamed into place, then a file cut short (say, a bad disk)
    import shutil

    shutil.copytree(ck / "step-000004", half)
    with open(half / "state.pt", "r+b") as f:
        f.truncate(10)
    assert latest_checkpoint(run).name == "step-000004"
    removed = sorted(p.name for p in clean_incomplete(run))
    assert removed == [".tmp-step-000006-123", "step-000008"]
    assert sorted(p.name for p in ck.iterdir()) == ["step-000002", "step-000004"]


def test_second_trainer_on_a_locked_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):  # a live trainer holds it
        with pytest.raises(RunLockedError):
            RunLock(run).acquire()
        assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 2
        assert "being trained by another process" in _one_error_line(capsys)
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 0  # released: free again


def test_fresh_train_over_an_existing_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 0
    assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 2
    assert "--resume" in _one_error_line(capsys)


def test_resume_refuses_contradicting_options_and_names_each(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--resume", "--out", str(run), "--steps", "2", *TOY]) == 0  # no RUN yet: from scratch
    assert (
        main(
            [
                "train",
                "--resume",
                "--out",
                str(run),
                "--steps",
                "3",
                "--lr",
                "0.1",
                "--data",
                "toy:gmm",
                "--schedule",
                "linear",
                "--model-channels",
                "16",
                "--no-progress",
            ]
        )
        == 2
    )
    err = _one_error_line(capsys)
    for option in ("--lr 0.1", "--data toy:gmm", "--schedule linear", "--model-channels 16"):
        assert option in err, err
    assert main(["train", "--resume", "--out", str(run), "--steps", "3", *TOY]) == 0  # same options: fine
    assert latest_checkpoint(run).name == "step-000003"


@pytest.mark.parametrize("n, world, batch", [(7, 2, 1), (7, 2, 2), (10, 3, 1), (100, 2, 7), (5, 1, 2)])
def test_every_rank_gets_the_same_batches_per_epoch_and_shards_never_overlap(n, world, batch):
    ranks = [ShardedBatches(n, batch, seed=4, dist=DistContext(r, world)) for r in range(world)]
    per_epoch = n // (world * batch)
    for epoch in range(3):
        seen = []
        for b in ranks:
            got = [b.next().tolist() for _ in range(per_epoch)]
            assert all(len(g) == batch for g in got) and b.epoch == epoch
            seen.append({i for g in got for i in g})
        assert sum(len(s) for s in seen) == len(set().union(*seen)) == per_epoch * world * batch
    assert {b.steps_per_epoch for b in ranks} == {per_epoch}


# ---- stopping: non-finite loss, Ctrl-C, full disk ---------------------------------------------
def _points_with_nan(n=64, bad=(5,)):
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
    x[list(bad)] = float("nan")
    return Dataset(x, None, None, (), "points", "nan-points")


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    cfg = toy_config(steps=12, batch_size=16, ckpt_every=1)
    with pytest.raises(NonFiniteLossError, match=r"not finite .* at step (\d+)") as info:
        train(cfg, tmp_path / "run", progress=False, data=_points_with_nan())
    step = int(str(info.value).split("at step ")[1].split(";")[0].split()[0])
    last = latest_checkpoint(tmp_path / "run")
    assert step >= 1 and (last is None or last.name == f"step-{step - 1:06d}")
    if last is not None:
        assert str(last) in str(info.value)
        state = load_train_state(last / "state.pt")
        assert state["step"] == step - 1
    # --skip-nonfinite: each epoch has one bad batch of four; 12 steps skip 3 or 4 of them
    run = train(
        toy_config(steps=12, batch_size=16, ckpt_every=4, skip_nonfinite=10),
        tmp_path / "skip",
        progress=False,
        data=_points_with_nan(),
    )
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    skipped = [r for r in log if "skipped_nonfinite" in r]
    assert 1 <= len(skipped) <= 4 and all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert latest_checkpoint(run).name == "step-000012"


def _start(cmd, **kw):
    return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_with_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    proc = _start(
        [sys.executable, "-m", "ddkit", "train", "--out", str(run), "--steps", "100000", "--ckpt-every", "100000", *TOY]
    )
    deadline = time.monotonic() + 300
    while not (run / "log.jsonl").exists() or len((run / "log.jsonl").read_text().splitlines()) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    lines = [line for line in err.strip().splitlines() if not line.startswith("ddkit: precision")]
    assert len(lines) == 1 and lines[0].startswith("ddkit: interrupted at step "), err
    step = int(lines[0].split("at step ")[1].split(";")[0])
    assert latest_checkpoint(run).name == f"step-{step:06d}"


@pytest.mark.slow
def test_full_disk_at_the_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    run = tmp_path / "run"
    base = [sys.executable, "-m", "ddkit", "train", "--out", str(run), *TOY]
    assert subprocess.run(base + ["--steps", "2", "--ckpt-every", "2"], env=ENV, capture_output=True).returncode == 0
    size = (run / "checkpoints" / "step-000002" / "state.pt").stat().st_size

    def small_files():  # every file this process writes is cut at size//2 bytes: "disk full"
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    r = subprocess.run(
        base + ["--steps", "4", "--ckpt-every", "2", "--resume"],
        env=ENV,
        capture_output=True,
        text=True,
        preexec_fn=small_files,
    )
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("ddkit: error")]
    assert (
        len(lines) == 1
        and "Traceback" not in r.stderr
        and "cannot write checkpoint" in lines[0]
        and "intact" in lines[0]
    ), r.stderr
    assert latest_checkpoint(run).name == "step-000002"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000002"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_run_fails_before_training(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o500)
    try:
        assert main(["train", "--out", str(run), "--steps", "2", *TOY]) == 2
        assert "cannot write" in _one_error_line(capsys)
    finally:
        run.chmod(0o700)


# ---- schedules --------------------------------------------------------------------------------
def test_schedules_that_break_the_math_are_refused():
    with pytest.raises(ValueError, match="ᾱ reaches 0 at t = 2"):
        Schedule(torch.tensor([0.1, 1.0, 0.5], dtype=torch.float64))
    ztsnr = Schedule(torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64))  # ᾱ_T = 0 only: legitimate for v
    assert ztsnr.zero_terminal_snr
    with pytest.raises(ValueError, match="zero terminal SNR"):
        ddkit.ddim_sample(lambda x, t: x, torch.zeros(2, 2), ztsnr, steps=3, spacing="trailing")
    with pytest.raises(ValueError, match="zero terminal SNR"):
        ddkit.ddpm_sample(lambda x, t: x, torch.zeros(2, 2), ztsnr)
    for solver in (ddkit.dpm_solver_sample, ddkit.unipc_sample):  # the multistep solvers share the check
        with pytest.raises(ValueError, match="zero terminal SNR"):
            solver(lambda x, t: x, torch.zeros(2, 2), ztsnr, steps=3, spacing="trailing")
    x = ddkit.ddim_sample(lambda x, t: x, torch.zeros(2, 2), ztsnr, timesteps=[1, 0])
    assert torch.isfinite(x).all()
    with pytest.raises(ValueError, match="needs prediction 'v'"):
        DiffusionConfig(schedule="linear", num_timesteps=4, beta_start=0.1, beta_end=1.0)
    assert DiffusionConfig(schedule="linear", num_timesteps=4, beta_start=0.1, beta_end=1.0, prediction="v")


# ---- bad data ---------------------------------------------------------------------------------
def _save(path: Path, mode: str, size=(12, 10), bits16=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if bits16:
        Image.fromarray((np.arange(size[0] * size[1]).reshape(size[1], size[0]) * 300).astype(np.uint16)).save(path)
    else:
        Image.new(mode, size, 128 if mode in ("L", "P") else (200, 100, 50, 255)[: len(mode)]).save(path)


def test_mixed_modes_and_sizes_load_and_16_bit_is_scaled(tmp_path):
    for i, mode in enumerate(["L", "RGB", "RGBA", "P"]):
        _save(tmp_path / "d" / f"{i}.png", mode, size=(12 + 3 * i, 10 + i))
    _save(tmp_path / "d" / "deep.png", "I;16", bits16=True)
    data = load_data(str(tmp_path / "d"), image_size=8, channels=3)
    assert data.x.shape == (5, 3, 8, 8) and data.x.min() >= -1 and data.x.max() <= 1
    deep = load_data(str(tmp_path / "d"), image_size=8, channels=1).x[4]  # sorted: 0,1,2,3,deep
    assert -1 < float(deep.mean()) < 0.5 and float(deep.std()) > 0.1  # scaled from 16 bits, not clipped white
    one = tmp_path / "one"
    _save(one / "a.png", "L")
    assert (
        main(
            [
                "train",
                "--data",
                str(one),
                "--image-size",
                "8",
                "--channels",
                "1",
                "--out",
                str(tmp_path / "r1"),
                "--steps",
                "1",
                "--model-channels",
                "8",
                "--num-timesteps",
                "20",
                "--no-progress",
            ]
        )
        == 0
    )


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: None, "does not exist"),
        (lambda d: d.mkdir(), "no images found"),
        (lambda d: (d.mkdir(), (d / "a.png").write_bytes(b"not a png")), "cannot read image"),
        (
            lambda d: (
                _save(d / "a.png", "RGB", size=(64, 64)),
                (d / "b.png").write_bytes((d / "a.png").read_bytes()[:60]),
            ),
            "cannot read image",
        ),
        (lambda d: (d.parent.mkdir(exist_ok=True), d.write_text("x")), "not a directory"),
    ],
)
def test_bad_data_folders_are_one_line_exit_2(tmp_path, capsys, make, match):
    data = tmp_path / "data"
    make(data)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "1", "--no-progress"]) == 2
    assert match in _one_error_line(capsys)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["train", "--steps", "abc"], "invalid int value"),
        (["train", "--steps", "-3"], "steps must be a positive integer"),
        (["train", "--lr", "nan"], "lr must be a positive number"),
        (["train", "--minutes", "inf"], "minutes must be a positive number"),
        (["train", "--batch-size", "100000000000"], "exceeds the examples"),
        (["train", "--seed", "-1"], "seed must be an integer"),
        (["train", "--num-timesteps", "1000000000"], "--num-timesteps must be an integer in"),
        (["train", "--model-channels", "1000000"], "--model-channels must be in"),
        (["train", "--image-size", "100000", "--data", "."], "image_size must be an integer in"),
        (["train", "--skip-nonfinite", "-1"], "--skip-nonfinite must be an integer >= 0"),
        (["train", "--dist-timeout", "0"], "--dist-timeout must be a positive number of seconds"),
        (["train", "--dist-timeout", "nan"], "--dist-timeout must be a positive number of seconds"),
        (["sample", "RUN", "--steps", "5000"], "--steps must be in [1, 50]"),
        (["sample", "RUN", "--eta", "1.5"], "--eta must be in [0, 1]"),
        (["sample", "RUN", "--eta", "nan"], "--eta must be in [0, 1]"),
        (["sample", "RUN", "--num", "0"], "--num must be a positive integer, got 0"),
        (["sample", "RUN", "--out", "MISSING/s.npz"], "does not exist"),
        (["sample", "NOTARUN"], "not a ddkit run folder"),
    ],
)
def test_bad_numbers_and_paths_are_one_line_exit_2(tmp_path, capsys, toy_run, argv, match):
    (tmp_path / "NOTARUN").mkdir()
    subs = {"RUN": str(toy_run), "NOTARUN": str(tmp_path / "NOTARUN"), "MISSING": str(tmp_path / "missing")}
    argv = [subs.get(a, a.replace("MISSING", str(tmp_path / "missing"))) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "r"), "--no-progress"]
    assert main(argv) == 2
    assert match in _one_error_line(capsys)


def test_debug_shows_the_traceback(tmp_path, capsys):
    assert main(["--debug", "sample", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("ddkit: error: ")


# toy_run: conftest.py's shared run (an MLP on toy:moons, T = 50)


# ---- property tests ---------------------------------------------------------------------------
_NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True).map(str),
    st.sampled_from(["", "abc", "1e309", "-0", "0x10", " 3"]),
)
_SAMPLE_OPTS = ["--steps", "--eta", "--num", "--batch-size", "--seed", "--sampler", "--spacing", "--out"]


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(opts=st.lists(st.tuples(st.sampled_from(_SAMPLE_OPTS), _NUMBERS), max_size=4))
def test_cli_with_generated_arguments_exits_0_or_2_never_a_traceback(toy_run, tmp_path, capsys, opts):
    argv = ["sample", str(toy_run), "--out", str(tmp_path / "s.npz")] + [x for pair in opts for x in pair]
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if code == 2:
        assert len([line for line in err.splitlines() if line.startswith("ddkit: error: ")]) == 1


@settings(max_examples=60)
@given(
    name=st.sampled_from(["ddim", "ddpm"]),
    steps=st.one_of(st.none(), st.integers(-5, 30)),
    eta=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    spacing=st.one_of(st.none(), st.sampled_from(["leading", "quadratic", "trailing", "linspace", "bogus"])),
    variance=st.one_of(st.none(), st.sampled_from(["small", "large", "bogus"])),
)
def test_samplers_with_generated_arguments_succeed_or_raise_value_error(name, steps, eta, spacing, variance):
    schedule = Schedule.linear(20)
    options = {k: v for k, v in dict(steps=steps, eta=eta, spacing=spacing, variance=variance).items() if v is not None}
    try:
        x = run_sampler(
            name,
            lambda x, t: 0.1 * x,
            torch.randn(3, 2),
            schedule,
            generator=torch.Generator().manual_seed(0),
            **options,
        )
    except ValueError:
        return
    assert x.shape == (3, 2) and torch.isfinite(x).all()
