"""``ddkit tune-steps``: parses the options of :func:`ddkit.tune_steps`, which writes the timesteps
tuned for a run's model to ``RUN/timesteps/SAMPLER-NFE.json`` for ``ddkit sample --spacing tuned``."""

from __future__ import annotations

from ..tasks.tune import TuneOptions, tune_steps, tune_summary
from .common import add_options, given


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
    p.set_defaults(options=add_options(p, TuneOptions))


def run(args) -> int:
    print(tune_summary(*tune_steps(args.run, **given(args, args.options))))
    return 0
