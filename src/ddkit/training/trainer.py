"""The trainer: AdamW with warm-up then a cosine learning rate, gradient clipping, EMA, atomic
checkpoints, exact resume and DistributedDataParallel (torchrun), around an objective
(:mod:`.objectives`) that says what to minimise.

The run folder's layout belongs to :class:`~ddkit.training.rundir.RunDir`; checkpoints to
:mod:`.checkpoint`; what the run reports to :mod:`.reporting`; the processes to :mod:`.distributed`.

Exact resume: every random draw of training comes from explicit generators whose states are in
the checkpoint (data order, t, noise, label dropout, dropout), so a run interrupted and resumed
with ``resume=True`` ends with the same weights as an uninterrupted one (with a ``steps`` budget;
a ``minutes`` budget depends on the clock).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checks import ParameterError
from ..data import Dataset, load_run_data
from ..nn import build_model
from .augment import default_ops
from .checkpoint import (
    MODEL_METADATA,
    checkpoint_bytes,
    clean_incomplete,
    latest_checkpoint,
    load_matching,
    load_train_state,
    load_weights,
    recover_best,
    save_checkpoint,
)
from .config import RunConfig, measure_sigma_data
from .distributed import DistContext, ShardedBatches, agree, agree_each, barrier, gather_rank_states
from .ema import EMA
from .objectives import DiffusionObjective
from .precision import fused_adamw_supported, resolve_precision
from .reporting import Reporter
from .rundir import RunDir, RunLock
from .selection import ModelSelection
from .stops import NonFiniteLossError, StopRequest, TrainingInterrupted, nonfinite_message
from .validation import EvalState, Validator, say


def learning_rate(cfg, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr·min_lr_ratio`` as
    ``progress`` (the fraction of the budget spent, by steps or by minutes) goes from 0 to 1."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class Trainer:
    """Holds one run's model, EMA, optimizer, data and generators; ``run()`` trains it."""

    def __init__(
        self,
        config: RunConfig,
        out: str | Path,
        *,
        resume: bool = False,
        dist: DistContext | None = None,
        progress: bool | None = None,
        data: Dataset | None = None,
        objective=None,
    ):
        dist = dist or DistContext()
        self.run_dir, self.out, self.dist, self.progress = RunDir(out), Path(out), dist, progress
        tc = config.train
        self.device = torch.device(tc.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ParameterError("`device` cuda was asked for, but torch sees no CUDA device")
        self.data = data if data is not None else load_run_data(config.data, tc.seed)
        check_compatible(config, self.data)
        config = resolve_formulation(config, self.data)
        self.objective = objective or DiffusionObjective(config, self.data.num_classes)
        torch.manual_seed(tc.seed)  # the initial weights are the same on every rank
        self.model = build_model(config.model).to(self.device)
        # optional packages (--log-to tensorboard, evaluation's features and plots) are checked here,
        # before anything is said or done
        self.reporter = Reporter(self.run_dir, tc.log_to, tc.batch_size, dist.is_main)
        validator = Validator(config, self.data, self.objective, self.device) if config.evaluates else None
        if validator is not None:
            self.reporter.plan_val_plot(tc.select)
        self.config = config = _resolve_precision(config, self.model, self.device, dist.is_main)
        self.selection = ModelSelection(config, validator, self.out, self.reporter, dist, self.device)
        self.ema = EMA(self.model, tc.ema_decay)
        self.net = self.model
        if dist.world_size > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        # the fused kernel (CPU and CUDA): one pass over all parameters
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=tc.lr,
            betas=tuple(tc.adam_betas),
            weight_decay=tc.weight_decay,
            fused=fused_adamw_supported(self.device),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=tc.precision == "fp16")
        self.skipped = 0  # non-finite batches skipped so far (skip_nonfinite)
        self.batches = ShardedBatches(len(self.data.x), tc.batch_size // dist.world_size, tc.seed, dist)
        # training randomness (t, noise, label dropout) on the training device; dropout uses torch's
        # default generator, re-seeded per rank
        self.gen = torch.Generator(self.device).manual_seed(tc.seed * 7 + 1 + dist.rank)
        torch.manual_seed(tc.seed * 13 + 3 + dist.rank)
        self.step, self.elapsed = 0, 0.0
        self.saved_step = None  # the step of the newest checkpoint this process wrote or resumed
        self.saved_elapsed = 0.0  # the training time at that checkpoint (ckpt_minutes counts from it)
        self._bar_values: dict = {}  # the progress bar's numbers: the loss line and the latest evaluation
        self.lock = RunLock(self.out)
        try:
            self._open_run(resume)
        except BaseException:
            self.lock.release()
            raise

    def _open_run(self, resume: bool) -> None:
        """Lock the run (rank 0), clean what a crash left, then continue the newest complete
        checkpoint (``resume``) or start from scratch (also when ``resume`` finds none)."""
        if self.dist.is_main:
            # torchrun's restarted rank 0 may start while the killed group's rank 0 still exits
            self.lock.acquire(wait=30.0 if self.dist.restart_count else 0.0)
            recover_best(self.out)  # before clean_incomplete, which removes every .tmp-*
            clean_incomplete(self.out)
            if not resume and latest_checkpoint(self.out) is not None:
                raise ParameterError(
                    f"{self.out} already holds a run with checkpoints; continue it with `resume` "
                    "or train into another `out`"
                )
            self.run_dir.check_writable(checkpoint_bytes(self.model))
        ckpt = latest_checkpoint(self.out) if resume else None
        if ckpt is not None:
            self._resume(ckpt)
            self.reporter.resume(self.step)
            self.selection.sync_best(self.step, self.model, self.ema)
        else:
            self.reporter.start()
        if self.dist.is_main:
            self.config.save(self.run_dir.config)  # a resumed run records its new budget

    # ---- state ------------------------------------------------------------------------------
    def _state(self) -> dict:
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "ema_updates": self.ema.num_updates,
            "skipped_nonfinite": self.skipped,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "batches": self.batches.state(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "eval": self.selection.state.to_dict(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _resume(self, ckpt: Path) -> None:
        state = load_train_state(ckpt / "state.pt")
        load_matching(self.model, ckpt / "model.safetensors", self.config.to_dict()["model"], self.device)
        self.ema.load_state_dict(load_weights(ckpt / "ema.safetensors", self.device), int(state["ema_updates"]))
        self.skipped = int(state.get("skipped_nonfinite", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.saved_step, self.saved_elapsed = self.step, self.elapsed
        self.selection.state = EvalState.from_dict(state.get("eval"))
        mine = state["ranks"][self.dist.rank] if self.dist.world_size > 1 else state
        self.batches.load(mine["batches"])
        self.gen.set_state(mine["gen"])
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine:
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)

    def save(self) -> None:
        state = self._state()
        if self.dist.world_size > 1:
            state["ranks"] = gather_rank_states(state, self.dist)
        if self.dist.is_main:
            save_checkpoint(
                self.out,
                self.step,
                self.model.state_dict(),
                self.ema.state_dict(),
                state,
                keep=self.config.train.keep_checkpoints,
                keep_steps=self.config.train.keep_steps,
                metadata={MODEL_METADATA: json.dumps(self.config.to_dict()["model"])},
            )
        self.saved_step, self.saved_elapsed = self.step, self.elapsed
        barrier(self.dist)

    # ---- evaluation on the validation part (training.selection) -------------------------------
    def _evaluate(self, bar=None) -> bool:
        """Evaluate and select (:meth:`ModelSelection.evaluate`); True when training stops early."""
        show = (lambda values: bar.set_postfix(self._postfix(**values))) if bar is not None else None
        return self.selection.evaluate(self.step, self.model, self.ema, self._save_if_new, show)

    def _save_if_new(self) -> None:
        """A step checkpoint of the current step, unless this process already wrote or resumed it."""
        if self.saved_step != self.step:
            self.save()

    def _postfix(self, **values) -> dict:
        self._bar_values = {**self._bar_values, **values}
        return self._bar_values

    # ---- training ---------------------------------------------------------------------------
    def _progress_fraction(self) -> float:
        tc = self.config.train
        fracs = []
        if tc.steps is not None:
            fracs.append(self.step / tc.steps)
        if tc.minutes is not None:
            fracs.append(self.elapsed / (60 * tc.minutes))
        return max(fracs)

    def _done(self) -> bool:
        if self.selection.stopped_early():
            return True
        done = self._progress_fraction() >= 1.0
        if self.config.train.minutes is not None:
            done = agree(done, self.dist, self.device)  # rank clocks differ; stop together
        return done

    def train_step(self) -> torch.Tensor | None:
        """One optimizer step; returns the loss, or None (nothing changed but the data position and
        the generators) when the loss was not finite on some rank."""
        tc = self.config.train
        idx = self.batches.next()
        x0 = self.data.x[idx].to(self.device, non_blocking=True)
        y = None if self.data.y is None else self.data.y[idx].to(self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(tc, self.step, self._progress_fraction())
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(tc.precision)
        with torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = self.objective.loss(self.net, x0, y, self.gen)
        if agree(not bool(torch.isfinite(loss.detach()).all()), self.dist, self.device):
            return None  # checked before backward: a NaN never reaches the weights
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if tc.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach()

    def run(self) -> Path:
        """Train until the budget is spent; checkpoint, log and draw samples on the way.

        Ctrl-C (SIGINT) stops after the current step and writes a checkpoint, then raises
        :class:`TrainingInterrupted`. A non-finite loss raises :class:`NonFiniteLossError` before it
        touches the weights (the last checkpoint stays the newest), unless ``skip_nonfinite``
        allows skipping that batch. The run's lock is released on the way out."""
        try:
            if self.selection.stopped_early() and self.dist.is_main:
                say(f"ddkit: note: {self.out} stopped early at step {self.step} already; raise early_stop to go on")
            last_drawn = self._loop()
            if self.selection.final_due(self.step):
                self._evaluate()  # the final weights are a candidate too
            if self.step != last_drawn or not self.run_dir.samples(0).parent.is_dir():
                self._draw()
            if self.step != self.saved_step or latest_checkpoint(self.out) is None:
                self.save()
        finally:
            self.lock.release()
            self.reporter.close()
        return self.out

    def _loop(self) -> int:
        tc = self.config.train
        bar = tqdm(
            total=tc.steps,
            initial=self.step,
            disable=not self.dist.is_main or self.progress is False,
            desc="train",
            dynamic_ncols=True,
            unit="step",
        )
        last_drawn = self.step
        t_last = time.perf_counter()
        with bar, StopRequest() as stop:
            while not self._done():
                loss = self.train_step()
                now = time.perf_counter()  # the budget counts all the loop does, saving and drawing too
                self.elapsed, t_last = self.elapsed + now - t_last, now
                if loss is None:
                    self._skip_nonfinite()
                    continue
                self.reporter.loss(loss)
                bar.update(1)
                if self.step % tc.log_every == 0:
                    record = self.reporter.line(self.step, self.optimizer.param_groups[0]["lr"], self.elapsed)
                    if record is not None:
                        postfix = self._postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
                        bar.set_postfix(postfix)
                # evaluation before the step checkpoint: a checkpoint of step N implies N's evaluation
                early = self.selection.due(self.step) and self._evaluate(bar)
                if early:
                    self.selection.say_early_stop(self.step)
                if self.step % tc.sample_every == 0:
                    self._draw()
                    last_drawn = self.step
                # one collective for both decisions: rank clocks differ, ranks must save together
                stopping, overdue = agree_each((stop.requested, self._checkpoint_overdue()), self.dist, self.device)
                if self.step % tc.ckpt_every == 0 or overdue:
                    self._save_if_new()
                if early:
                    break  # run() writes the final checkpoint
                if stopping:
                    self._save_if_new()
                    raise TrainingInterrupted(self.step, latest_checkpoint(self.out) if self.dist.is_main else None)
        return last_drawn

    def _checkpoint_overdue(self) -> bool:
        """``ckpt_minutes`` of training time have passed since the newest checkpoint (or the start)."""
        minutes = self.config.train.ckpt_minutes
        return minutes > 0 and self.elapsed - self.saved_elapsed >= 60 * minutes

    def _skip_nonfinite(self) -> None:
        """A batch whose loss was not finite: skip it (logged) or stop, as ``skip_nonfinite`` says."""
        self.skipped += 1
        allowed = self.config.train.skip_nonfinite
        if self.skipped > allowed:
            raise NonFiniteLossError(nonfinite_message(self.step + 1, latest_checkpoint(self.out), allowed))
        self.reporter.event({"step": self.step + 1, "skipped_nonfinite": self.skipped})

    def _draw(self) -> None:
        if self.dist.is_main:
            self.objective.preview(self.out, self.step, self.ema.model, self.data, self.reporter.history)
            self.reporter.image(self.step, "samples", self.run_dir.samples(self.step))


def _resolve_precision(config: RunConfig, model: nn.Module, device: torch.device, announce: bool) -> RunConfig:
    """``precision="auto"`` resolved for this hardware and model (training.precision), said on stderr;
    the returned config (saved as config.json) records the choice."""
    if config.train.precision != "auto":
        return config
    precision, why = resolve_precision("auto", device, model)
    if announce:
        print(f"ddkit: precision auto -> {precision} ({why})", file=sys.stderr)
    return config.replace(train=dataclasses.replace(config.train, precision=precision))


def resolve_formulation(config: RunConfig, data: Dataset) -> RunConfig:
    """What a config leaves to the data, decided and recorded (config.json): the augmentation's
    operations (:func:`~.augment.default_ops`) and EDM's σ_data, the standard deviation of the
    training data's values (:func:`~.config.measure_sigma_data`)."""
    tc, d = config.train, config.diffusion
    if tc.augment > 0 and tc.augment_ops is None:
        config = config.replace(train=dataclasses.replace(tc, augment_ops=default_ops(config.data.source)))
    if d.preconditioning == "edm" and d.sigma_data is None:
        config = config.replace(diffusion=dataclasses.replace(d, sigma_data=measure_sigma_data(data.x)))
    return config


def check_compatible(config: RunConfig, data: Dataset) -> None:
    """The model must fit the data; class conditioning needs labels."""
    m = config.model
    if data.kind == "image":
        c, size = data.x.shape[1], data.x.shape[2]
        if (getattr(m, "image_size", None), getattr(m, "in_channels", None)) != (size, c):
            raise ValueError(f"the model does not fit the data: data are {c}x{size}x{size} images")
    elif getattr(m, "dim", None) != data.x.shape[1]:
        raise ValueError(f"the model does not fit the data: data are {data.x.shape[1]}-D points")
    if config.train.augment > 0 and data.kind != "image":
        raise ParameterError(f"`augment` (geometric augmentation) is for images; {data.source} holds 2-D points")
    if config.train.class_cond:
        if data.y is None:
            raise ParameterError(
                f"`class_cond` needs labelled data; {data.source} has no labels (use sub-folders as classes)"
            )
        if getattr(m, "num_classes", None) != data.num_classes:
            raise ValueError(f"model num_classes={m.num_classes} but the data have {data.num_classes} classes")
