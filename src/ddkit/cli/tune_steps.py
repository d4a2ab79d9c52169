"""``ddkit tune-steps``: timesteps optimised for a run's model (:func:`ddkit.training.tuned.tune_run`,
the method in :mod:`ddkit.tuning`), written to ``RUN/timesteps/SAMPLER-NFE.json`` for
``ddkit sample --spacing tuned``."""

from __future__ import annotations

from ..training.config import DEVICES
from ..training.tuned import TUNE_SEED, tune_run
from ..tuning import OBJECTIVES, TUNABLE
from .sampling import CHECKPOINT_HELP


def add_parser(sub) -> None:
    p = sub.add_parser(
        "tune-steps",
        help="optimise a sampler's timesteps for a run's model",
        description=(
            "Tune the NFE timesteps of a deterministic sampler for a run's weights. --objective klub (default): "
            "the grid minimising Align Your Steps' KL upper bound on the run's training data (dynamic programming), "
            "the kl-optimal grid and grids between them are scored on the validation part and the best kept. "
            "--objective rmse (no data): GITS-style dynamic programming over a DPM-Solver++ teacher's trajectory, "
            "then a direct search of the sampler's end-point error against the teacher. Writes "
            "RUN/timesteps/SAMPLER-NFE.json (the sequence, the method, the objective, the candidates' scores, "
            "the ddkit version); "
            "`ddkit sample RUN --sampler SAMPLER --steps NFE --spacing tuned` uses it."
        ),
    )
    p.add_argument("run", help="run folder written by ddkit train")
    p.add_argument("--sampler", choices=TUNABLE, required=True, help="the sampler to tune the timesteps for")
    p.add_argument(
        "--nfe",
        type=int,
        required=True,
        metavar="K",
        help="model evaluations K >= 2, below --teacher-steps (heun: odd, N = (K+1)/2 points)",
    )
    p.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="klub",
        help="klub (default): AYS's KL bound on the run's training data, candidates chosen on its validation "
        "part (FID; a held-out slice of the training data when the run has none); rmse: end-point error "
        "against a DPM-Solver++ teacher (no data)",
    )
    p.add_argument("--order", type=int, choices=(1, 2, 3), default=None, help="dpm++ and unipc order (default 2)")
    p.add_argument("--num", type=int, default=256, help="start-noise draws tuned on (default %(default)s)")
    p.add_argument(
        "--teacher-steps",
        type=int,
        default=None,
        help="steps of the DPM-Solver++(2) teacher (default 500, or T-1 for a schedule of T <= 500 steps)",
    )
    p.add_argument(
        "--max-evals",
        type=int,
        default=400,
        help="sampling runs of the tuning set the search may spend (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=TUNE_SEED,
        help="start noise of sample i from (seed, i) (default %(default)s, not ddkit sample's 0)",
    )
    p.add_argument("--batch-size", type=int, default=256, help="samples per batch (default %(default)s)")
    p.add_argument("--checkpoint", default=None, metavar="last|best|PATH", help=CHECKPOINT_HELP)
    p.add_argument("--no-ema", action="store_true", help="tune for the raw weights instead of the EMA weights")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="cpu (default) or cuda")


def run(args) -> int:
    record, path = tune_run(
        args.run,
        sampler=args.sampler,
        nfe=args.nfe,
        order=args.order,
        num=args.num,
        teacher_steps=args.teacher_steps,
        seed=args.seed,
        checkpoint=args.checkpoint,
        ema=not args.no_ema,
        device=args.device,
        batch_size=args.batch_size,
        max_evals=args.max_evals,
        objective=args.objective,
    )
    if record.objective == "klub":
        scores = ", ".join(f"{k} {v['score']:.4g}" for k, v in record.candidates.items())
        print(f"validation scores (lower is better): {scores}; chosen {record.chosen}")
        hand = min(record.score_before, key=record.score_before.get, default=None)
        if hand:
            print(f"best hand-made spacing: {hand} {record.score_before[hand]:.4g}")
        print("timesteps: " + " ".join(f"{t:.6g}" if isinstance(t, float) else str(t) for t in record.timesteps))
        print(f"wrote {path}")
        return 0
    before = record.score_before.get(record.baseline, float("nan"))
    best_name = min((k for k in record.score_before if k != "dp"), key=record.score_before.get, default=None)
    print(
        f"RMSE against the teacher ({record.teacher['steps']} steps): {record.baseline} {before:.5f}"
        + (f", best hand-made {best_name} {record.score_before[best_name]:.5f}" if best_name else "")
        + f", tuned {record.score_after:.5f}"
    )
    print("timesteps: " + " ".join(f"{t:.6g}" if isinstance(t, float) else str(t) for t in record.timesteps))
    print(f"wrote {path}")
    return 0
