"""Loading trained runs: ``ddkit.load(RUN) -> (model, schedule, config)``, and the networks that
guide another run (a weak model for autoguidance, a noisy classifier), checked against it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..checks import ParameterError
from ..nn import build_model
from ..schedule import Schedule
from .checkpoint import latest_checkpoint, load_matching, read_best
from .config import RunConfig
from .rundir import RunDir
from .student import check_teacher

CHECKPOINT_CHOICES = ("last", "best")


@dataclass(frozen=True)
class Weights:
    """Which weights :func:`load` read: the safetensors ``path``; ``kind`` "best" (RUN/checkpoints/best,
    chosen on the validation part), "last" (the newest step checkpoint) or "path" (given);
    ``step`` when known; ``record``: the best checkpoint's best.json (its step and scores)."""

    path: Path
    kind: str
    step: int | None = None
    record: dict | None = None

    def describe(self) -> str:
        """'the best checkpoint runs/x/checkpoints/best (step 1000, val fid 5.12, closer 0.61)' and the like:
        the rule that chose it and the closer-than-real of its evaluation."""
        if self.kind == "best":
            from .validation import describe_choice

            r = self.record or {}
            score, closer = r.get("score"), (r.get("scores") or {}).get("closer_than_real")
            how = ""
            if isinstance(score, (int, float)):
                how = ", " + describe_choice(r.get("select"), score, r.get("tier", 0), closer, r.get("select_closer"))
            return f"the best checkpoint {self.path.parent} (step {self.step}{how})"
        if self.kind == "last":
            return f"the newest checkpoint {self.path.parent} (step {self.step})"
        return str(self.path)


def resolve_weights(run: Path, checkpoint: str | Path | None, ema: bool) -> Weights:
    """The weights to load: ``checkpoint`` "best" (RUN/checkpoints/best), "last" (the newest step
    checkpoint), a checkpoint folder or a .safetensors file; by default (None) the best checkpoint
    when the run has one, else the newest. EMA weights unless ``ema`` is false."""
    name = "ema.safetensors" if ema else "model.safetensors"
    run = Path(run)
    best = read_best(run) if checkpoint in (None, "best") else None
    if checkpoint == "best" and best is None:
        raise ParameterError(
            f"`checkpoint` best: {run} has no best checkpoint (it is written by training with `val`); "
            "use last or a checkpoint folder"
        )
    if best is not None:
        return Weights(RunDir(run).best / name, "best", best.get("step"), best)
    if checkpoint not in (None, "last"):
        path = Path(checkpoint)
        if path.is_dir():
            return Weights(path / name, "path")
        if path.is_file():
            return Weights(path, "path")
        raise ValueError(f"no checkpoint at {path}")
    ckpt = latest_checkpoint(run)
    if ckpt is None:
        raise ValueError(f"{run} has no checkpoint yet")
    return Weights(ckpt / name, "last", int(ckpt.name.split("-")[1]))


def load(
    run: str | Path, *, checkpoint: str | Path | None = None, ema: bool = True, device: str | torch.device = "cpu"
) -> tuple[nn.Module, Schedule, RunConfig]:
    """The network of a run (in eval mode, EMA weights by default), its schedule and config.

    Which weights: ``checkpoint`` "best" (RUN/checkpoints/best: the best score on the validation
    part, written when the run was trained with ``val``), "last" (the newest step checkpoint), a
    checkpoint folder or a .safetensors file; by default the best checkpoint when the run has one,
    else the newest. ``model.loaded_from`` (a :class:`Weights`) says which were read.

    ``model(x_t, t, y=None)`` outputs what the run trained it to (``config.diffusion.target``: ε, x₀, v,
    or EDM's F, which is also fed c_in·x̃ and c_noise); ``config.diffusion.eps_network(model, schedule)``
    is always ``f(x_t, t, y=None) -> ε``: use ``lambda x, t: f(x, t)`` (or bind labels) as the
    samplers' ``model_fn``.
    """
    run = Path(run)
    if not run.is_dir():
        raise ValueError(f"run folder {run} does not exist")
    config = RunConfig.load(RunDir(run).config)
    if config.distill is not None:  # a consistency student: only while its teacher's weights are unchanged
        check_teacher(config.distill, run)
    model = build_model(config.model)
    weights = resolve_weights(run, checkpoint, ema)
    # one line saying what differs when the weights are for another network (never a pickle)
    load_matching(model, weights.path, config.to_dict()["model"])
    model.loaded_from = weights
    return model.to(device).eval(), config.diffusion.build(), config


def is_classifier(config: RunConfig) -> bool:
    """A run of ``ddkit train-classifier`` (a noisy classifier, not a diffusion model)."""
    return type(config.model).__name__ == "ClassifierConfig"


def check_same_data(
    what: str, other: RunConfig, other_schedule: Schedule, config: RunConfig, schedule: Schedule
) -> None:
    """A guiding network (``what`` names it in the error) must see the run's images and schedule."""
    m, o = config.model, other.model
    for name, label in (("image_size", "image size"), ("in_channels", "channel count")):
        if getattr(o, name, None) != getattr(m, name, None):
            raise ParameterError(
                f"{what} has {label} {getattr(o, name, None)} but the run has {getattr(m, name, None)}"
            )
    if other_schedule.num_timesteps != schedule.num_timesteps or not torch.allclose(
        other_schedule.alpha_bars, schedule.alpha_bars, rtol=0, atol=1e-12
    ):
        raise ParameterError(
            f"{what} was trained with another schedule ({other_schedule!r}) than the run ({schedule!r})"
        )


def load_weak_model(
    path: str | Path,
    config: RunConfig,
    schedule: Schedule,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
    what: str | None = None,
) -> nn.Module:
    """The weak model of autoguidance as an ε-network: a run folder (its weights chosen as
    :func:`load` chooses them: the best checkpoint when it has one, else the newest), or a
    checkpoint folder RUN/checkpoints/step-N (or best) of one, with the same data shape and
    schedule as ``config``'s run."""
    path = Path(path)
    what = what or f"the weak model {path}"
    if RunDir(path).is_run():
        run, ckpt = path, None
    elif path.is_dir() and path.parent.name == RunDir.CHECKPOINTS and RunDir(path.parent.parent).is_run():
        run, ckpt = path.parent.parent, path
    else:
        raise ParameterError(f"{what}: not a run folder nor a checkpoint folder RUN/checkpoints/step-N")
    weak, weak_schedule, weak_config = load(run, checkpoint=ckpt, ema=ema, device=device)
    if is_classifier(weak_config):
        raise ParameterError(f"{what} is a classifier run; use it as the classifier")
    check_same_data(what, weak_config, weak_schedule, config, schedule)
    return weak_config.diffusion.eps_network(weak, weak_schedule)


def load_classifier(
    path: str | Path,
    config: RunConfig,
    schedule: Schedule,
    *,
    device: str | torch.device = "cpu",
    what: str | None = None,
) -> tuple[nn.Module, RunConfig]:
    """A noisy classifier run (``ddkit train-classifier``) for classifier guidance of ``config``'s run,
    checked to see the same images and schedule. Returns (classifier, its config)."""
    what = what or f"the classifier {path}"
    cls_config = RunConfig.load(RunDir(path).config)
    if not is_classifier(cls_config):
        raise ParameterError(f"{what} is not a classifier run (made by ddkit train-classifier)")
    classifier, cls_schedule, cls_config = load(path, device=device)
    check_same_data(what, cls_config, cls_schedule, config, schedule)
    return classifier, cls_config
