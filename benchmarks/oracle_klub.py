"""The KLUB-chosen grid on the exact oracle against diffusers' best, NFE 4-10, both schedules (issue 23's
oracle target).

The oracle of benchmarks/samplers.py: the exact ε of GaussianMixture.default_2d(), the energy
distance of --num samples to the mixture's exact law, the same --seeds start-noise sets (set s from
seed s) and the same true-sample level (seeds 100 + s). For every NFE:

- ddkit: for DPM-Solver++ 2 and UniPC 2 bh2 (the samplers whose timesteps samplers.py tunes on the
  digits), the grid that `ddkit tune-steps --objective klub` chooses
  (ddkit.tuning.tune_timesteps_klub): AYS's bound estimated on 1,024 draws of the mixture itself (the
  oracle's training data; ddkit.training.tuned.KLUB_TRAIN_POINTS), its candidates (the bound's
  dynamic-programming grid, kl-optimal with c = the draws' std, three grids between them, from four
  top σ), chosen by the energy distance to the mixture's exact law of the samples from --val-num
  validation start-noise draws (seed 12345, never used for scoring). The KLUB-chosen row is the
  sampler whose chosen grid scores best on those validation draws: every choice is made before the
  scoring sets are seen.
- diffusers: every configuration of samplers.diffusers_configs (DDIM, DPM-Solver(++), UniPC bh1/bh2,
  Euler, Heun × leading/trailing/linspace/karras/exponential/lu) is screened on the first
  SCREEN_NUM (2,000) draws of set 0; the KEEP (8) best of the screen and every one within MARGIN
  (0.002) of its best are scored on the full sets, and diffusers' best is the lowest mean among
  them (chosen on the scoring sets: an advantage to diffusers). The screen only saves time (the
  energy distance costs O(num²)); where samplers.py scored every configuration in full (NFE 4, 5, 6,
  8, 10), its best is the check. A JSON made with another screen rule is completed on resuming.

The verdict per NFE is samplers.oracle_verdict: the paired difference over the sets and whether the
KLUB-chosen grid is ahead in every set. One JSON per schedule, written after every NFE (resumable).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/oracle_klub.py --schedule linear \\
        --json benchmarks/results/oracle_klub_linear.json
    python benchmarks/oracle_klub.py --report benchmarks/results/oracle_klub_*.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ddkit.eval.energy import energy_distance_to_mixture
from ddkit.training.tuned import KLUB_TRAIN_POINTS
from ddkit.tuning import tune_timesteps_klub

sys.path.insert(0, str(Path(__file__).resolve().parent))
from samplers import (  # noqa: E402
    TUNE_SEED,
    TUNED,
    _ddkit,
    diffusers_configs,
    mean_sd,
    oracle_setup,
    oracle_verdict,
    score_oracle,
)

NFES = (4, 5, 6, 7, 8, 9, 10)
KLUB_LABELS = ("DPM-Solver++ 2", "UniPC 2 bh2")  # of samplers.TUNED
TRAIN_SEED = 200  # the mixture draws the bound is estimated on (the true-sample level uses 100 + s)


def klub_rows_name(label: str) -> str:
    return f"{label}, KLUB"


def run_nfe(nfe: int, schedule, gmm, fn, x_Ts, x0, x_val, sigma_data: float) -> dict:
    """The KLUB records of every tuned sampler at ``nfe``, the validation choice among them, and the
    rows (those grids and every diffusers configuration) scored on the sets ``x_Ts``."""
    validation = (
        f"energy distance to the mixture's exact law of {x_val.shape[0]} validation start-noise draws "
        f"(seed {TUNE_SEED})"
    )
    records, configs = {}, []
    for label, sampler, options in (t for t in TUNED if t[0] in KLUB_LABELS):
        t0 = time.time()
        rec = tune_timesteps_klub(
            fn,
            schedule,
            sampler=sampler,
            nfe=nfe,
            x0=x0,
            x_T=x_val,
            score_fn=lambda x: energy_distance_to_mixture(x.double(), gmm),
            sigma_data=sigma_data,
            seed=TUNE_SEED,
            batch_size=x_val.shape[0],
            validation=validation,
            **options,
        )
        records[label] = rec.to_dict()
        configs.append(
            _ddkit(
                klub_rows_name(label), nfe, schedule, rec.sampler, None, timesteps=list(rec.timesteps), **rec.options
            )
        )
        print(
            f"  NFE {nfe:2d} {label:15s}: chose {rec.chosen} (validation {rec.score_after:.5f}) "
            f"in {time.time() - t0:.0f} s",
            flush=True,
        )
    chosen = min(records, key=lambda label: records[label]["score_after"])
    rows, screen = score_oracle(configs, fn, gmm, x_Ts), diffusers_screened(nfe, schedule, fn, gmm, x_Ts)
    return {"records": records, "chosen": klub_rows_name(chosen), "rows": rows + screen.pop("rows"), "screen": screen}


SCREEN_NUM, KEEP, MARGIN = 2_000, 8, 0.002


def diffusers_screened(nfe: int, schedule, fn, gmm, x_Ts) -> dict:
    """Every diffusers configuration at ``nfe`` scored on the first :data:`SCREEN_NUM` draws of the
    first set; those of :func:`to_score` scored on the full sets ``x_Ts`` (rows)."""
    configs = diffusers_configs(nfe, schedule)
    screen = score_oracle(configs, fn, gmm, [x_Ts[0][:SCREEN_NUM]])
    energy = {r["name"]: r["energy"] for r in screen}
    chosen = to_score(energy, set())
    rows = score_oracle([c for c in configs if c[1] in chosen], fn, gmm, x_Ts)
    return {"num": SCREEN_NUM, "keep": KEEP, "margin": MARGIN, "energy": energy, "rows": rows}


def to_score(energy: dict, done: set) -> set:
    """The screened configurations to score in full: the :data:`KEEP` best and every one within
    :data:`MARGIN` of the best (the screen's own noise is about 0.0003 at 2,000 draws), less ``done``."""
    finite = sorted((v, k) for k, v in energy.items() if v == v)
    best = {k for _, k in finite[:KEEP]} | {k for v, k in finite if v <= finite[0][0] + MARGIN}
    return best - done


def rescore(result: dict, schedule, gmm, fn, x_Ts) -> None:
    """Score in full the screened configurations that :func:`to_score` adds to a result made with an
    earlier screen rule (in place)."""
    for nfe, part in result["nfe"].items():
        more = to_score(part["screen"]["energy"], {r["name"] for r in part["rows"]})
        configs = [c for c in diffusers_configs(int(nfe), schedule) if c[1] in more]
        part["rows"] += score_oracle(configs, fn, gmm, x_Ts)
        part["screen"] = {k: v for k, v in part["screen"].items() if k != "rows"} | {"keep": KEEP, "margin": MARGIN}
        print(f"  NFE {nfe}: {len(configs)} more diffusers configurations scored in full", flush=True)


def run(schedule_name: str, nfe_list, num: int, seeds: int, val_num: int, path: Path | None) -> dict:
    schedule, gmm, fn, x_Ts, null = oracle_setup(schedule_name, num, seeds)
    x0 = gmm.sample(KLUB_TRAIN_POINTS, torch.Generator().manual_seed(TRAIN_SEED))[0]
    sigma_data = round(float(x0.double().std()), 4)  # as tune-steps takes it from a run's data
    x_val = torch.randn(val_num, 2, generator=torch.Generator().manual_seed(TUNE_SEED))
    result = {"schedule": schedule_name, "num": num, "seeds": seeds, "val_num": val_num, "sigma_data": sigma_data}
    result |= {"null": list(mean_sd(null)), "nulls": null, "nfe": {}}
    if path is not None and path.is_file():  # resume: the NFEs already done stay
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in ("schedule", "num", "seeds", "val_num")} == {
            k: result[k] for k in ("schedule", "num", "seeds", "val_num")
        }:
            result["nfe"] = old["nfe"]
            rescore(result, schedule, gmm, fn, x_Ts)
            _save(result, path)
    for nfe in nfe_list:
        if str(nfe) in result["nfe"]:
            continue
        t0 = time.time()
        result["nfe"][str(nfe)] = run_nfe(nfe, schedule, gmm, fn, x_Ts, x0, x_val, sigma_data)
        print(f"  {schedule_name} NFE {nfe} done in {time.time() - t0:.0f} s", flush=True)
        if path is not None:
            _save(result, path)
    return result


def _save(result: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(path)


def verdicts(result: dict) -> list[dict]:
    out = []
    for nfe, part in sorted(result["nfe"].items(), key=lambda kv: int(kv[0])):
        v = oracle_verdict({"rows": part["rows"]}, int(nfe), ddkit_name=part["chosen"])
        label = part["chosen"].removesuffix(", KLUB")
        v["candidate"] = part["records"][label]["chosen"]
        v["validation"] = part["records"][label]["score_after"]
        v["energys"] = next(r["energys"] for r in part["rows"] if r["name"] == part["chosen"])
        out.append(v)
    return out


def report(results: list[dict]) -> str:
    lines = [
        "| schedule | NFE | KLUB-chosen (sampler, candidate) | diffusers' best | paired difference | ahead in every set |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for v in verdicts(result):
            lines.append(
                f"| {result['schedule']} | {v['nfe']} | {v['ddkit'].removesuffix(', KLUB')}, {v['candidate']}: "
                f"{v['ddkit_energy']:.5f} | {v['diffusers']}: {v['diffusers_energy']:.5f} | "
                f"{v['difference']:+.5f} ± {v['difference_sd']:.5f} | "
                f"{'yes' if v['ddkit_better_in_every_set'] else 'no'} |"
            )
    nulls = ", ".join(f"{r['schedule']} {r['null'][0]:.5f} ± {r['null'][1]:.5f}" for r in results)
    return "\n".join(lines) + f"\n\ntrue samples: {nulls}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--schedule", choices=("linear", "cosine"), default="cosine")
    p.add_argument("--nfe", type=int, nargs="+", default=list(NFES))
    p.add_argument("--num", type=int, default=10_000, help="samples per scoring set")
    p.add_argument("--seeds", type=int, default=3, help="scoring start-noise sets")
    p.add_argument("--val-num", type=int, default=5_000, help="validation start-noise draws for the choice")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--report", nargs="+", type=Path, default=None, metavar="JSON", help="only print the table")
    args = p.parse_args(argv)
    if args.report:
        print(report([json.loads(path.read_text()) for path in args.report]))
        return 0
    torch.set_num_threads(1)
    print(report([run(args.schedule, args.nfe, args.num, args.seeds, args.val_num, args.json)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
