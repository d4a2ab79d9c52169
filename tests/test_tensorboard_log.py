"""ddkit train --log-to tensorboard: event files in RUN/tensorboard, read back with tensorboard's reader."""

import json
import sys

import pytest

from ddkit.cli import main

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


@pytest.mark.slow
def test_train_logs_scalars_and_sample_grids(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--steps", "4", "--batch-size", "16", "--model-channels", "8",
                 "--log-every", "2", "--sample-every", "2", "--log-to", "tensorboard", "--no-progress",
                 "--num-timesteps", "50"]) == 0  # fmt: skip
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/lr", "train/images_per_s"} <= set(tags["scalars"])
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    for name in ("loss", "lr"):
        events = acc.Scalars(f"train/{name}")
        assert [e.step for e in events] == [r["step"] for r in log] == [2, 4]
        assert [e.value for e in events] == pytest.approx([r[name] for r in log], rel=1e-6)
    images = acc.Images("samples")
    assert [e.step for e in images] == [2, 4] and images[0].width > 0 and images[0].height > 0
    assert json.loads((run / "config.json").read_text())["train"]["log_to"] == "tensorboard"


def test_missing_tensorboard_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails
    monkeypatch.delitem(sys.modules, "torch.utils.tensorboard", raising=False)
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "run"),
                "--steps",
                "1",
                "--model-channels",
                "8",
                "--log-to",
                "tensorboard",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install ddkit[tensorboard]" in err
