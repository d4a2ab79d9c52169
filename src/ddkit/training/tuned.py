"""Timesteps tuned for a run: ``ddkit tune-steps`` writes ``RUN/timesteps/NAME-K.json``
(:func:`tune_run`), and ``ddkit sample --spacing tuned`` reads it back (:func:`tuned_options`),
refusing a file made for another sampler, number of evaluations or set of weights.

The record's format is :class:`ddkit.tuning.TunedTimesteps`; where it lies is
:meth:`RunDir.timesteps`. The weights are identified by the SHA-256 of the safetensors file the
sequence was tuned with (a run trained further, another checkpoint or the raw instead of the EMA
weights is another model, whose best timesteps differ)."""

from __future__ import annotations

import shlex
from pathlib import Path

import torch

from ..checks import ParameterError
from ..generate import LabelCycle, plain_model_fn, sample_shape, start_noise
from ..schedule import Schedule
from ..tuning import TunedTimesteps, check_objective, check_tuning, tune_timesteps, tune_timesteps_klub
from .config import measure_sigma_data
from .load import load, resolve_weights
from .rundir import RunDir
from .student import sha256_file

# `ddkit sample` uses the first `--seed 0` samples; tuning draws its own start noise elsewhere
TUNE_SEED = 1


def weights_id(run: str | Path, checkpoint=None, ema: bool = True) -> dict:
    """Which weights: the safetensors file (relative to the run) and the SHA-256 of its bytes."""
    path = resolve_weights(Path(run), checkpoint, ema).path
    try:
        name = str(path.resolve().relative_to(Path(run).resolve()))
    except ValueError:
        name = str(path)
    return {"weights": name, "sha256": sha256_file(path), "ema": bool(ema)}


def tune_command(run, sampler: str, nfe: int, order=None, checkpoint=None, ema: bool = True) -> str:
    """The ``ddkit tune-steps`` command line that makes the file :func:`tuned_options` looks for."""
    parts = ["ddkit", "tune-steps", str(run), "--sampler", sampler, "--nfe", str(nfe)]
    parts += ["--order", str(order)] if order is not None else []
    parts += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
    parts += ["--no-ema"] if not ema else []
    return shlex.join(parts)


def tune_run(
    run: str | Path,
    *,
    sampler: str,
    nfe: int,
    order: int | None = None,
    num: int = 256,
    teacher_steps: int | None = None,
    seed: int = TUNE_SEED,
    checkpoint=None,
    ema: bool = True,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    max_evals: int = 400,
    objective: str = "klub",
) -> tuple[TunedTimesteps, Path]:
    """``ddkit tune-steps``: tune ``sampler``'s ``nfe`` timesteps for a run's weights on ``num``
    start-noise draws (sample i from (``seed``, i), class i mod K for a class-conditional run; x̂₀
    clipped to [-1, 1] for images as ``ddkit sample`` does), and write
    ``RUN/timesteps/SAMPLER-NFE.json``. ``objective`` "klub": AYS's KL bound on the run's training
    data, the candidates chosen on its validation part (:func:`ddkit.tuning.tune_timesteps_klub`,
    :func:`klub_data`); "rmse": :func:`ddkit.tune_timesteps` (no data). Returns (record, path)."""
    run = Path(run)
    check_objective(objective)
    if not RunDir(run).is_run():
        raise ValueError(f"{run} is not a run folder (no config.json)")
    if num < 1:
        raise ParameterError(f"`num` must be a positive integer, got {num}")
    model, schedule, config = load(run, checkpoint=checkpoint, ema=ema, device=device)
    check_tuning(sampler, nfe, teacher_steps, schedule.num_timesteps, order)
    ident = weights_id(run, checkpoint, ema)
    net = config.diffusion.eps_network(model, schedule)
    x_T, _ = start_noise(seed, range(num), sample_shape(net), device)
    image = x_T.ndim == 4  # x_T: [N, C, H, W] for images, [N, D] for points
    num_classes = getattr(config.model, "num_classes", None)
    y = None if num_classes is None else LabelCycle(num_classes)(0, num).to(device)
    model_fn = plain_model_fn(net)(y) if y is None else _labelled(net, y)
    clip_x0 = (-1.0, 1.0) if image else None
    common = dict(sampler=sampler, nfe=nfe, x_T=x_T, order=order, clip_x0=clip_x0, model={**ident, "seed": int(seed)})
    if objective == "klub":
        if y is not None:
            raise ParameterError("`objective` klub is for unconditional runs; this one is class-conditional (use rmse)")
        x0, val, what = klub_data(config, seed)
        score_fn, metric = validation_score(config, val, num)
        record = tune_timesteps_klub(
            model_fn,
            schedule,
            x0=x0.to(device),
            score_fn=score_fn,
            sigma_data=config.diffusion.sigma_data or measure_sigma_data(x0),
            seed=seed,
            batch_size=min(batch_size, num),
            validation=f"{metric} against {what}, {len(val)} points",
            **common,
        )
    else:
        record = tune_timesteps(
            model_fn,
            schedule,
            teacher_steps=teacher_steps,
            batch_size=min(batch_size, num) if y is None else num,
            max_evals=max_evals,
            **common,
        )
    return record, record.save(RunDir(run).timesteps(sampler, nfe))


def _labelled(net, y: torch.Tensor):
    """model_fn for the tuning set in one batch (its first rows, for a probe): labels bound row by row."""
    return lambda x, t: net(x, t, y[: x.shape[0]])


def tuned_options(
    run: str | Path | None,
    sampler: str,
    nfe: int,
    schedule: Schedule,
    *,
    order: int | None = None,
    checkpoint=None,
    ema: bool = True,
) -> dict:
    """The sampler options that ``--spacing tuned`` stands for: ``{"timesteps": [...]}`` and, for the
    solvers, the ``order`` the sequence was tuned with (``order``, if given, must be it). ValueErrors (one
    line each) for a missing file (naming the command that makes it) and for a file made for
    another sampler, number of evaluations, order, schedule or set of weights."""
    if run is None:
        raise ParameterError("`spacing` tuned reads a run's tuned timesteps; it needs a run folder")
    path = RunDir(run).timesteps(sampler, nfe)
    command = tune_command(run, sampler, nfe, order, checkpoint, ema)
    if not path.is_file():
        raise ValueError(f"no tuned timesteps for {sampler} at {nfe} evaluations ({path}); make them with: {command}")
    record = TunedTimesteps.load(path)
    seq = record.check(schedule, sampler=sampler, nfe=nfe, where=str(path))
    tuned_order = record.options.get("order")
    if order is not None and tuned_order is not None and int(order) != int(tuned_order):
        raise ParameterError(f"{path} was tuned for `order` {tuned_order}, not {order}; tune again with: {command}")
    ident = weights_id(run, checkpoint, ema)
    made_for = (record.model or {}).get("sha256")
    if made_for != ident["sha256"]:
        was = (record.model or {}).get("weights", "unknown weights")
        raise ValueError(
            f"{path} was tuned for other weights ({was}) than these ({ident['weights']}); tune again with: {command}"
        )
    order = order if order is not None else tuned_order
    return {"timesteps": seq} | ({"order": int(order)} if order is not None else {})


KLUB_TRAIN_POINTS = 1024  # training points the bound is estimated on (a seeded subset)
KLUB_HELDOUT = 0.1  # the slice of the training data held out for the choice when the run has no val part


def klub_data(config, seed: int) -> tuple[torch.Tensor, object, str]:
    """(x0 for the bound: at most :data:`KLUB_TRAIN_POINTS` training points, the validation Dataset,
    what it is): the run's ``val`` part, or a held-out slice of its training data (then x0 never
    includes it). Never the test or held-out parts."""
    from ..data.splits import holdout_split, load_run_data, take

    train = load_run_data(config.data, config.train.seed, "train")
    if getattr(config.data, "val", 0):
        val, what = load_run_data(config.data, config.train.seed, "val"), "the run's validation part"
    else:
        keep, held = holdout_split(len(train), KLUB_HELDOUT, seed)
        val = take(train, held, f"{train.source} (tuning slice)")
        train = take(train, keep, f"{train.source} (tuning rest)")
        what = f"a held-out {KLUB_HELDOUT:g} of the training data"
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(train), generator=g)[:KLUB_TRAIN_POINTS]
    return train.x[idx], val, what


def validation_score(config, val, num: int):
    """``score(samples) -> float`` on the validation Dataset: FID in the run's feature space for
    images (digits features for 8×8, else Inception), energy distance for 2-D points; ``num``
    samples must be enough for it."""
    if val.kind == "points":
        from ..eval.energy import energy_distance

        return (lambda x: energy_distance(x.double().cpu(), val.x.double())), "energy distance"
    from .validation import fid_scorer

    score, need = fid_scorer(config, val)
    if num < need or len(val) < need:
        raise ParameterError(
            f"`objective` klub scores on FID, which needs at least {need} samples and validation images "
            f"(`num` {num}, {len(val)} validation images)"
        )
    return score, "FID"
