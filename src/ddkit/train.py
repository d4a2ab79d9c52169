"""The trainer: L_simple with AdamW, warm-up then cosine learning rate, gradient clipping, EMA,
atomic checkpoints, exact resume and DistributedDataParallel (torchrun).

Run folder (RUN/): config.json, checkpoints/step-NNNNNN/ (checkpoint.py), log.jsonl (one JSON
object per logged step: step, loss, lr, images_per_s, elapsed_s), samples/step-NNNNNN.png (a grid
from the EMA model, or a scatter plot for 2-D data) and loss.png. Only rank 0 writes.

Exact resume: every random draw of training comes from explicit generators whose states are in
the checkpoint (data order, t, noise, label dropout, dropout), so a run interrupted and resumed
with ``resume=True`` ends with the same weights as an uninterrupted one (with a ``steps`` budget;
a ``minutes`` budget depends on the clock).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as torch_dist
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import clean_incomplete, latest_checkpoint, load_train_state, load_weights, save_checkpoint
from .config import DataConfig, RunConfig
from .data import Dataset, load_data, split_holdout
from .ema import EMA
from .losses import diffusion_loss
from .nn import build_model
from .precision import resolve_precision
from .reporting import write_progress_images
from .runlock import RunLock
from .tensorboard_log import make_logger
from .safety import MODEL_METADATA, NonFiniteLossError, StopRequest, TrainingInterrupted, check_writable, \
    fused_adamw_supported as _fused_adamw, load_matching, nonfinite_message


@dataclass(frozen=True)
class DistContext:
    """Which process this is. ``world_size == 1`` means no torch.distributed."""

    rank: int = 0
    world_size: int = 1
    restart_count: int = 0  # torchrun's TORCHELASTIC_RESTART_COUNT: > 0 after a worker failed


    @property
    def is_main(self) -> bool:
        return self.rank == 0


class ShardedBatches:
    """Index batches: each epoch a seeded permutation, cut to a whole number of global batches
    (``steps_per_epoch · world_size · batch`` indices; the rest of the epoch, fewer than one global
    batch, is dropped and differs from epoch to epoch), each rank its own strided shard of it,
    ``batch`` indices per step. Every rank gets the same number of batches per epoch and the
    shards of one epoch never overlap, whatever ``n``."""

    def __init__(self, n: int, batch: int, seed: int, dist: DistContext):
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch size per process must be a positive integer, got {batch!r}")
        shard = n // dist.world_size
        if batch > shard:
            raise ValueError(f"batch size per process ({batch}) exceeds the examples per process ({shard}); "
                             f"use --batch-size <= {shard * dist.world_size}")
        self.n, self.batch, self.seed, self.dist = n, batch, seed, dist
        self.steps_per_epoch = n // (batch * dist.world_size)
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[:self.steps_per_epoch * self.batch * self.dist.world_size]
        return perm[self.dist.rank::self.dist.world_size]

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._epoch_order()
        idx = self._order[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._epoch_order()


class DiffusionObjective:
    """What the trainer minimises for a diffusion run: L_simple (or its min-SNR weighting) on
    ``q_sample``d batches, with label dropout to the null label for classifier-free guidance.

    The trainer only calls :meth:`loss` and :meth:`preview`; another objective with the same two
    methods (the noisy classifier's cross-entropy) reuses the whole trainer: EMA, checkpoints,
    resume, progress bar and torchrun.
    """

    def __init__(self, config: RunConfig, num_classes: int | None):
        self.config, self.num_classes = config, num_classes
        self.schedule = config.diffusion.build()

    def loss(self, net: nn.Module, x0: torch.Tensor, y: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """x0: [B, ...]; y: LongTensor [B] or None; every random draw from ``generator``."""
        tc = self.config.train
        if tc.class_cond:
            drop = torch.rand(y.shape, generator=generator, device=y.device) < tc.label_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        else:
            y = None
        return diffusion_loss(lambda x, t: net(x, t, y), self.schedule, x0, generator=generator,
                              weighting=tc.loss_weighting, snr_gamma=tc.snr_gamma,
                              prediction=self.config.diffusion.prediction)

    def preview(self, out: Path, step: int, ema_model: nn.Module, data: Dataset, history) -> None:
        """RUN/samples/step-N.png and RUN/loss.png (rank 0 only)."""
        write_progress_images(out, step, ema_model, self.schedule, data, self.config.train, history,
                              prediction=self.config.diffusion.prediction)


def learning_rate(cfg, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr·min_lr_ratio`` as
    ``progress`` (the fraction of the budget spent, by steps or by minutes) goes from 0 to 1."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class Trainer:
    """Holds one run's model, EMA, optimizer, data and generators; ``run()`` trains it."""

    def __init__(self, config: RunConfig, out: str | Path, *, resume: bool = False,
                 dist: DistContext = DistContext(), progress: bool | None = None, data: Dataset | None = None,
                 objective=None):
        self.config, self.out, self.dist, self.progress = config, Path(out), dist, progress
        tc = config.train
        self.device = torch.device(tc.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device")
        self.data = data if data is not None else load_run_data(config.data, tc.seed)
        _check_compatible(config, self.data)
        self.objective = objective or DiffusionObjective(config, self.data.num_classes)
        torch.manual_seed(tc.seed)  # the initial weights are the same on every rank
        self.model = build_model(config.model).to(self.device)
        self.logger = make_logger(tc.log_to, self.out) if dist.is_main else None  # --log-to
        self.config = config = _resolve_precision(config, self.model, self.device, dist.is_main)
        self.ema = EMA(self.model, tc.ema_decay)
        self.net = self.model
        if dist.world_size > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # the fused kernel (CPU and CUDA): one pass over all parameters, about 5 % more images/s
        # for the digits UNet on 2 CPU cores than the per-tensor loop
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, betas=tuple(tc.adam_betas),
                                           weight_decay=tc.weight_decay, fused=_fused_adamw(self.device))
        self.scaler = torch.amp.GradScaler("cuda", enabled=tc.precision == "fp16")
        self.skipped = 0  # non-finite batches skipped so far (--skip-nonfinite)
        self.batches = ShardedBatches(len(self.data.x), tc.batch_size // dist.world_size, tc.seed, dist)
        # training randomness (t, noise, label dropout) on the training device; dropout uses torch's
        # default generator, re-seeded per rank
        self.gen = torch.Generator(self.device).manual_seed(tc.seed * 7 + 1 + dist.rank)
        torch.manual_seed(tc.seed * 13 + 3 + dist.rank)
        self.step, self.elapsed = 0, 0.0
        self.history: list[tuple[int, float]] = []
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
            clean_incomplete(self.out)
            if not resume and latest_checkpoint(self.out) is not None:
                raise ValueError(f"{self.out} already holds a run with checkpoints; continue it with --resume "
                                 "or train into another --out")
            check_writable(self.out, self.model)
        ckpt = latest_checkpoint(self.out) if resume else None
        if ckpt is not None:
            self._resume(ckpt)
        if self.dist.is_main:
            self.config.save(self.out / "config.json")  # a resumed run records its new budget
            if ckpt is None:
                (self.out / "log.jsonl").write_text("")

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
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _gather_rank_states(self, mine: dict) -> list[dict]:
        """Every rank's own part of ``mine`` (data position and generators differ by rank)."""
        states: list = [None] * self.dist.world_size
        torch_dist.all_gather_object(states, {k: mine[k] for k in ("batches", "gen", "torch_rng", "cuda_rng") if k in mine})
        return states

    def _resume(self, ckpt: Path) -> None:
        state = load_train_state(ckpt / "state.pt")
        load_matching(self.model, ckpt / "model.safetensors", self.config.to_dict()["model"], self.device)
        self.ema.load_state_dict(load_weights(ckpt / "ema.safetensors", self.device), int(state["ema_updates"]))
        self.skipped = int(state.get("skipped_nonfinite", 0))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        mine = state["ranks"][self.dist.rank] if self.dist.world_size > 1 else state
        self.batches.load(mine["batches"])
        self.gen.set_state(mine["gen"])
        torch.set_rng_state(mine["torch_rng"])
        if "cuda_rng" in mine:
            torch.cuda.set_rng_state(mine["cuda_rng"], self.device)
        if self.dist.is_main:
            self.history = _truncate_log(self.out / "log.jsonl", self.step)

    def save(self) -> None:
        state = self._state()
        if self.dist.world_size > 1:
            state["ranks"] = self._gather_rank_states(state)
        if self.dist.is_main:
            save_checkpoint(self.out, self.step, self.model.state_dict(), self.ema.state_dict(), state,
                            keep=self.config.train.keep_checkpoints, keep_steps=self.config.train.keep_steps,
                            metadata={MODEL_METADATA: json.dumps(self.config.to_dict()["model"])})
        if self.dist.world_size > 1:
            torch_dist.barrier()

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
        done = self._progress_fraction() >= 1.0
        if self.dist.world_size > 1 and self.config.train.minutes is not None:
            flag = torch.tensor([float(done)], device=self.device if self.device.type == "cuda" else "cpu")
            torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)  # rank clocks differ; stop together
            done = bool(flag.item())
        return done

    def _agree(self, flag: bool) -> bool:
        """True on every rank when it is true on any (ranks must take the same branch)."""
        if self.dist.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
        return bool(t.item())

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
        if self._agree(not bool(torch.isfinite(loss.detach()).all())):
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
            last_saved, last_drawn = self._loop()
            if self.step != last_drawn or not (self.out / "samples").is_dir():
                self._draw()
            if self.step != last_saved or latest_checkpoint(self.out) is None:
                self.save()
        finally:
            self.lock.release()
            if self.logger is not None:
                self.logger.close()
        return self.out

    def _loop(self) -> tuple[int, int]:
        tc = self.config.train
        bar = tqdm(total=tc.steps, initial=self.step, disable=not self.dist.is_main or self.progress is False,
                   desc="train", dynamic_ncols=True, unit="step")
        window, t_window, n_window = [], time.perf_counter(), 0
        last_saved = last_drawn = self.step
        t_last = time.perf_counter()
        with bar, StopRequest() as stop:
            while not self._done():
                loss = self.train_step()
                now = time.perf_counter()  # the budget counts all the loop does, saving and drawing too
                self.elapsed, t_last = self.elapsed + now - t_last, now
                if loss is None:
                    self._skip_nonfinite()
                    continue
                window.append(loss)
                n_window += tc.batch_size
                bar.update(1)
                if self.step % tc.log_every == 0:
                    loss = torch.stack(window).float().mean().item()
                    rate = n_window / max(time.perf_counter() - t_window, 1e-9)
                    self._log(loss, rate)
                    bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:.0f}")
                    window, t_window, n_window = [], time.perf_counter(), 0
                if self.step % tc.sample_every == 0:
                    self._draw()
                    last_drawn = self.step
                if self.step % tc.ckpt_every == 0:
                    self.save()
                    last_saved = self.step
                if self._agree(stop.requested):
                    if self.step != last_saved:
                        self.save()
                    raise TrainingInterrupted(self.step, latest_checkpoint(self.out) if self.dist.is_main else None)
        return last_saved, last_drawn

    def _skip_nonfinite(self) -> None:
        """A batch whose loss was not finite: skip it (logged) or stop, as ``skip_nonfinite`` says."""
        self.skipped += 1
        allowed = getattr(self.config.train, "skip_nonfinite", 0)
        if self.skipped > allowed:
            raise NonFiniteLossError(nonfinite_message(self.step + 1, latest_checkpoint(self.out), allowed))
        if self.dist.is_main:
            with open(self.out / "log.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step + 1, "skipped_nonfinite": self.skipped}) + "\n")

    def _log(self, loss: float, rate: float) -> None:
        if not self.dist.is_main:
            return
        self.history.append((self.step, loss))
        record = {"step": self.step, "loss": loss, "lr": self.optimizer.param_groups[0]["lr"],
                  "images_per_s": rate, "elapsed_s": self.elapsed}
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.logger is not None:
            self.logger.scalars(self.step, {k: record[k] for k in ("loss", "lr", "images_per_s")})

    def _draw(self) -> None:
        if self.dist.is_main:
            self.objective.preview(self.out, self.step, self.ema.model, self.data, self.history)
            if self.logger is not None:
                self.logger.image(self.step, "samples", self.out / "samples" / f"step-{self.step:06d}.png")


def _resolve_precision(config: RunConfig, model: nn.Module, device: torch.device, announce: bool) -> RunConfig:
    """``--precision auto`` resolved for this hardware and model (ddkit.precision), said on stderr;
    the returned config (saved as config.json) records the choice."""
    if config.train.precision != "auto":
        return config
    precision, why = resolve_precision("auto", device, model)
    if announce:
        print(f"ddkit: precision auto -> {precision} ({why})", file=sys.stderr)
    return config.replace(train=dataclasses.replace(config.train, precision=precision))


def _check_compatible(config: RunConfig, data: Dataset) -> None:
    """The model must fit the data; class conditioning needs labels."""
    m = config.model
    if data.kind == "image":
        c, size = data.x.shape[1], data.x.shape[2]
        if (getattr(m, "image_size", None), getattr(m, "in_channels", None)) != (size, c):
            raise ValueError(f"the model does not fit the data: data are {c}x{size}x{size} images")
    elif getattr(m, "dim", None) != data.x.shape[1]:
        raise ValueError(f"the model does not fit the data: data are {data.x.shape[1]}-D points")
    if config.train.class_cond:
        if data.y is None:
            raise ValueError(f"--class-cond needs labelled data; {data.source} has no labels (use sub-folders as classes)")
        if getattr(m, "num_classes", None) != data.num_classes:
            raise ValueError(f"model num_classes={m.num_classes} but the data have {data.num_classes} classes")


def _truncate_log(path: Path, step: int) -> list[tuple[int, float]]:
    """Drop log lines written after the checkpoint we resume from; return (step, loss) history."""
    keep, history = [], []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut short by a crash ends the valid log
            if rec["step"] > step:
                break
            keep.append(line)
            if "loss" in rec:  # skipped non-finite batches are logged without a loss
                history.append((rec["step"], rec["loss"]))
    tmp = path.with_name(f".{path.name}.tmp")  # atomic: a crash here never empties the log
    tmp.write_text("".join(l + "\n" for l in keep))
    os.replace(tmp, path)
    return history


def load_run_data(d: DataConfig, seed: int, part: str = "train") -> Dataset:
    """The data set a run's DataConfig names (``seed`` draws the toy sets). With ``d.holdout`` > 0,
    ``part`` "train" (what the trainer sees) or "heldout" (kept for evaluation; data.split_holdout)."""
    data = load_data(d.source, image_size=d.image_size, channels=d.channels, seed=seed, toy_size=d.toy_size)
    if d.holdout == 0 and part == "train":
        return data
    return split_holdout(data, d.holdout, d.holdout_seed, part)


def train(config: RunConfig, out: str | Path, *, resume: bool = False, dist: DistContext = DistContext(),
          progress: bool | None = None, data: Dataset | None = None, objective=None) -> Path:
    """Train a run into ``out`` (or continue the newest checkpoint there with ``resume``).
    ``data``: the data set ``config.data`` names, when the caller has already loaded it;
    ``objective``: what to minimise (default :class:`DiffusionObjective`)."""
    return Trainer(config, out, resume=resume, dist=dist, progress=progress, data=data, objective=objective).run()
