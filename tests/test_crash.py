"""kill -9 at random moments of a real ``ddkit train`` (one process, and one worker of a 2-process
torchrun with --max-restarts), then resume: nothing is lost beyond --ckpt-every steps, no checkpoint
is left half-written, and the final weights and EMA equal an uninterrupted run's bit for bit.

The test chooses where each kill lands, whatever the machine's speed: the process runs under
tests/pause_at.py, stops itself at a chosen call (a training step, or a flush inside a checkpoint
write, which leaves a ``.tmp-*`` folder behind) and is killed there. Subprocesses run
single-threaded (OMP_NUM_THREADS=1): the same arithmetic in every run."""

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

import pause_at
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


def _kill_point(rng: random.Random) -> str:
    """Where one process stops to be killed, counted from its start (it resumes at a checkpoint, so
    its first checkpoint comes CKPT_EVERY steps later): before its 3rd to 6th training step (between
    checkpoints), or at one of the six flushes of its second checkpoint (five inside the ``.tmp-*``
    folder, one after the rename)."""
    if rng.random() < 0.5:
        return f"ddkit.training.trainer:Trainer.train_step:{rng.randint(CKPT_EVERY + 1, 3 * CKPT_EVERY)}:before"
    return f"ddkit.training.checkpoint:_fsync:{rng.randint(7, 12)}:before"


@pytest.mark.slow
def test_sigkill_at_chosen_points_then_resume_is_bit_identical(tmp_path):
    steps = 60  # more than 10 processes of at most 2·CKPT_EVERY steps reach
    ref = tmp_path / "ref"
    subprocess.run(_train(ref, steps), env=ENV, check=True, capture_output=True, timeout=600)
    run, rng, kills, arm = tmp_path / "run", random.Random(20250101), [], tmp_path / "arm"
    for _ in range(10):
        start = _ckpt_step(run)
        arm.touch()
        args = _train(run, steps, "--resume")[3:]  # without "python -m ddkit"
        proc = subprocess.Popen(
            pause_at.command(arm, [_kill_point(rng)], args),
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pause_at.kill_paused(proc)
        in_write = any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
        reached, saved = _logged_step(run), _ckpt_step(run)
        kills.append((reached, saved, in_write))
        assert saved > start, kills  # every process saved once before its kill
        assert 0 <= reached - saved <= CKPT_EVERY, kills  # at most --ckpt-every steps lost
    assert kills[-1][1] < steps
    # the same command once more finishes the run (and cleans what the last kill left)
    done = subprocess.run(_train(run, steps, "--resume"), env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_weights(ref, run)
    _assert_clean(run)
    print(f"kills (logged step, checkpoint step, inside a write): {kills}")
    assert sum(k[2] for k in kills) >= 1, kills  # some kills landed inside a checkpoint write
    assert sum(k[0] > k[1] for k in kills) >= 1, kills  # and some between two checkpoints


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


def _torchrun(run: Path, steps: int, *extra: str, pause: tuple[Path, str] | None = None) -> list[str]:
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
        *(pause_at.command(pause[0], [pause[1]], [])[1:] if pause else ["-m", "ddkit"]),  # the script, not python
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


@pytest.mark.slow
def test_torchrun_worker_killed_group_restarts_and_resumes(tmp_path):
    steps = 40
    ref = tmp_path / "ref"
    # stderr to a file, not a pipe: a lingering grandchild holding a pipe open makes run() wait for ever
    with open(tmp_path / "ref.err", "w") as ref_log:
        r = subprocess.run(_torchrun(ref, steps), env=ENV, stdout=subprocess.DEVNULL, stderr=ref_log, timeout=600)
    assert r.returncode == 0, (tmp_path / "ref.err").read_text()[-2000:]
    run, arm = tmp_path / "run", tmp_path / "arm"
    arm.touch()  # rank 0 (which alone writes checkpoints) pauses once its third one (step 6) is in place
    pause = (arm, "ddkit.training.trainer:save_checkpoint:3:after")
    log = open(tmp_path / "torchrun.err", "w")  # a file, not a pipe: nothing can hold it open after exit
    proc = subprocess.Popen(
        _torchrun(run, steps, pause=pause), env=ENV, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
    )
    try:
        _wait_for(lambda: len(_children(proc.pid)) == 2, proc)
        workers = _children(proc.pid)
        paused = lambda: [w for w in workers if pause_at.process_state(w) in ("T", "t")]  # noqa: E731
        _wait_for(lambda: paused(), proc)
        assert proc.poll() is None, "torchrun ended before the pause"
        (rank0,) = paused()  # rank 0 alone writes checkpoints, so it alone pauses
        (rank1,) = [w for w in workers if w != rank0]
        lost_from = _logged_step(run)
        os.kill(rank1, signal.SIGKILL)  # waiting for rank 0 at the barrier after the save
        os.kill(rank0, signal.SIGCONT)  # rank 0 goes on, and meets its dead peer
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
    assert lost_from == 6 and not arm.exists()  # the kill landed where the test chose: after step 6's checkpoint
    _assert_same_weights(ref, run)
    _assert_clean(run)
