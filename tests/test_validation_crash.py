"""kill -9 at chosen moments of a real ``ddkit train`` with evaluation on (issue 15 §1), then resume:
the final weights, the best checkpoint and the logged evaluations equal an uninterrupted run's bit for
bit, and no checkpoint is left half-written. (tests/test_crash.py does the same without evaluation.)

The kills land where the test chooses (:data:`KILL_POINTS`), whatever the machine's speed: inside
an evaluation, between a new best's step checkpoint and RUN/checkpoints/best, and inside a write."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import pause_at
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


# Where each of the three processes stops to be killed (tests/pause_at.py), each after it saved a step
# checkpoint: (1) a new best's step checkpoint is written but RUN/checkpoints/best not yet (the first
# evaluation, step 2, is always a new best); (2) inside an evaluation (step 4's: samples drawn, not
# yet scored); (3) inside the second checkpoint write of the third process (a step checkpoint or a
# best, its files and manifest written, not yet renamed into place: a complete ``.tmp-*`` folder).
KILL_POINTS = [
    "ddkit.training.selection:ModelSelection.save_best:1:before",
    "ddkit.training.validation:Validator._scores:1:before",
    "ddkit.training.checkpoint:_write_checkpoint_files:2:after",
]


@pytest.mark.slow
def test_sigkill_with_evaluation_on_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref"
    done = subprocess.run(_train(ref), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    run, arm, kills = tmp_path / "run", tmp_path / "arm", []
    for point in KILL_POINTS:
        start = _ckpt_step(run)
        arm.touch()
        cmd = pause_at.command(arm, [point], _train(run, "--resume")[3:])  # without "python -m ddkit"
        proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pause_at.kill_paused(proc)
        names = [p.name for p in (run / "checkpoints").iterdir()]
        best = read_best(run)
        kills.append((_ckpt_step(run), sorted(n for n in names if n.startswith(".tmp-")), best and best["step"]))
        assert _ckpt_step(run) > start, kills  # each process saved a step checkpoint before its kill
    print(f"kills (checkpoint step, temporary folders left, best step): {kills}")
    assert kills[0] == (2, [], None), kills  # a new best's step checkpoint without its best
    assert kills[1] == (3, [], 2), kills  # the resume wrote that best; then killed inside step 4's evaluation
    assert kills[2][1] and kills[2][0] < STEPS, kills  # a complete checkpoint folder not yet in place
    done = subprocess.run(_train(run, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same(_weights(latest_checkpoint(ref)), _weights(latest_checkpoint(run)))
    assert read_best(run)["step"] == read_best(ref)["step"] and read_best(run)["score"] == read_best(ref)["score"]
    _assert_same(_weights(ref / "checkpoints" / "best"), _weights(run / "checkpoints" / "best"))
    assert _evals(run) == _evals(ref)  # every evaluation once, with the same scores
    assert [s for s, _ in _evals(ref)] == list(range(2, STEPS + 1, 2))
    names = [p.name for p in (run / "checkpoints").iterdir()]
    assert not [n for n in names if n.startswith((".tmp-", ".trash-"))], names
    assert len(list_checkpoints(run)) + 1 == len(names)  # the step checkpoints and best
