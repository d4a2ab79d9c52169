"""What a consistency student's config.json records about itself (its ``distill`` section): the
teacher, the hash of the teacher's weights it was made from, the σ-grid it samples on and the ECT
settings it was tuned with (:mod:`ddkit.training.distill`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from .. import checks
from ..samplers.consistency import SIGMA_MAX

METHODS = ("ect", "cd")
"""What ``ddkit distill --method`` may name: Easy Consistency Tuning (Geng et al. 2024), or
consistency distillation (Song et al. 2023) on ECT's schedule of pairs."""
WEIGHTINGS = ("gap", "snr")
"""ECT's loss weights in the authors' code: 1/(t − r) (``gap``: their CIFAR-10 release), or
SNR(t) + 1/σ_d² = (t² + σ_d²)/(t·σ_d)² (``snr``: ``wt='snrpk'``, their ImageNet/EDM2 release)."""


@dataclass(frozen=True)
class DistillConfig:
    """A student's provenance and sampling grid, with the ECT loss's settings (locuslab/ect's CIFAR-10
    defaults): t ~ log-normal(``p_mean``, ``p_std``), r = t·(1 − (1 + k·sigmoid(−b·t))/q^(stage+1)),
    stage = step // ``double_every``, loss √(‖Δ‖² + c²) − c weighted by ``weighting`` (:data:`WEIGHTINGS`:
    1/(t − r), or (t² + σ_d²)/(t·σ_d)²). Two-step sampling
    re-noises to ``sigma_mid`` with CTM's ``gamma``, chosen together: ``sigma_mid_scores`` holds one
    score per candidate σ_mid for each of ``gamma_candidates`` in turn (empty: γ = 1 only, as students
    made before γ was offered)."""

    teacher: str
    teacher_weights: str
    teacher_sha256: str
    method: str = "ect"
    sigma_max: float = SIGMA_MAX
    sigma_mid: float | None = None
    sigma_mid_metric: str | None = None
    sigma_mid_candidates: tuple[float, ...] = ()
    sigma_mid_scores: tuple[float, ...] = ()
    gamma: float = 1.0
    gamma_candidates: tuple[float, ...] = ()
    p_mean: float = -1.1
    p_std: float = 2.0
    t_max: float | None = None
    t_uniform: float = 0.0
    q: float = 2.0
    k: float = 8.0
    b: float = 1.0
    c: float = 0.0
    double_every: int = 250
    weighting: str = "gap"

    def __post_init__(self) -> None:
        checks.choice("method", self.method, METHODS)
        checks.choice("weighting", self.weighting, WEIGHTINGS)
        checks.positive("sigma_max", self.sigma_max)
        if self.sigma_mid is not None and not 0 < self.sigma_mid < self.sigma_max:
            raise checks.ParameterError(
                f"`sigma_mid` must lie in (0, sigma_max = {self.sigma_max:g}), got {self.sigma_mid}"
            )
        checks.number("p_mean", self.p_mean)
        checks.positive("p_std", self.p_std)
        if self.t_max is not None:
            checks.positive("t_max", self.t_max)
        checks.number("t_uniform", self.t_uniform, low=0.0, high=1.0, what="a share in [0, 1]")
        if not (self.q > 1 and math.isfinite(self.q)):
            raise checks.ParameterError(f"`q` (ECT's decay factor) must be a number > 1, got {self.q}")
        checks.number("k", self.k, low=0.0, what="a finite number >= 0")
        checks.number("b", self.b, low=0.0, what="a finite number >= 0")
        checks.number("c", self.c, low=0.0, what="a finite number >= 0")
        checks.positive_int("double_every", self.double_every)
        checks.number("gamma", self.gamma, low=0.0, high=1.0, what="in [0, 1]")
        for name in ("sigma_mid_candidates", "sigma_mid_scores", "gamma_candidates"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_teacher(distill: DistillConfig, student: str | Path) -> None:
    """A student is only what it was made from: a ValueError (one line) when its teacher's weights
    are gone or have changed since (their SHA-256 differs from the recorded one)."""
    path = Path(distill.teacher_weights)
    if not path.is_file():
        raise ValueError(
            f"the student {student} was made from {path}, which is gone: its teacher's weights changed since it "
            "was made; distill the teacher again"
        )
    if sha256_file(path) != distill.teacher_sha256:
        raise ValueError(
            f"the teacher's weights {path} changed since the student {student} was made (SHA-256 differs): "
            "distill the teacher again"
        )
