"""kill -9 at random moments of a real ``ddkit train`` (one process, and one worker of a 2-process
torchrun with --max-restarts), then resume: nothing is lost beyond --ckpt-every steps, no checkpoint
is left half-written, and the final weights and EMA equal an uninterrupted run's bit for bit.

No test hooks: checkpoints are written every 2 steps of a tiny MLP, so a checkpoint write is most of
each step's time and many of the kills land inside one (each is counted: a ``.tmp-*`` folder left
behind). Subprocesses run single-threaded (OMP_NUM_THREADS=1): the same arithmetic in every run."""

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

from ddkit.training.checkpoint import latest_checkpoint, list_checkpoints

CKPT_EVERY = 2
ARGS = [
    "--data",
    "toy:moons",
    "--model-channels",
    "8",
    "--batch-size",
    "32",
    "--ckpt-every",
    str(CKPT_EVERY),
    "--log-every",
    "1",
    "--sample-every",
    "100000",
    "--num-timesteps",
    "50",
    "--seed",
    "5",
    "--no-progress",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train(run: Path, steps: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ddkit", "train", "--out", str(run), "--steps", str(steps), *ARGS, *extra]


def _ckpt_step(run: Path) -> int:
    ckpt = latest_checkpoint(run)
    return 0 if ckpt is None else int(ckpt.name.split("-")[1])


def _logged_step(run: Path) -> int:
    step = 0
    path = run / "log.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            step = json.loads(line).get("step", step)
        except json.JSONDecodeError:
            break
    return step


def _wait_for(cond, proc, timeout=300.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond() and proc.poll() is None:
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)


def _assert_same_weights(a: Path, b: Path) -> None:
    ca, cb = latest_checkpoint(a), latest_checkpoint(b)
    assert ca.name == cb.name
    for name in ("model", "ema"):
        wa, wb = load_file(str(ca / f"{name}.safetensors")), load_file(str(cb / f"{name}.safetensors"))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name


def _assert_clean(run: Path) -> None:
    names = [p.name for p in (run / "checkpoints").iterdir()]
    assert not [n for n in names if n.startswith((".tmp-", ".trash-"))], names
    assert len(list_checkpoints(run)) == len(names)


def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    steps = 400  # enough that 10 kills land before the end even on a quiet, fast machine
    ref = tmp_path / "ref"
    subprocess.run(_train(ref, steps), env=ENV, check=True, capture_output=True, timeout=600)
    run, rng, kills = tmp_path / "run", random.Random(20250101), []
    for _ in range(10):
        start = _ckpt_step(run)
        proc = subprocess.Popen(
            _train(run, steps, "--resume"), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(lambda: _ckpt_step(run) > start, proc)  # this process has trained and saved once
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        in_write = any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
        reached, saved = _logged_step(run), _ckpt_step(run)
        kills.append((reached, saved, in_write))
        assert 0 <= reached - saved <= CKPT_EVERY, kills  # at most --ckpt-every steps lost
    assert len(kills) == 10, kills
    assert kills[-1][1] < steps
    # the same command once more finishes the run (and cleans what the last kill left)
    done = subprocess.run(_train(run, steps, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_weights(ref, run)
    _assert_clean(run)
    print(f"kills (logged step, checkpoint step, inside a write): {kills}")
    assert sum(k[2] for k in kills) >= 1, kills  # some kills landed inside a checkpoint write


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def _torchrun(run: Path, steps: int, *extra: str) -> list[str]:
    # --standalone: a c10d rendezvous on a free port (the static one of --master_port does not restart).
    # Every restarted group shares the agent's TCPStore; ddkit keys each attempt apart
    # (training.distributed.init_distributed), so the restarted gloo group never reads a killed
    # worker's address. --dist-timeout turns a hang, should one still happen, into a failure after 60 s
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "--max-restarts=3",
        "-m",
        "ddkit",
        "train",
        "--out",
        str(run),
        "--steps",
        str(steps),
        "--dist-timeout",
        "60",
        *ARGS,
        *extra,
    ]


def test_torchrun_worker_killed_group_restarts_and_resumes(tmp_path):
    steps = 40
    ref = tmp_path / "ref"
    # stderr to a file, not a pipe: a lingering grandchild holding a pipe open makes run() wait for ever
    with open(tmp_path / "ref.err", "w") as ref_log:
        r = subprocess.run(_torchrun(ref, steps), env=ENV, stdout=subprocess.DEVNULL, stderr=ref_log, timeout=600)
    assert r.returncode == 0, (tmp_path / "ref.err").read_text()[-2000:]
    run = tmp_path / "run"
    log = open(tmp_path / "torchrun.err", "w")  # a file, not a pipe: nothing can hold it open after exit
    proc = subprocess.Popen(
        _torchrun(run, steps), env=ENV, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )
    try:
        _wait_for(lambda: _ckpt_step(run) >= 6, proc)
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        os.kill(workers[1], signal.SIGKILL)  # rank 1 (workers start in rank order)
        lost_from = _logged_step(run)
        proc.wait(timeout=420)
    except subprocess.TimeoutExpired:
        pytest.fail(
            "torchrun did not finish within 420 s of the kill: " + (tmp_path / "torchrun.err").read_text()[-2000:]
        )
    finally:
        if proc.poll() is None:  # never leave the agent or its workers running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    err = (tmp_path / "torchrun.err").read_text()
    assert proc.returncode == 0, err[-2000:]
    assert "exitcode: -9" in err, err[-2000:]  # the agent saw the killed worker, restarted, and finished
    assert lost_from < steps  # the kill landed before the end
    _assert_same_weights(ref, run)
    _assert_clean(run)
