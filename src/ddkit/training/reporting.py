"""What the trainer reports while it runs: log.jsonl lines (and TensorBoard scalars), the progress
bar's figures, a sample grid (or scatter plot) and the loss curve. Rank 0 alone reports."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ..data.images import save_grid, save_loss_curve, save_points_plot, to_uint8
from ..generate import generate
from ..parameterization import eps_network
from .rundir import RunDir
from .tensorboard_log import make_logger

PREVIEW_IMAGES = 64
PREVIEW_POINTS = 2000


def preview_labels(num: int, num_classes: int | None) -> torch.Tensor | None:
    """Labels 0, 1, …, K-1, 0, 1, … for a class-conditional preview (None when unconditional)."""
    return None if num_classes is None else torch.arange(num) % num_classes


def write_progress_images(
    out: Path, step: int, ema_model, schedule, data, train_cfg, history, prediction: str = "eps"
) -> None:
    """RUN/samples/step-NNNNNN.png from the EMA model (DDIM, 50 steps, η = 0, fixed seed; a network
    that predicts ``prediction`` = x0 or v is converted to ε first) and RUN/loss.png from the logged losses."""
    ema_model = eps_network(ema_model, prediction, schedule)
    num = PREVIEW_IMAGES if data.kind == "image" else PREVIEW_POINTS
    labels = preview_labels(num, data.num_classes) if train_cfg.class_cond else None
    x = generate(
        ema_model,
        schedule,
        num,
        steps=min(50, schedule.num_timesteps),
        seed=train_cfg.seed,
        labels=labels,
        clip_x0=(-1.0, 1.0) if data.kind == "image" else None,
        device=next(ema_model.parameters()).device,
    )
    path = RunDir(out).samples(step)
    if data.kind == "image":
        nrow = data.num_classes if labels is not None else None
        save_grid(to_uint8(x), path, nrow=nrow)
    else:
        save_points_plot(x.numpy(), path, labels=None if labels is None else labels.numpy())
    if history:
        steps, losses = zip(*history)
        save_loss_curve(list(steps), list(losses), RunDir(out).loss_plot)


class Reporter:
    """The trainer's reports on rank 0: loss lines averaged over a window of steps (log.jsonl,
    TensorBoard, the progress bar), and the history the loss curve is drawn from."""

    def __init__(self, run: RunDir, log_to: str, batch_size: int, is_main: bool):
        self.run, self.batch_size, self.is_main = run, batch_size, is_main
        self.logger = make_logger(log_to, run.root) if is_main else None
        self.history: list[tuple[int, float]] = []
        self._window: list[torch.Tensor] = []
        self._since = time.perf_counter()

    def resume(self, step: int) -> None:
        """Drop what the log holds past ``step`` and take the loss history from the rest."""
        self._since = time.perf_counter()
        if self.is_main:
            kept = self.run.truncate_log(step)
            self.history = [(r["step"], r["loss"]) for r in kept if "loss" in r]

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

    def image(self, step: int, tag: str, path: Path) -> None:
        if self.logger is not None:
            self.logger.image(step, tag, path)

    def close(self) -> None:
        if self.logger is not None:
            self.logger.close()
