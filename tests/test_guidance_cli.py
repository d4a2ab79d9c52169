"""Guidance from the command line on tiny models: labels, classifier-free guidance, a noisy
classifier from ``ddkit train-classifier``, autoguidance by a kept early checkpoint, and the
one-line errors."""

import json

import numpy as np
import pytest
import torch

import ddkit
from ddkit.cli import main
from ddkit.nn import NoisyClassifier

TINY = ["--model-channels", "8", "--batch-size", "32", "--log-every", "1", "--no-progress"]
SAMPLE = ["--num", "10", "--steps", "3", "--batch-size", "4"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny tensors run faster on one thread


@pytest.fixture(scope="module")
def runs(tmp_path_factory, digits_run):
    root = tmp_path_factory.mktemp("guidance_cli")
    r = {name: root / name for name in ("cond", "cls", "cls_linear", "cls16")}
    r["uncond"] = digits_run  # conftest.py's shared run
    assert (
        main(
            [
                "train",
                "--out",
                str(r["cond"]),
                "--steps",
                "3",
                "--class-cond",
                "--keep-checkpoints",
                "1",
                "--keep-step",
                "1",
                "--ckpt-every",
                "1",
                "--sample-every",
                "100",
                *TINY,
            ]
        )
        == 0
    )
    assert main(["train-classifier", "--out", str(r["cls"]), "--steps", "2", "--sample-every", "2", *TINY]) == 0
    assert main(["train-classifier", "--out", str(r["cls_linear"]), "--steps", "1", "--schedule", "linear", *TINY]) == 0
    assert (
        main(
            [
                "train-classifier",
                "--out",
                str(r["cls16"]),
                "--steps",
                "1",
                "--image-size",
                "16",
                "--data",
                "digits",
                *TINY,
            ]
        )
        == 0
    )
    return r


def _sample(run, tmp_path, *args) -> dict:
    out = tmp_path / f"s{len(list(tmp_path.iterdir()))}.npz"
    assert main(["sample", str(run), *SAMPLE, "--out", str(out), *args]) == 0
    with np.load(out) as f:
        return dict(f)


def _error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ddkit: error: "), err
    return err


def test_keep_step_survives_pruning(runs):
    kept = sorted(p.name for p in (runs["cond"] / "checkpoints").iterdir())
    assert kept == ["step-000001", "step-000003"]
    assert ddkit.training.config.RunConfig.load(runs["cond"] / "config.json").train.keep_steps == (1,)


def test_classifier_run_records_shape_schedule_and_banded_accuracy(runs):
    cfg = json.loads((runs["cls"] / "config.json").read_text())
    assert cfg["model"]["kind"] == "classifier"
    assert (cfg["model"]["image_size"], cfg["model"]["in_channels"], cfg["model"]["num_classes"]) == (8, 1, 10)
    assert cfg["diffusion"]["schedule"] == "cosine" and cfg["diffusion"]["num_timesteps"] == 1000
    records = [json.loads(l) for l in (runs["cls"] / "log.jsonl").read_text().splitlines()]
    acc = [r for r in records if "heldout_accuracy" in r]
    assert len(acc) == 1 and acc[0]["heldout"] == "digits:test" and acc[0]["heldout_size"] == 500
    assert list(acc[0]["heldout_accuracy"]) == ["0-249", "250-499", "500-749", "750-999"]
    model, schedule, _ = ddkit.load(runs["cls"])
    assert isinstance(model, NoisyClassifier)
    assert model(torch.zeros(3, 1, 8, 8), torch.tensor([0, 500, 999])).shape == (3, 10)


@pytest.mark.slow
def test_classifier_resume_continues(runs, tmp_path):
    import shutil

    run = tmp_path / "cls"
    shutil.copytree(runs["cls"], run)
    assert main(["train-classifier", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert (run / "checkpoints" / "step-000003").is_dir()


def test_label_and_labels_all_fill_the_npz(runs, tmp_path):
    assert (_sample(runs["cond"], tmp_path, "--label", "3")["labels"] == 3).all()
    assert (_sample(runs["cond"], tmp_path, "--labels", "all")["labels"] == np.arange(10) % 10).all()


def test_cfg_options(runs, tmp_path):
    plain = _sample(runs["cond"], tmp_path)
    assert np.array_equal(plain["images"], _sample(runs["cond"], tmp_path, "--guidance-scale", "1")["images"])
    guided = _sample(runs["cond"], tmp_path, "--guidance-scale", "300")
    assert not np.array_equal(plain["images"], guided["images"])
    narrowed = _sample(
        runs["cond"],
        tmp_path,
        "--guidance-scale",
        "300",
        "--guidance-interval",
        "0",
        "400",
        "--guidance-rescale",
        "0.7",
    )
    assert not np.array_equal(narrowed["images"], guided["images"])


def test_classifier_guidance_on_unconditional_and_conditional_runs(runs, tmp_path):
    plain = _sample(runs["uncond"], tmp_path)
    assert "labels" not in plain
    guided = _sample(
        runs["uncond"], tmp_path, "--classifier", str(runs["cls"]), "--classifier-scale", "50", "--labels", "all"
    )
    assert (guided["labels"] == np.arange(10) % 10).all()
    assert not np.array_equal(plain["images"], guided["images"])
    both = _sample(
        runs["cond"],
        tmp_path,
        "--classifier",
        str(runs["cls"]),
        "--classifier-scale",
        "50",
        "--guidance-scale",
        "2",
        "--label",
        "7",
    )
    assert (both["labels"] == 7).all()


def test_autoguidance_by_an_early_checkpoint(runs, tmp_path):
    weak = runs["cond"] / "checkpoints" / "step-000001"
    plain = _sample(runs["cond"], tmp_path)
    assert np.array_equal(plain["images"], _sample(runs["cond"], tmp_path, "--guide-with", str(weak))["images"])
    auto = _sample(runs["cond"], tmp_path, "--guide-with", str(weak), "--guidance-scale", "300")
    assert not np.array_equal(plain["images"], auto["images"])
    _sample(runs["uncond"], tmp_path, "--guide-with", str(runs["uncond"]), "--guidance-scale", "1.5")


@pytest.mark.parametrize(
    "run, args, needle",
    [
        ("cond", ["--label", "10"], "--label must be in [0, 9], got 10"),
        ("uncond", ["--label", "1"], "need a class-conditional run or a --classifier"),
        ("uncond", ["--guidance-scale", "2"], "--guidance-scale 2 needs labels"),
        ("cond", ["--guidance-scale", "-1"], "--guidance-scale must be a finite number >= 0"),
        ("cond", ["--guidance-interval", "800", "100"], "--guidance-interval must satisfy 0 <= t_lo <= t_hi <= 999"),
        ("cond", ["--guidance-interval", "0", "1000"], "--guidance-interval must satisfy 0 <= t_lo <= t_hi <= 999"),
        ("cond", ["--guidance-rescale", "2"], "--guidance-rescale must be in [0, 1]"),
        ("uncond", ["--guidance-interval", "0", "10"], "apply to classifier-free guidance"),
        ("uncond", ["--classifier-scale", "2"], "--classifier-scale needs --classifier"),
        ("uncond", ["--classifier", "{cls}", "--classifier-scale", "-2"], "--classifier-scale must be a finite"),
        ("uncond", ["--classifier", "{cls_linear}"], "another schedule"),
        ("uncond", ["--classifier", "{cls16}"], "image size 16 but the run has 8"),
        ("uncond", ["--classifier", "{uncond}"], "is not a classifier run"),
        ("uncond", ["--guide-with", "{cond}/checkpoints", "--guidance-scale", "2"], "not a run folder"),
        ("uncond", ["--guide-with", "{cls}", "--guidance-scale", "2"], "is a classifier run"),
    ],
)
def test_bad_guidance_options_are_one_line_and_exit_2(runs, tmp_path, capsys, run, args, needle):
    args = [a.format(**{k: str(v) for k, v in runs.items()}) for a in args]
    assert main(["sample", str(runs[run]), *SAMPLE, "--out", str(tmp_path / "x.npz"), *args]) == 2
    assert needle in _error_line(capsys)


@pytest.mark.slow
def test_weak_model_of_another_size_is_refused(runs, tmp_path, capsys):
    other = tmp_path / "other16"
    assert main(["train", "--out", str(other), "--steps", "1", "--image-size", "16", *TINY]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "sample",
                str(runs["uncond"]),
                *SAMPLE,
                "--out",
                str(tmp_path / "x.npz"),
                "--guide-with",
                str(other),
                "--guidance-scale",
                "2",
            ]
        )
        == 2
    )
    assert "image size 16 but the run has 8" in _error_line(capsys)
