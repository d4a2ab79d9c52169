"""The recipe study of issue 24 (§2), and the data for judging the selection rules (§1).

Every run trains on digits:train with two parts carved out of it and never trained on:

    digits:train (1,297)
    ├── heldout   --holdout 0.25, --holdout-seed 0 (324 digits, the same for every run): scores the
    │             checkpoint each selection rule picks; never used for training nor for selection
    └── the rest
        ├── val   --val 150, --val-seed = the run's seed: evaluated every --eval-every steps during
        │         training (fid, kid, loss, closer), what the rules select by
        └── train the rest (823 digits)

digits:test is never touched. Stages:

    stage 1   every recipe of RECIPES, seed 0, --steps STEPS1 (default 1200)
    stage 2   the augmentation levels (crossed with the longer budget) and the best third of stage 1
              (ranked by the fid-fresh rule on the validation part), --steps STEPS2 (default 4800),
              seeds 0, 1, 2 (each seed also draws its own validation part); seed 0 of every recipe
              first, then seed 1, then seed 2

Each run keeps the checkpoint of every evaluation step (``--keep-step``). When it has trained, every
evaluated checkpoint is scored afterwards (``--score-num`` samples, DPM-Solver++ 10 steps, start
noise from seed 10,000 + seed, so not the validation samples): FID against the held-out part in the
digits feature space and closer-than-real against the run's training part (the share of samples
nearer a training digit than the held-out digits are: fresh 0.5, copies 1). From the same
checkpoints, the validation samples (seed = the run's seed, as training drew them) give Gu et al.'s
(2023) memorisation ratio: the share of samples whose nearest training digit is under 1/3 of the
distance to the second nearest. Then the step checkpoints are deleted (the numbers stay) and the
run's record is appended to the JSON results file: its evaluations with both scorings and the
step each selection rule (RULES) picks.

Resuming: run the same command again. Runs in the results file are skipped; every other run is
trained with ``ddkit train --resume`` (a killed run continues from its newest checkpoint, a new one
starts afresh) unless it has trained to the end, then it is only scored. One thread per process;
start the same command twice to train two runs at a time: each process claims the first run that
no other live process holds (RUNS/NAME.lock, with its pid) and the results file is appended under a
lock:

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup nice -n 19 python benchmarks/generalisation.py \\
        >> runs/generalisation.log 2>&1 &      # twice, for two at a time
    python benchmarks/generalisation.py --plot-only     # redraw benchmarks/generalisation.png
    python benchmarks/generalisation.py --plan          # print the runs and which are done
    python benchmarks/generalisation.py --rules         # the selection rules judged on the held-out part
    python benchmarks/generalisation.py --rules --stage 2 --upto 1200   # as if stage 2 had stopped at 1,200
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "generalisation.json"
PLOT = ROOT / "generalisation.png"
RUNS = Path("runs/generalisation")

BASE = [
    "--data", "digits:train", "--holdout", "0.25", "--holdout-seed", "0", "--val", "150", "--no-progress",
]  # fmt: skip
EDM = ["--preconditioning", "edm", "--noise-levels", "lognormal", "--loss-weighting", "edm"]
# recipe name → options over the defaults (width 32, ε-prediction, uniform t, no dropout, no
# augmentation, no weight decay, EMA 0.999)
RECIPES = {
    "default": [],
    "augment-0.15": ["--augment", "0.15"],
    "augment-0.3": ["--augment", "0.3"],
    "edm": EDM,
    "dropout-0.1": ["--dropout", "0.1"],
    "width-16": ["--model-channels", "16"],
    "width-64": ["--model-channels", "64"],
    "weight-decay-0.05": ["--weight-decay", "0.05"],
    "ema-0.99": ["--ema-decay", "0.99"],
    "ema-0.9999": ["--ema-decay", "0.9999"],
    "augment-0.15-dropout-0.1": ["--augment", "0.15", "--dropout", "0.1"],
    "augment-0.15-edm": ["--augment", "0.15", *EDM],
}
AUGMENT_LEVELS = ("default", "augment-0.15", "augment-0.3")  # always in stage 2: crossed with length
SEEDS2 = (0, 1, 2)
# the selection rules measured: name → (select, select_closer); post hoc only: gu-fresh, fid among the
# evaluations whose Gu et al. memorisation ratio is at most 0.05, else the lowest ratio; gap-fresh, fid
# among those whose relative loss gap (val − train)/val is at most 0.02, else the lowest gap (train and
# held-out denoising errors meet when a model generalises: Kadkhodaie et al. 2024)
RULES = {
    "fid": ("fid", None),
    "kid": ("kid", None),
    "loss": ("loss", None),
    "fid-fresh": ("fid-fresh", 0.55),
    "fid-fresh-0.5": ("fid-fresh", 0.5),
    "fid-fresh-0.6": ("fid-fresh", 0.6),
    "gu-fresh": ("gu-fresh", 0.05),
    "gap-fresh": ("gap-fresh", 0.02),
    "last": ("last", None),
}
GU_RATIO = 1 / 3
SCORE_SEED = 10_000


# ---- the plan ------------------------------------------------------------------------------------
def run_name(stage: int, recipe: str, seed: int) -> str:
    return f"s{stage}-{recipe}-seed{seed}"


def stage1_plan() -> list[dict]:
    return [{"stage": 1, "recipe": r, "seed": 0} for r in RECIPES]


def rule_pick(evals: list[dict], rule: str) -> int | None:
    """The index of the evaluation ``rule`` (a RULES name) picks among ``evals`` (step order)."""
    from ddkit.training.validation import pick

    select, closer = RULES[rule]
    if select == "last":
        return len(evals) - 1 if evals else None
    if select == "gu-fresh":
        recs = [{"fid": e["fid"], "closer_than_real": e.get("gu_ratio", math.nan)} for e in evals]
        return pick(recs, "fid-fresh", closer)
    if select == "gap-fresh":
        recs = [{"fid": e["fid"], "closer_than_real": e["loss_gap"] / e["loss_val"]} for e in evals]
        return pick(recs, "fid-fresh", closer)
    return pick(evals, select, closer) if closer is not None else pick(evals, select)


def stage1_rank(results: dict) -> list[str]:
    """Stage 1's recipes, best first, by the (tier, score) of the evaluation fid-fresh picks."""
    from ddkit.training.validation import selection_key

    keyed = []
    for r in RECIPES:
        rec = results.get(run_name(1, r, 0))
        if rec is None:
            continue
        i = rule_pick(rec["evals"], "fid-fresh")
        key = selection_key(rec["evals"][i], "fid-fresh") if i is not None else (2, math.inf)
        keyed.append((key, r))
    return [r for _, r in sorted(keyed)]


def stage2_plan(results: dict) -> list[dict]:
    """Empty until stage 1 has finished; then the augmentation levels and the best third, by seed."""
    if any(run_name(1, r, 0) not in results for r in RECIPES):
        return []
    ranked = stage1_rank(results)
    chosen = [r for r in ranked if r in AUGMENT_LEVELS or ranked.index(r) < math.ceil(len(RECIPES) / 3)]
    return [{"stage": 2, "recipe": r, "seed": s} for s in SEEDS2 for r in chosen]


def plan(results: dict) -> list[dict]:
    return stage1_plan() + stage2_plan(results)


def train_args(run: dict, steps: int, out: Path, every: int = 200) -> list[str]:
    """The ``ddkit train`` options of one run (every evaluation step kept)."""
    keep = [a for k in range(every, steps + 1, every) for a in ("--keep-step", str(k))]
    return [
        *BASE,
        *RECIPES[run["recipe"]],
        "--steps", str(steps), "--seed", str(run["seed"]), "--val-seed", str(run["seed"]),
        "--eval-every", str(every), "--ckpt-every", str(every), "--out", str(out), *keep,
    ]  # fmt: skip


# ---- the results file ----------------------------------------------------------------------------
def load_results(path: Path) -> dict:
    if not path.is_file():
        return {}
    return {r["name"]: r for r in json.loads(path.read_text())["runs"]}


def append_result(path: Path, record: dict) -> None:
    """Add (or replace) one run's record, written to a temporary name and renamed, under a lock
    (PATH.lock) so that two runners cannot lose each other's record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = load_results(path)
        runs[record["name"]] = record
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"runs": list(runs.values())}, indent=1) + "\n")
        os.replace(tmp, path)


def runner_alive(pid: int) -> bool:
    """Whether process ``pid`` runs this script (Linux's /proc; elsewhere any live pid counts)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return Path(__file__).name.encode() in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists() and pid > 0


def claim(runs_dir: Path, name: str) -> bool:
    """Take the run ``name`` for this process (RUNS/NAME.lock holds its pid); False when another
    live process holds it. A lock left by a dead process is taken over."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    lock = runs_dir / f"{name}.lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text())
                os.kill(pid, 0)  # raises when no such process
                if not runner_alive(pid):
                    raise ProcessLookupError  # the pid was reused by another program
                return pid == os.getpid()
            except FileNotFoundError:
                continue
            except ValueError:  # being written (or left empty by a crash: then taken after 10 s)
                if time.time() - lock.stat().st_mtime > 10:
                    lock.unlink(missing_ok=True)
                time.sleep(0.1)
            except ProcessLookupError:
                lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True


# ---- one run -------------------------------------------------------------------------------------
def trained_to(out: Path) -> int:
    """The step of the newest complete checkpoint in ``out`` (0 when none)."""
    from ddkit.training.checkpoint import latest_checkpoint

    found = latest_checkpoint(out) if out.is_dir() else None
    return int(found.name.split("-")[1]) if found is not None else 0


def train(args: list[str]) -> None:
    """``ddkit train ARGS --resume``: continues the newest checkpoint, or starts afresh when the run
    folder has no config.json (also a folder left by a kill before training began)."""
    cmd = [sys.executable, "-m", "ddkit", "train", *args, "--resume"]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


def evaluations(out: Path) -> list[dict]:
    from ddkit.training.rundir import RunDir

    found = {}
    for rec in RunDir(out).read_log():
        if "eval" in rec:
            keys = ("fid", "kid", "loss_val", "loss_gap", "closer_than_real", "nn_median")
            found[rec["step"]] = {"step": rec["step"], **{k: rec["eval"][k] for k in keys}}
    return [found[s] for s in sorted(found)]


def gu_ratio(samples: np.ndarray, train_images: np.ndarray) -> float:
    """Gu et al. (2023): the share of samples whose nearest training image is nearer than
    GU_RATIO × the second nearest (pixel L2)."""
    import torch

    a = torch.from_numpy(samples.reshape(len(samples), -1).astype(np.float64))
    b = torch.from_numpy(train_images.reshape(len(train_images), -1).astype(np.float64))
    d = torch.cdist(a, b).topk(2, largest=False).values
    return float((d[:, 0] < GU_RATIO * d[:, 1]).double().mean())


def score_checkpoints(out: Path, evals: list[dict], num: int) -> None:
    """Adds heldout_fid, heldout_closer and gu_ratio to each evaluation (its kept checkpoint)."""
    import torch

    from ddkit.data import load_run_data
    from ddkit.data.images import to_uint8
    from ddkit.eval.features import get_features
    from ddkit.eval.fid import fid, reference_stats
    from ddkit.eval.memorization import nearest_distances
    from ddkit.generate import generate
    from ddkit.training.load import load
    from ddkit.training.rundir import RunDir

    torch.set_num_threads(1)
    _, schedule, config = load(out, checkpoint=RunDir(out).checkpoint(evals[0]["step"]))
    seed = config.train.seed
    train_images = to_uint8(load_run_data(config.data, seed, "train").x)
    held = to_uint8(load_run_data(config.data, seed, "heldout").x)
    features = get_features("digits")
    stats = reference_stats(features, held)
    typical = float(np.median(nearest_distances(held, train_images)))
    for e in evals:
        model, _, _ = load(out, checkpoint=RunDir(out).checkpoint(e["step"]))
        net = config.diffusion.eps_network(model, schedule)

        def draw(n: int, s: int, net=net) -> np.ndarray:
            x = generate(net, schedule, n, sampler="dpm++", steps=10, seed=s, clip_x0=(-1.0, 1.0))
            return to_uint8(x)

        fresh = draw(num, SCORE_SEED + seed)
        feats = np.asarray(features(fresh), dtype=np.float64)
        e["heldout_fid"] = fid(feats, stats)
        e["heldout_closer"] = float((nearest_distances(fresh, train_images) < typical).mean())
        e["gu_ratio"] = gu_ratio(draw(config.train.eval_num, seed), train_images)


def prune(out: Path) -> None:
    """The step checkpoints go once scored (RUN/checkpoints/best stays)."""
    from ddkit.training.checkpoint import list_checkpoints

    for ckpt in list_checkpoints(out):
        shutil.rmtree(ckpt, ignore_errors=True)


def do_run(
    run: dict, steps: int, results_path: Path, runs_dir: Path, score_num: int, keep: bool, every: int = 200
) -> None:
    name = run_name(run["stage"], run["recipe"], run["seed"])
    out = runs_dir / name
    start = time.time()
    if trained_to(out) < steps:
        train(train_args(run, steps, out, every))
    evals = evaluations(out)
    score_checkpoints(out, evals, score_num)
    picks = {rule: evals[i]["step"] for rule in RULES if (i := rule_pick(evals, rule)) is not None}
    record = {
        "name": name, **run, "steps": steps, "options": RECIPES[run["recipe"]], "evals": evals, "picks": picks,
        "minutes_this_session": round((time.time() - start) / 60, 1),
    }  # fmt: skip
    append_result(results_path, record)
    if not keep:
        prune(out)
    print(f"done {name}: " + ", ".join(f"{r} -> step {s}" for r, s in picks.items()), flush=True)


# ---- the rules, judged on the held-out part -------------------------------------------------------
def rule_table(results: dict, fresh: float = 0.55, upto: int | None = None, stage: int | None = None) -> list[dict]:
    """Per rule, over the runs scored on the held-out part: the mean held-out FID and closer of its
    picks, how often its pick is fresh there (held-out closer <= ``fresh``), and the mean regret (its
    pick's held-out FID minus the best held-out FID among the run's fresh checkpoints; the lowest
    held-out closer's when none is fresh). Picks are recomputed from the logged evaluations.
    ``upto``: only the evaluations at steps <= upto, as if each run had stopped there (what a
    shorter budget would have picked; the learning rate still followed the full run's schedule);
    ``stage``: only that stage's runs."""
    runs = [r for r in results.values() if r["evals"] and all("heldout_fid" in e for e in r["evals"])]
    runs = [r for r in runs if stage is None or r["stage"] == stage]
    rows = []
    for rule in RULES:
        fids, closers, regrets = [], [], []
        for r in runs:
            ev = [e for e in r["evals"] if upto is None or e["step"] <= upto]
            if not ev:
                continue
            i = rule_pick(ev, rule)
            if i is None:
                continue
            ok = [e["heldout_fid"] for e in ev if e["heldout_closer"] <= fresh]
            best = min(ok) if ok else min(ev, key=lambda e: e["heldout_closer"])["heldout_fid"]
            fids.append(ev[i]["heldout_fid"])
            closers.append(ev[i]["heldout_closer"])
            regrets.append(ev[i]["heldout_fid"] - best)
        if fids:
            rows.append({
                "rule": rule, "runs": len(fids), "heldout_fid": float(np.mean(fids)),
                "heldout_closer": float(np.mean(closers)),
                "fresh_share": float(np.mean([c <= fresh for c in closers])), "regret": float(np.mean(regrets)),
            })  # fmt: skip
    return rows


def print_rule_table(results: dict, upto: int | None = None, stage: int | None = None) -> None:
    print("| rule | runs | held-out FID | held-out closer | picks fresh | regret |")
    print("|---|---|---|---|---|---|")
    for row in rule_table(results, upto=upto, stage=stage):
        print(
            f"| {row['rule']} | {row['runs']} | {row['heldout_fid']:.2f} | {row['heldout_closer']:.3f} | "
            f"{100 * row['fresh_share']:.0f} % | {row['regret']:.2f} |"
        )


# ---- the figure ----------------------------------------------------------------------------------
def draw_plot(results: dict, path: Path) -> None:
    """Validation FID and closer against the training step, one line per recipe (the mean over the
    seeds of its longest stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for i, recipe in enumerate(RECIPES):
        stage = 2 if any(r["stage"] == 2 and r["recipe"] == recipe for r in results.values()) else 1
        runs = [r for r in results.values() if r["recipe"] == recipe and r["stage"] == stage]
        if not runs:
            continue
        steps = sorted(set.intersection(*({e["step"] for e in r["evals"]} for r in runs)))
        for ax, key in zip(axes, ("fid", "closer_than_real", "heldout_fid")):
            y = [np.mean([e[key] for r in runs for e in r["evals"] if e["step"] == s]) for s in steps]
            style = dict(color=f"C{i % 10}", ls=("-", "--", ":")[i // 10 % 3])  # 12+ recipes, 10 colours
            ax.plot(
                steps,
                y,
                marker=".",
                **style,
                label=f"{recipe} (stage {stage}, {len(runs)} seed{'s' * (len(runs) > 1)})",
            )
    for ax, title in zip(axes, ("validation FID", "closer-than-real (validation samples)", "held-out FID")):
        ax.set(xlabel="training step", title=title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    axes[1].axhline(0.55, color="k", lw=0.8, ls="--")
    axes[1].axhline(0.5, color="k", lw=0.5, ls=":")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps1", type=int, default=1200)
    p.add_argument("--steps2", type=int, default=4800)
    p.add_argument("--score-num", type=int, default=1000, help="samples per checkpoint for the held-out scores")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--runs", type=Path, default=RUNS)
    p.add_argument("--plot", type=Path, default=PLOT)
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the step checkpoints once scored")
    p.add_argument("--plan", action="store_true", help="print the runs and which are done, then stop")
    p.add_argument("--plot-only", action="store_true")
    p.add_argument("--rules", action="store_true", help="print the selection rules' table, then stop")
    p.add_argument("--upto", type=int, help="with --rules: only the evaluations at steps <= UPTO (a shorter budget)")
    p.add_argument("--stage", type=int, choices=(1, 2), help="with --rules: only that stage's runs")
    a = p.parse_args(argv)
    if a.rules:
        print_rule_table(load_results(a.results), upto=a.upto, stage=a.stage)
        return
    if a.plan:
        results = load_results(a.results)
        for run in plan(results):
            name = run_name(run["stage"], run["recipe"], run["seed"])
            out = a.runs / name
            state = "done" if name in results else "to do"
            if name not in results and (out / "log.jsonl").is_file():
                shown = ", ".join(
                    f"{e['step']}: fid {e['fid']:.1f} closer {e['closer_than_real']:.2f}" for e in evaluations(out)
                )
                state = f"started, checkpoint at step {trained_to(out)}; evaluations {shown or 'none yet'}"
            print(f"{name:40s} {state}")
        return
    if not a.plot_only:
        while True:
            results = load_results(a.results)
            todo = [r for r in plan(results) if run_name(r["stage"], r["recipe"], r["seed"]) not in results]
            run = next((r for r in todo if claim(a.runs, run_name(r["stage"], r["recipe"], r["seed"]))), None)
            if run is None:
                if todo:
                    print(f"the {len(todo)} runs left are held by other live runners", flush=True)
                break
            try:
                steps = a.steps1 if run["stage"] == 1 else a.steps2
                do_run(run, steps, a.results, a.runs, a.score_num, a.keep_checkpoints)
            finally:
                (a.runs / f"{run_name(run['stage'], run['recipe'], run['seed'])}.lock").unlink(missing_ok=True)
            draw_plot(load_results(a.results), a.plot)
    draw_plot(load_results(a.results), a.plot)


if __name__ == "__main__":
    main()
