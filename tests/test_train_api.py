"""ddkit.train(...) from Python is ddkit train: the same options, the same defaults, the same
decisions, the same config.json."""

import json

import numpy as np
import pytest
from PIL import Image

import ddkit
from ddkit.cli import main
from ddkit.training import TRAIN_OPTIONS, ResumeConflict

TINY = {"steps": 1, "model_channels": 8, "sample_every": 100, "log_every": 1}


def _folder(root):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def _argv(options: dict) -> list[str]:
    argv = ["train", "--no-progress"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


@pytest.mark.parametrize(
    "data, extra",
    [
        ("digits:train", {}),
        ("toy:moons", {"toy_size": 300, "class_cond": True}),
        ("FOLDER", {"image_size": 8, "holdout": 0.2, "schedule": "linear"}),
    ],
)
def test_python_and_cli_write_the_same_config(tmp_path, data, extra):
    if data == "FOLDER":
        data = str(_folder(tmp_path / "images"))
    options = {"data": data, **TINY, **extra}
    py = ddkit.train(out=tmp_path / "py", progress=False, **options)
    assert main(_argv({"out": tmp_path / "cli", **options})) == 0
    saved = [json.loads((run / "config.json").read_text()) for run in (py, tmp_path / "cli")]
    assert saved[0] == saved[1]
    # the default network for the data set, not UNetConfig's own (DDPM's CIFAR-10) defaults
    model = saved[0]["model"]
    assert model.get("dropout", 0.0) == 0.0 and model.get("base_channels", model.get("hidden")) == 8


def test_every_cli_option_is_a_keyword_with_the_same_default():
    from ddkit.cli import build_parser

    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    dests = {a.dest: a.default for a in train._actions if a.dest not in ("help", "no_progress")}
    assert set(dests) == {o.name for o in TRAIN_OPTIONS}
    for option in TRAIN_OPTIONS:
        assert dests[option.name] == option.default, option.name


def test_resume_refuses_what_it_may_not_change_from_python(tmp_path):
    out = ddkit.train(out=tmp_path / "run", data="toy:moons", toy_size=200, progress=False, **TINY)
    with pytest.raises(ResumeConflict, match=r"lr 0\.5 \(the run has 0\.002\)") as caught:
        ddkit.train(out=out, resume=True, lr=0.5, steps=2, progress=False)
    assert caught.value.conflicts == [("lr", 0.5, 0.002)]
    ddkit.train(out=out, resume=True, steps=2, log_every=1, progress=False)  # budget and bookkeeping may change
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 2


def test_the_cli_names_the_flags_python_names_the_parameters(tmp_path, capsys):
    out = ddkit.train(out=tmp_path / "run", data="toy:moons", toy_size=200, progress=False, **TINY)
    assert main(["train", "--out", str(out), "--resume", "--lr", "0.5"]) == 2
    assert "--resume: options contradict" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^resume: options contradict .*: lr 0\.5"):
        ddkit.train(out=out, resume=True, lr=0.5, progress=False)


def test_unknown_option_is_a_type_error():
    with pytest.raises(TypeError, match="unknown training option"):
        ddkit.train(out="x", learning_rate=1e-3)
