"""kill -9 at random moments of a real ``ddkit train`` with evaluation on (issue 15 §1), then resume:
the final weights, the best checkpoint and the logged evaluations equal an uninterrupted run's bit for
bit, and no checkpoint is left half-written. (tests/test_crash.py does the same without evaluation.)

Evaluation takes most of each step's time here (every 2 steps of a tiny UNet), so many kills land
inside one, or inside the writes of a new best (a step checkpoint, then RUN/checkpoints/best)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ddkit.training.checkpoint import latest_checkpoint, list_checkpoints, read_best

ARGS = [
    "--data",
    "digits:train",
    "--val",
    "129",
    "--eval-num",
    "129",
    "--eval-every",
    "2",
    "--model-channels",
    "8",
    "--batch-size",
    "32",
    "--num-timesteps",
    "50",
    "--dropout",
    "0.1",
    "--ckpt-every",
    "3",
    "--log-every",
    "1",
    "--sample-every",
    "100000",
    "--seed",
    "5",
    "--no-progress",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
STEPS = 10


def _train(run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ddkit", "train", "--out", str(run), "--steps", str(STEPS), *ARGS, *extra]


def _ckpt_step(run: Path) -> int:
    ckpt = latest_checkpoint(run)
    return 0 if ckpt is None else int(ckpt.name.split("-")[1])


def _evals(run: Path) -> list[tuple[int, dict]]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], {k: v for k, v in r["eval"].items() if k != "seconds"}) for r in records if "eval" in r]


def _weights(folder: Path) -> dict:
    return {name: load_file(str(folder / f"{name}.safetensors")) for name in ("model", "ema")}


def _assert_same(a: dict, b: dict) -> None:
    for name in a:
        assert a[name].keys() == b[name].keys()
        assert all(torch.equal(a[name][k], b[name][k]) for k in a[name]), name


@pytest.mark.slow
def test_sigkill_with_evaluation_on_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    done = subprocess.run(_train(ref), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run, rng, kills = tmp_path / "run", random.Random(20251202), []
    for _ in range(3):
        start = _ckpt_step(run)
        proc = subprocess.Popen(_train(run, "--resume"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while _ckpt_step(run) <= start and proc.poll() is None:  # this process has trained and saved once
            assert time.monotonic() < deadline, "training made no progress"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        names = [p.name for p in (run / "checkpoints").iterdir()]
        kills.append((_ckpt_step(run), sorted(n for n in names if n.startswith(".tmp-"))))
    assert kills and kills[-1][0] < STEPS, kills
    done = subprocess.run(_train(run, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    print(f"kills (checkpoint step, temporary folders left): {kills}")
    _assert_same(_weights(latest_checkpoint(ref)), _weights(latest_checkpoint(run)))
    assert read_best(run)["step"] == read_best(ref)["step"] and read_best(run)["score"] == read_best(ref)["score"]
    _assert_same(_weights(ref / "checkpoints" / "best"), _weights(run / "checkpoints" / "best"))
    assert _evals(run) == _evals(ref)  # every evaluation once, with the same scores
    assert [s for s, _ in _evals(ref)] == list(range(2, STEPS + 1, 2))
    names = [p.name for p in (run / "checkpoints").iterdir()]
    assert not [n for n in names if n.startswith((".tmp-", ".trash-"))], names
    assert len(list_checkpoints(run)) + 1 == len(names)  # the step checkpoints and best
