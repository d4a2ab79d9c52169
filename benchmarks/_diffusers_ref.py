"""Reference recipes built on diffusers, shared by the benchmarks (not part of the ddkit package).

* `cifar10_unet2d`: diffusers' `UNet2DModel` with the config of google/ddpm-cifar10-32 (35.7M
  parameters), for throughput comparisons.
* `RECIPES`: two training recipes on the 8×8 digits, and `train_reference` / `sample_reference` to
  run them for a wall-clock budget and sample them with diffusers' `DDIMScheduler`.

    x0: [N, 1, 8, 8] float32 in [-1, 1]      t: [N] int64 in 0..999      ε: like x0
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

# google/ddpm-cifar10-32's config.json (the DDPM paper's CIFAR-10 network converted to diffusers);
# every option it does not set is the installed diffusers' default. It predates UNet2DModel's
# `dropout` option, so callers choose the dropout (DDPM used 0.1 on CIFAR-10).
CIFAR10_UNET2D_CONFIG = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    act_fn="silu",
    attention_head_dim=None,
    block_out_channels=(128, 256, 256, 256),
    center_input_sample=False,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    layers_per_block=2,
    mid_block_scale_factor=1,
    norm_eps=1e-6,
    norm_num_groups=32,
    time_embedding_type="positional",
)


def cifar10_unet2d(dropout: float = 0.1) -> UNet2DModel:
    """diffusers' UNet2DModel in the DDPM CIFAR-10 configuration (35.7M parameters)."""
    return UNet2DModel(**CIFAR10_UNET2D_CONFIG, dropout=dropout)


@dataclass(frozen=True)
class RefRecipe:
    """A diffusers training recipe for the digits, after examples/unconditional_image_generation."""

    name: str
    block_out_channels: tuple[int, ...]
    norm_num_groups: int
    lr: float
    batch_size: int
    ema_max_decay: float
    # EMAModel's decay at step n, capped at ema_max_decay: 1 − (1 + n/γ)^−p with the warm-up,
    # else diffusers' own ramp (1 + n)/(10 + n)
    ema_warmup: bool
    ema_inv_gamma: float = 1.0
    ema_power: float = 3 / 4
    layers_per_block: int = 2
    adam_betas: tuple[float, float] = (0.95, 0.999)
    adam_weight_decay: float = 1e-6
    adam_eps: float = 1e-8
    lr_warmup_steps: int = 500
    grad_clip: float = 1.0


# (a) train_unconditional.py's defaults with the network: 64/128/128 channels, attention at
#     4×4 (the second level of an 8×8 input). The example's RandomHorizontalFlip is dropped: a
#     mirrored digit is not a digit (a mirrored 2, 3, 4, 7 or 9 is a different shape).
# (b) the same recipe sized for a CPU: 32/64/64, 8 GroupNorm groups, lr 5e-4, batch 128, EMA 0.999.
RECIPES: dict[str, RefRecipe] = {
    "ref-a": RefRecipe("ref-a", (64, 128, 128), 32, lr=1e-4, batch_size=64, ema_max_decay=0.9999, ema_warmup=True),
    "ref-b": RefRecipe("ref-b", (32, 64, 64), 8, lr=5e-4, batch_size=128, ema_max_decay=0.999, ema_warmup=False),
}


def make_digits_unet(recipe: RefRecipe) -> UNet2DModel:
    """UNet2DModel for [N, 1, 8, 8]: levels at 8×8, 4×4 (with attention) and 2×2."""
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=recipe.layers_per_block,
        block_out_channels=recipe.block_out_channels,
        norm_num_groups=recipe.norm_num_groups,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )


def make_train_scheduler() -> DDPMScheduler:
    """The example's noise scheduler: DDPM, 1000 steps, linear β from 1e-4 to 0.02."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")


@dataclass
class RefResult:
    recipe: RefRecipe
    ema_model: UNet2DModel  # a copy of the network holding the EMA weights, eval mode
    train_scheduler: DDPMScheduler
    steps: int
    train_seconds: float
    estimated_total_steps: int | None  # the cosine schedule's length (None: budget ended first)
    last_loss: float


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled index batches of a fixed size (each epoch drops its incomplete tail)."""
    batch_size = min(batch_size, n)
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


def _make_optimizer(recipe: RefRecipe, model: torch.nn.Module) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(), lr=recipe.lr, betas=recipe.adam_betas,
        weight_decay=recipe.adam_weight_decay, eps=recipe.adam_eps,
    )  # fmt: skip


def _cosine(recipe: RefRecipe, opt: torch.optim.Optimizer, total: int, done: int = 0):
    """The example's warm-up + cosine schedule for `total` steps, advanced past `done` steps."""
    sched = get_scheduler("cosine", opt, num_warmup_steps=recipe.lr_warmup_steps, num_training_steps=total)
    for _ in range(done):
        sched.step()
    return sched


def _train_step(model, noise_sched, opt, recipe: RefRecipe, x0: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One step of the example's loop: L_simple (MSE to ε, t uniform), clip at 1.0, AdamW."""
    noise = torch.randn(x0.shape, generator=gen).to(x0.device)
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (x0.shape[0],), generator=gen).to(x0.device)
    eps = model(noise_sched.add_noise(x0, noise, t), t).sample
    loss = F.mse_loss(eps.float(), noise.float())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
    opt.step()
    return loss.detach()


def train_reference(
    recipe: RefRecipe,
    x: torch.Tensor,
    *,
    seconds: float | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
    calibration_steps: int = 20,
    log: Callable[[str], None] | None = print,
) -> RefResult:
    """Train `recipe` on x: [N, 1, 8, 8] in [-1, 1] until `seconds` of wall clock have passed, or
    for exactly `steps` steps (then the cosine schedule has that length, as the example sizes it
    from its epoch count). Give one of the two.

    The time is checked before every step. The example sizes its cosine schedule from the epoch
    count; with a wall-clock budget the length is estimated instead: after `calibration_steps`
    steps (all inside the 500 warm-up steps, where the learning rate does not depend on the
    length), the mean time of steps 3..calibration_steps gives the rate, and
    total = steps done + remaining seconds × rate. The scheduler is then rebuilt with that length
    and advanced to the current step. If training outruns the estimate, the learning rate stays at
    the schedule's end (0) instead of following the cosine back up.
    """
    if (seconds is None) == (steps is None):
        raise ValueError("give exactly one budget: seconds or steps")
    if (seconds is not None and seconds <= 0) or (steps is not None and steps < 1) or calibration_steps < 3:
        raise ValueError(
            f"need seconds > 0 or steps >= 1, and calibration_steps >= 3, got {seconds}, {steps} "
            f"and {calibration_steps}"
        )
    torch.manual_seed(seed)  # the network's initialisation; data order and noise use `gen`
    gen = torch.Generator().manual_seed(seed)
    model = make_digits_unet(recipe).to(device).train()
    noise_sched = make_train_scheduler()
    opt = _make_optimizer(recipe, model)
    # with a wall-clock budget a placeholder length first (the warm-up does not depend on it)
    lr_sched = _cosine(recipe, opt, 10**9 if steps is None else steps)
    ema = EMAModel(
        model.parameters(), decay=recipe.ema_max_decay, use_ema_warmup=recipe.ema_warmup,
        inv_gamma=recipe.ema_inv_gamma, power=recipe.ema_power,
    )  # fmt: skip
    x = x.to(device)
    batches = _batches(x.shape[0], recipe.batch_size, gen)
    total, step, t_calib, loss = steps, 0, 0.0, torch.tensor(float("nan"))
    limit = math.inf if seconds is None else seconds
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < limit and (steps is None or step < steps):
        if step == 2:
            t_calib = elapsed
        if step == calibration_steps and total is None:
            per_step = (elapsed - t_calib) / (step - 2)
            total = step + max(1, math.floor((seconds - elapsed) / per_step))
            lr_sched = _cosine(recipe, opt, total, done=step)
        loss = _train_step(model, noise_sched, opt, recipe, x[next(batches).to(device)], gen)
        if total is None or step < total:
            lr_sched.step()
        ema.step(model.parameters())
        step += 1
        if log is not None and step % 500 == 0:
            log(
                f"  {recipe.name}: step {step}, loss {loss.item():.4f}, lr {lr_sched.get_last_lr()[0]:.2e}, "
                f"{time.perf_counter() - t0:.0f} s"
            )
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t0
    ema_model = copy.deepcopy(model).eval()
    ema.copy_to(ema_model.parameters())
    return RefResult(recipe, ema_model, noise_sched, step, train_seconds, total, loss.item())


@torch.inference_mode()
def sample_reference(
    model: UNet2DModel,
    train_scheduler: DDPMScheduler,
    x_T: torch.Tensor,
    *,
    steps: int = 50,
    eta: float = 0.0,
    batch_size: int = 500,
) -> torch.Tensor:
    """DDIM samples with diffusers' DDIMScheduler, built from the training scheduler's config.

    x_T: [N, 1, 8, 8] start noise (on any device; sampling runs on the model's device).
    Returns [N, 1, 8, 8] on the CPU, clamped to [-1, 1]. The scheduler keeps the training config's
    clip_sample=True, so x̂₀ is also clipped to [-1, 1] inside every step (as ddkit's clip_x0).
    """
    device = next(model.parameters()).device
    sched = DDIMScheduler.from_config(train_scheduler.config)
    out = []
    for i in range(0, x_T.shape[0], batch_size):
        sched.set_timesteps(steps)
        x = x_T[i : i + batch_size].to(device)
        for t in sched.timesteps:
            eps = model(x, t).sample
            x = sched.step(eps, t, x, eta=eta).prev_sample
        out.append(x.float().clamp(-1.0, 1.0).cpu())
    return torch.cat(out)
