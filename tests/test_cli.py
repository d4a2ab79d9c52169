"""The command line end to end, on tiny models (in-process through ``main``, plus real
subprocesses for exit codes and torchrun)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ddkit.cli import main

# the settings of conftest.py's shared runs (digits_run, cond_run, toy_run), for the runs a test trains itself
TINY = ["--model-channels", "8", "--batch-size", "32", "--ckpt-every", "2", "--sample-every", "100", "--no-progress"]


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: "), err
    assert "Traceback" not in err
    return err


def test_train_writes_a_run(digits_run):
    assert (digits_run / "config.json").is_file()
    assert (digits_run / "checkpoints" / "step-000003" / "ema.safetensors").is_file()
    assert (digits_run / "samples" / "step-000003.png").is_file()


@pytest.mark.slow
def test_resume_continues_to_a_larger_budget(digits_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    assert main(["train", "--out", str(run), "--resume", "--steps", "5", "--no-progress"]) == 0
    assert (run / "checkpoints" / "step-000005").is_dir()
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]


def test_sample_npz_and_grid(digits_run, tmp_path, capsys):
    out, grid = tmp_path / "s.npz", tmp_path / "g.png"
    assert (
        main(
            [
                "sample",
                str(digits_run),
                "--num",
                "10",
                "--steps",
                "4",
                "--batch-size",
                "4",
                "--out",
                str(out),
                "--grid",
                str(grid),
            ]
        )
        == 0
    )
    data = np.load(out)
    assert set(data.files) == {"images"}
    images = data["images"]
    assert images.dtype == np.uint8 and images.shape == (10, 8, 8, 1)
    assert Image.open(grid).size[0] >= 4 * 32
    # reproducible for a seed, different for another
    again = tmp_path / "t.npz"
    main(["sample", str(digits_run), "--num", "10", "--steps", "4", "--batch-size", "4", "--out", str(again)])
    assert np.array_equal(np.load(again)["images"], images)
    main(["sample", str(digits_run), "--num", "10", "--steps", "4", "--seed", "1", "--out", str(again)])
    assert not np.array_equal(np.load(again)["images"], images)


@pytest.mark.slow
def test_sample_ddpm_no_ema_and_checkpoint(digits_run, tmp_path):
    out = tmp_path / "s.npz"
    ckpt = digits_run / "checkpoints" / "step-000002"
    assert (
        main(
            [
                "sample",
                str(digits_run),
                "--sampler",
                "ddpm",
                "--num",
                "2",
                "--no-ema",
                "--checkpoint",
                str(ckpt),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert np.load(out)["images"].shape == (2, 8, 8, 1)


def test_class_conditional_run_writes_labels(cond_run, tmp_path):
    out = tmp_path / "s.npz"
    assert main(["sample", str(cond_run), "--num", "12", "--steps", "2", "--out", str(out)]) == 0
    data = np.load(out)
    assert data["labels"].dtype == np.int64 and data["labels"].tolist() == [i % 10 for i in range(12)]
    assert data["images"].shape == (12, 8, 8, 1)


@pytest.mark.slow
def test_toy_run_writes_points(tmp_path):
    run = tmp_path / "toy"
    assert (
        main(
            [
                "train",
                "--data",
                "toy:swissroll",
                "--out",
                str(run),
                "--steps",
                "2",
                "--batch-size",
                "64",
                "--loss-weighting",
                "min-snr",
                "--snr-gamma",
                "3",
                "--no-progress",
            ]
        )
        == 0
    )
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["loss_weighting"], saved["snr_gamma"]) == ("min-snr", 3.0)
    out = tmp_path / "p.npz"
    assert (
        main(["sample", str(run), "--num", "50", "--steps", "3", "--out", str(out), "--grid", str(tmp_path / "p.png")])
        == 0
    )
    assert np.load(out)["points"].shape == (50, 2)


@pytest.mark.slow
def test_image_folder_with_classes(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(20):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--image-size",
                "16",
                "--channels",
                "3",
                "--out",
                str(run),
                "--steps",
                "1",
                "--class-cond",
                "--model-channels",
                "16",
                "--batch-size",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--num", "3", "--steps", "2", "--out", str(out)]) == 0
    assert np.load(out)["images"].shape == (3, 16, 16, 3)


@pytest.mark.slow
def test_default_batch_fits_a_small_image_folder(tmp_path, capsys):
    root = tmp_path / "few"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(root / f"{i}.png")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--image-size",
                "8",
                "--channels",
                "1",
                "--out",
                str(run),
                "--steps",
                "2",
                "--model-channels",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "training with batches of 12" in capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["train"]["batch_size"] == 12
    # a batch the user asks for is not changed: too large is a one-line error
    assert (
        main(
            [
                "train",
                "--data",
                str(root),
                "--image-size",
                "8",
                "--channels",
                "1",
                "--out",
                str(tmp_path / "r2"),
                "--steps",
                "1",
                "--batch-size",
                "64",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "use --batch-size <= 12" in capsys.readouterr().err


@pytest.mark.parametrize(
    "setup, args, needle",
    [
        (None, ["train", "--data", "/nonexistent/folder", "--steps", "1"], "/nonexistent/folder"),
        ("empty", ["train", "--data", "{d}", "--steps", "1"], "no images"),
        ("corrupt", ["train", "--data", "{d}", "--steps", "1"], "broken.png"),
        (None, ["train", "--data", "toy:spiral", "--steps", "1"], "allowed: gmm, moons, swissroll, circles"),
        (None, ["train", "--steps", "0"], "steps must be a positive integer"),
        (None, ["train", "--lr", "abc"], "invalid float value"),
        (None, ["train", "--device", "tpu"], "invalid choice"),
        (None, ["sample", "/nonexistent/run"], "does not exist"),
        ("run", ["sample", "{d}", "--eta", "2"], "--eta must be in [0, 1]"),
        ("run", ["sample", "{d}", "--sampler", "consistency", "--gamma", "2"], "--gamma must be in [0, 1]"),
        ("run", ["sample", "{d}", "--gamma", "0"], "--sampler ddim does not take --gamma"),
        ("run", ["sample", "{d}", "--steps", "5000"], "--steps must be in [1, 1000]"),
        ("run", ["sample", "{d}", "--out", "x.txt"], ".npz"),
        ("run", ["sample", "{d}", "--checkpoint", "/nope"], "no checkpoint at /nope"),
        (None, ["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, digits_run, setup, args, needle):
    d = tmp_path / "d"
    if setup == "empty":
        d.mkdir()
    elif setup == "corrupt":
        d.mkdir()
        Image.new("L", (8, 8)).save(d / "fine.png")
        (d / "broken.png").write_bytes(b"not an image at all")
    elif setup == "run":
        d = digits_run
    args = [a.replace("{d}", str(d)) for a in args]
    assert main(args) == 2
    assert needle in _error_line(capsys)


@pytest.mark.slow
def test_subprocess_exit_code_and_help(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "ddkit", "train", "--data", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "ddkit", "sample", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--no-ema" in r.stdout and "--checkpoint" in r.stdout


def _torchrun_train(tmp_path, name: str, *args: str) -> None:
    """``ddkit train ARGS`` on two processes (``--standalone``: a free port, where fixed ones could
    collide), with no restarts: any worker that fails fails the test. The workers' output goes to a
    file (a pipe can be held open by a lingering grandchild); PYTHONFAULTHANDLER makes a worker
    killed by a signal print its Python stacks there, and a failure shows that output without the
    agent's traceback. (Recovery by restart is tests/test_crash.py's.)"""
    err = tmp_path / f"{name}.err"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts=0"]
    with open(err, "w") as log:
        r = subprocess.run(
            [sys.executable, *launch, "-m", "ddkit", "train", *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            timeout=600,
        )
    text = err.read_text()
    workers = "\n".join(line for line in text.splitlines() if "torch/distributed/elastic" not in line)
    assert r.returncode == 0, workers[-6000:]


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu(tmp_path):
    run = tmp_path / "ddp"
    _torchrun_train(tmp_path, "first", "--out", str(run), "--steps", "4", *TINY)
    assert (run / "checkpoints" / "step-000004" / "model.safetensors").is_file()
    import torch

    state = torch.load(run / "checkpoints" / "step-000004" / "state.pt", weights_only=True)
    assert len(state["ranks"]) == 2  # each rank's own data position and generators
    assert state["ranks"][0]["gen"].tolist() != state["ranks"][1]["gen"].tolist()
    # resume with two processes continues from the same checkpoint; --ckpt-minutes (a resume may
    # change it) is overdue after every step, so both ranks agree to save step 5 (--ckpt-every is 2)
    _torchrun_train(
        tmp_path, "resumed", "--out", str(run), "--resume", "--steps", "6", "--ckpt-minutes", "1e-9", "--no-progress"
    )
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000005", "step-000006"]
