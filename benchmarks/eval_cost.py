"""The cost of evaluation during training (issue 15 §1): the share of a run's time that evaluating
on the validation part takes, at a cadence.

One real ``ddkit.train`` run of the default digits recipe (``digits:train``, the default network
and batch) with ``--val 200 --eval-every N``. In the same process the trainer's ``train_step`` and
``_evaluate`` are timed (wall clock and this process's CPU time): ``_evaluate`` is everything an
evaluation costs (the samples, FID/KID, memorisation, the loss bands, log.jsonl, RUN/val.png, the
step checkpoint and RUN/checkpoints/best of a new best). Steps and evaluations interleave, so the
load of other processes hits both alike; the CPU-time share is the one to trust on a busy machine.

    python benchmarks/eval_cost.py                          # 1,200 steps, evaluated every 200
    python benchmarks/eval_cost.py --steps 400 --threads 1  # quicker; the share per cadence is the same
    python benchmarks/eval_cost.py --json cost.json

Printed: seconds per step and per evaluation (wall and CPU), the evaluation's own breakdown (the
``seconds`` of its log record), the share of the run (evaluation / everything else) at the cadence
used, and the share it would have at other cadences (per-evaluation cost over that many steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import ddkit
from ddkit.training.trainer import Trainer


class Timer:
    """Wall and process-CPU seconds of each call of a method."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def wrap(self, fn):
        def timed(*args, **kwargs):
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall.append(time.perf_counter() - w)
                self.cpu.append(time.process_time() - c)

        return timed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--val", type=int, default=200)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", default=None, help="the run folder (default: a temporary one)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, evals = Timer(), Timer()
    Trainer.train_step = steps.wrap(Trainer.train_step)
    Trainer._evaluate = evals.wrap(Trainer._evaluate)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or Path(tmp) / "run")
        w, c = time.perf_counter(), time.process_time()
        ddkit.train(
            out=out, data="digits:train", val=args.val, eval_every=args.eval_every, steps=args.steps, progress=False
        )
        total_wall, total_cpu = time.perf_counter() - w, time.process_time() - c
        records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    own = [r["eval"]["seconds"] for r in records if "eval" in r]
    n_eval = len(evals.wall)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "steps": args.steps,
        "eval_every": args.eval_every,
        "evaluations": n_eval,
        "total_wall_s": total_wall,
        "total_cpu_s": total_cpu,
        "step_wall_s": statistics.median(steps.wall),
        "step_cpu_s": statistics.median(steps.cpu),
        "eval_wall_s": statistics.median(evals.wall),
        "eval_cpu_s": statistics.median(evals.cpu),
        "eval_record_s": statistics.median(own),
        "share_wall": sum(evals.wall) / (total_wall - sum(evals.wall)),
        "share_cpu": sum(evals.cpu) / (total_cpu - sum(evals.cpu)),
    }
    print(f"{result['machine']}; {args.steps} steps, {n_eval} evaluations (every {args.eval_every} and the last)")
    print(f"  one step:        {result['step_wall_s']:.3f} s wall, {result['step_cpu_s']:.3f} s CPU (median)")
    print(
        f"  one evaluation:  {result['eval_wall_s']:.2f} s wall, {result['eval_cpu_s']:.2f} s CPU (median; "
        f"the sampling and scoring alone: {result['eval_record_s']:.2f} s wall)"
    )
    print(
        f"  whole run:       {total_wall:.0f} s wall, {total_cpu:.0f} s CPU; evaluation / the rest: "
        f"{100 * result['share_wall']:.1f} % wall, {100 * result['share_cpu']:.1f} % CPU"
    )
    for every in (50, 100, 200, 400):
        share = result["eval_cpu_s"] / (every * result["step_cpu_s"])
        print(f"  every {every:>3} steps: about {100 * share:.1f} % (CPU, one evaluation per {every} steps)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
