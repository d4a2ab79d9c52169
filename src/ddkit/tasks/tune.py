"""``ddkit.tune_steps``: what ``ddkit tune-steps`` does, from Python: a sampler's timesteps tuned for
a run's weights (:func:`ddkit.training.tuned.tune_run`, the method in :mod:`ddkit.tuning`), written
to ``RUN/timesteps/SAMPLER-NFE.json`` for ``spacing="tuned"``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..options import option
from ..training.config import DEVICES
from ..training.tuned import TUNE_SEED, tune_run
from ..tuning import OBJECTIVES, TUNABLE, TunedTimesteps
from .sampling import CHECKPOINT_HELP, options_from


@dataclass(frozen=True)
class TuneOptions:
    """The options of ``ddkit tune-steps`` (``sampler`` and ``nfe`` are required)."""

    sampler: str | None = option(None, "the sampler to tune the timesteps for", choices=TUNABLE, required=True)
    nfe: int | None = option(
        None,
        "model evaluations K >= 2, below --teacher-steps (heun: odd, N = (K+1)/2 points)",
        metavar="K",
        required=True,
    )
    objective: str = option(
        "klub",
        "klub (default): AYS's KL bound on the run's training data, candidates chosen on its validation "
        "part (FID; a held-out slice of the training data when the run has none); rmse: end-point error "
        "against a DPM-Solver++ teacher (no data)",
        choices=OBJECTIVES,
    )
    order: int | None = option(None, "dpm++ and unipc order (default 2)", choices=(1, 2, 3))
    num: int = option(256, "start-noise draws tuned on (default 256)")
    teacher_steps: int | None = option(
        None, "steps of the DPM-Solver++(2) teacher (default 500, or T-1 for a schedule of T <= 500 steps)"
    )
    max_evals: int = option(400, "sampling runs of the tuning set the search may spend (default 400)")
    seed: int = option(TUNE_SEED, f"start noise of sample i from (seed, i) (default {TUNE_SEED}, not ddkit sample's 0)")
    batch_size: int = option(256, "samples per batch (default 256)")
    checkpoint: str | None = option(None, CHECKPOINT_HELP, metavar="last|best|PATH")
    no_ema: bool = option(False, "tune for the raw weights instead of the EMA weights", switch=True)
    device: str = option("cpu", "cpu (default) or cuda", choices=DEVICES)


def tune_steps(run, **options) -> tuple[TunedTimesteps, Path]:
    """Tune the timesteps of ``sampler`` at ``nfe`` evaluations for the run folder ``run`` as ``ddkit
    tune-steps`` does, with its options as keywords (:class:`TuneOptions`). Returns (record, path)::

        record, path = ddkit.tune_steps("runs/digits", sampler="dpm++", nfe=5)
    """
    o = options_from(TuneOptions, options)
    kwargs = {k: getattr(o, k) for k in ("sampler", "nfe", "order", "num", "teacher_steps", "seed")}
    kwargs |= {k: getattr(o, k) for k in ("checkpoint", "device", "batch_size", "max_evals", "objective")}
    return tune_run(run, ema=not o.no_ema, **kwargs)


def tune_summary(record: TunedTimesteps, path: Path) -> str:
    """What ``ddkit tune-steps`` prints: objective klub, the candidates' validation scores, the choice
    and the best hand-made spacing; objective rmse, the error against the teacher before and after;
    then the sequence and the file written."""
    timesteps = "timesteps: " + " ".join(f"{t:.6g}" if isinstance(t, float) else str(t) for t in record.timesteps)
    if record.objective == "klub":
        scores = ", ".join(f"{k} {v['score']:.4g}" for k, v in record.candidates.items())
        lines = [f"validation scores (lower is better): {scores}; chosen {record.chosen}"]
        hand = min(record.score_before, key=record.score_before.get, default=None)
        if hand:
            lines.append(f"best hand-made spacing: {hand} {record.score_before[hand]:.4g}")
        return "\n".join([*lines, timesteps, f"wrote {path}"])
    before = record.score_before.get(record.baseline, float("nan"))
    best = min((k for k in record.score_before if k != "dp"), key=record.score_before.get, default=None)
    return (
        f"RMSE against the teacher ({record.teacher['steps']} steps): {record.baseline} {before:.5f}"
        + (f", best hand-made {best} {record.score_before[best]:.5f}" if best else "")
        + f", tuned {record.score_after:.5f}\n"
        + timesteps
        + f"\nwrote {path}"
    )


__all__ = ["tune_steps", "tune_summary", "TuneOptions"]
