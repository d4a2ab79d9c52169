"""What the trainer reports while it runs: log.jsonl lines (and TensorBoard scalars), the progress
bar's figures, a sample grid (or scatter plot), the loss curve, and the evaluations on the
validation part (log.jsonl ``{"step", "eval": {...}}``, TensorBoard ``eval/…``, RUN/val.png). Rank 0
alone reports."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from ..data.images import save_grid, to_uint8
from ..generate import generate
from ..plots import MISSING, have_matplotlib, plot_loss_curve, plot_points
from .rundir import RunDir
from .tensorboard_log import TensorBoardLogger

PREVIEW_IMAGES = 64
PREVIEW_POINTS = 2000


def write_progress_images(out: Path, step: int, eps_model, schedule, data, train_cfg, history, **sampling) -> None:
    """RUN/samples/step-NNNNNN.png from the ε-network ``eps_model`` (the EMA weights; ``sampling``:
    :func:`~ddkit.generate.generate`'s sampler and its options, by default DDIM, 50 steps, η = 0; fixed
    seed; labels 0, 1, …, K-1, 0, … for a class-conditional run; a scatter plot for 2-D points) and
    RUN/loss.png from the logged losses. The scatter and the loss curve are matplotlib figures, skipped
    without it (the :class:`Reporter` says so once, before training)."""
    num = PREVIEW_IMAGES if data.kind == "image" else PREVIEW_POINTS
    labels = torch.arange(num) % data.num_classes if train_cfg.class_cond else None
    x = generate(
        eps_model,
        schedule,
        num,
        **(sampling or {"steps": min(50, schedule.num_timesteps)}),
        seed=train_cfg.seed,
        labels=labels,
        clip_x0=(-1.0, 1.0) if data.kind == "image" else None,
        device=next(eps_model.parameters()).device,
    )
    path = RunDir(out).samples(step)
    if data.kind == "image":
        nrow = data.num_classes if labels is not None else None
        save_grid(to_uint8(x), path, nrow=nrow)
    elif have_matplotlib():
        plot_points(x.numpy(), path, labels=None if labels is None else labels.numpy())
    if history and have_matplotlib():
        steps, losses = zip(*history)
        plot_loss_curve(list(steps), list(losses), RunDir(out).loss_plot)


class Reporter:
    """The trainer's reports on rank 0: loss lines averaged over a window of steps (log.jsonl,
    TensorBoard, the progress bar), and the history the loss curve is drawn from."""

    def __init__(self, run: RunDir, log_to: str, batch_size: int, is_main: bool):
        self.run, self.batch_size, self.is_main = run, batch_size, is_main
        # log_to: none or tensorboard (TrainConfig.log_to); a one-line ValueError when tensorboard is missing
        self.logger = TensorBoardLogger(run.root) if is_main and log_to == "tensorboard" else None
        self.history: list[tuple[int, float]] = []
        self.evals: list[dict] = []  # the "eval" records so far, each with its "step"
        self.val_plot: str | None = None  # the select metric, when RUN/val.png is drawn
        self._window: list[torch.Tensor] = []
        self._since = time.perf_counter()
        if is_main and not have_matplotlib():
            print(
                f"ddkit: note: {MISSING}; RUN/loss.png and the scatter previews of 2-D data are skipped",
                file=sys.stderr,
            )

    def resume(self, step: int) -> None:
        """Drop what the log holds past ``step`` and take the loss history from the rest."""
        self._since = time.perf_counter()
        if self.is_main:
            kept = self.run.truncate_log(step)
            self.history = [(r["step"], r["loss"]) for r in kept if "loss" in r]
            self.evals = [{"step": r["step"], **r["eval"]} for r in kept if isinstance(r.get("eval"), dict)]

    def start(self) -> None:
        """A new run: an empty log."""
        self._since = time.perf_counter()
        if self.is_main:
            self.run.log.write_text("")

    def loss(self, loss: torch.Tensor) -> None:
        """One step's loss (a tensor: no device read until the line is written)."""
        self._window.append(loss)

    def line(self, step: int, lr: float, elapsed: float) -> dict | None:
        """Write the window's mean loss and images/s; returns the record (None off rank 0)."""
        loss = torch.stack(self._window).float().mean().item()
        rate = len(self._window) * self.batch_size / max(time.perf_counter() - self._since, 1e-9)
        self._window, self._since = [], time.perf_counter()
        if not self.is_main:
            return None
        self.history.append((step, loss))
        record = {"step": step, "loss": loss, "lr": lr, "images_per_s": rate, "elapsed_s": elapsed}
        self.run.append_log(record)
        if self.logger is not None:
            self.logger.scalars(step, {k: record[k] for k in ("loss", "lr", "images_per_s")})
        return record

    def event(self, record: dict) -> None:
        """Any other record for log.jsonl (skipped batches, evaluations)."""
        if self.is_main:
            self.run.append_log(record)

    def plan_val_plot(self, select: str) -> None:
        """Draw RUN/val.png after each evaluation when matplotlib is there; else say once, before
        training, that it is skipped."""
        if have_matplotlib():
            self.val_plot = select
        elif self.is_main:
            print(
                f"ddkit: note: {MISSING}; RUN/val.png is skipped, the evaluations still go to log.jsonl",
                file=sys.stderr,
            )

    def evaluation(self, step: int, scores: dict, best: bool, state) -> None:
        """One evaluation (``scores`` from :meth:`~ddkit.training.validation.Validator.evaluate`; ``best``:
        a new best; ``state``: the :class:`~ddkit.training.validation.EvalState` after it): log.jsonl,
        TensorBoard ``eval/…`` (bands as ``eval/loss_gap/0-249`` …), RUN/val.png."""
        if not self.is_main:
            return
        record = {**scores, "best": best, "best_step": state.best_step, "since_best": state.since_best}
        self.run.append_log({"step": step, "eval": record})
        self.evals.append({"step": step, **record})
        if self.logger is not None:
            flat = {k: v for k, v in record.items() if not isinstance(v, (dict, bool))}
            for key in ("loss_val_bands", "loss_train_bands", "loss_gap_bands"):
                flat.update({f"{key[:-6]}/{band}": v for band, v in record[key].items()})
            self.logger.metrics(step, flat)
        if self.val_plot is not None:
            from ..plots import plot_validation

            plot_validation(self.evals, self.run.val_plot, select=self.val_plot)

    def eval_scores(self, step: int) -> dict | None:
        """The scores of the evaluation at ``step`` (None when the log has none)."""
        found = [r for r in self.evals if r["step"] == step]
        return found[-1] if found else None

    def image(self, step: int, tag: str, path: Path) -> None:
        if self.logger is not None:
            self.logger.image(step, tag, path)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
