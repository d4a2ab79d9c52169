"""Model selection during training: when to evaluate on the validation part, which checkpoint is
the best (``RUN/checkpoints/best``, by ``select``), the one memorisation warning, and early stopping.

The trainer keeps the loop and asks :class:`ModelSelection` at each ``eval_every`` step; the
measuring itself is :class:`~ddkit.training.validation.Validator`'s. Order for crash safety at a new
best: the log record, then the step checkpoint of that step (so the resume point never falls behind
the best), then the best checkpoint. The state (:class:`EvalState`) travels in each checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from .checkpoint import MODEL_METADATA, read_best, save_best
from .config import RunConfig
from .distributed import DistContext, from_main
from .validation import (
    CLOSER_WARNING,
    FRESH_RULES,
    EvalState,
    Validator,
    describe_choice,
    memorisation_warning,
    say,
    selection_key,
)


class ModelSelection:
    """Evaluate, keep the best checkpoint, warn, stop early. ``validator`` None: a run without a
    validation part (nothing is evaluated, nothing stops early; the state stays empty)."""

    def __init__(
        self,
        config: RunConfig,
        validator: Validator | None,
        out,
        reporter,
        dist: DistContext,
        device: torch.device,
    ):
        self.config, self.validator, self.out = config, validator, out
        self.reporter, self.dist, self.device = reporter, dist, device
        self.state = EvalState()

    def due(self, step: int) -> bool:
        """Whether ``step`` is an evaluation step."""
        return self.validator is not None and step % self.config.train.eval_every == 0

    def final_due(self, step: int) -> bool:
        """Whether the final weights still need their evaluation (they are a candidate too)."""
        return self.validator is not None and self.state.last_step != step

    def stopped_early(self) -> bool:
        """``early_stop`` evaluations in a row without a better score."""
        k = self.config.train.early_stop
        return self.validator is not None and k is not None and self.state.since_best >= k

    def evaluate(
        self,
        step: int,
        model: torch.nn.Module,
        ema,
        save_step: Callable[[], None],
        show: Callable[[dict], None] | None = None,
    ) -> bool:
        """Evaluate the EMA weights at ``step`` (rank 0 evaluates and shares the two numbers every
        rank decides by), log it, keep the best checkpoint (``save_step`` writes the step checkpoint
        first), warn once about copying; ``show`` gets the progress bar's numbers. True when
        training should stop early."""
        main, tc = self.dist.is_main, self.config.train
        record = self.validator.evaluate(ema.model) if main else None
        mine = [*selection_key(record, tc.select, tc.select_closer), record["closer_than_real"]] if main else [0.0] * 3
        tier, score, closer = from_main(mine, self.dist, self.device)
        better = self.state.update(step, score, int(tier))
        if main:
            self.reporter.evaluation(step, record, better, self.state)
            if show is not None:
                show({"fid": f"{record['fid']:.2f}", "closer": f"{closer:.2f}"})
        if better:
            save_step()
            if main:
                self.save_best(step, model, ema, self.reporter.eval_scores(step))
        if not self.state.warned and closer > CLOSER_WARNING:
            self.state.warned = True
            if main:
                say(memorisation_warning(step, closer, self.best_line()))
        return self.stopped_early()

    def save_best(self, step: int, model: torch.nn.Module, ema, scores: dict | None) -> None:
        """RUN/checkpoints/best from the current weights (rank 0), with the scores that chose them."""
        tc = self.config.train
        record = {"step": step, "select": tc.select, "score": self.state.best_score, "scores": scores}
        if tc.select in FRESH_RULES:  # the tier says whether the score is a fid or the fallback's closer
            record.update(tier=self.state.best_tier, select_closer=tc.select_closer)
        save_best(
            self.out,
            model.state_dict(),
            ema.state_dict(),
            record,
            metadata={MODEL_METADATA: json.dumps(self.config.to_dict()["model"])},
        )

    def sync_best(self, step: int, model: torch.nn.Module, ema) -> None:
        """After resuming at ``step``: a crash between the step checkpoint of a new best and
        RUN/checkpoints/best left the best one behind; the resumed weights are that best, so write
        them (rank 0)."""
        best_step = self.state.best_step
        if not self.dist.is_main or self.validator is None or best_step != step:
            return
        found = read_best(self.out)
        if found is None or found.get("step") != best_step:
            self.save_best(step, model, ema, self.reporter.eval_scores(best_step))

    def best_line(self) -> str:
        """Where the best checkpoint so far is, for the warning and the early stop's line."""
        s = self.state
        if s.best_step is None:
            return "no evaluation has scored yet"
        tc = self.config.train
        closer = None
        if tc.select in FRESH_RULES and s.best_tier == 0:
            closer = (self.reporter.eval_scores(s.best_step) or {}).get("closer_than_real")
        how = describe_choice(tc.select, s.best_score, s.best_tier, closer, tc.select_closer)
        return f"the best checkpoint so far is {self.reporter.run.best} (step {s.best_step}, {how})"

    def say_early_stop(self, step: int) -> None:
        """Log and say that training stops early at ``step``."""
        s, k = self.state, self.config.train.early_stop
        self.reporter.event({"step": step, "early_stop": {"evaluations": k, "best_step": s.best_step}})
        if self.dist.is_main:
            say(
                f"ddkit: early stop at step {step}: {k} evaluation{'s' * (k != 1)} without a better val "
                f"{self.config.train.select}; {self.best_line()}"
            )
