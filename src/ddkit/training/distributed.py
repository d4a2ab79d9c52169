"""Multi-process training under torchrun: which process this is (:class:`DistContext`), starting
the process group (:func:`init_distributed`), and each process's shard of every epoch
(:class:`ShardedBatches`).

Restarts that reconnect. With ``torchrun --standalone`` the elastic agent creates one TCPStore and
every restarted group shares it (``TORCHELASTIC_USE_AGENT_STORE``), at the same address. Since torch
dropped its per-attempt key prefix (pytorch PR #135957), ``init_process_group`` writes the same
keys on every attempt, so a restarted gloo group can read the *killed* worker's address from the
store: "Connection refused" to a dead port, or both sides listening forever. Whether that happens
depends on arrival order, which is why it passes on a quiet machine and fails under load.
:func:`init_distributed` therefore connects to the agent's store itself and hands
``init_process_group`` a ``PrefixStore`` keyed by ``TORCHELASTIC_RESTART_COUNT``: each attempt
meets in its own key space. On several nodes the restart counts can differ between nodes; launch
those with ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` (each attempt then gets a new store).
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass, replace

import torch
import torch.distributed as torch_dist

from ..checks import ParameterError, integer


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
        integer("batch size per process", batch, low=1)
        shard = n // dist.world_size
        if batch > shard:
            raise ValueError(
                f"batch size per process ({batch}) exceeds the examples per process ({shard}); "
                f"use --batch-size <= {shard * dist.world_size}"
            )
        self.n, self.batch, self.seed, self.dist = n, batch, seed, dist
        self.steps_per_epoch = n // (batch * dist.world_size)
        self.epoch, self.pos = 0, 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)[: self.steps_per_epoch * self.batch * self.dist.world_size]
        return perm[self.dist.rank :: self.dist.world_size]

    def next(self) -> torch.Tensor:
        if self.pos + self.batch > len(self._order):
            self.epoch, self.pos = self.epoch + 1, 0
            self._order = self._epoch_order()
        idx = self._order[self.pos : self.pos + self.batch]
        self.pos += self.batch
        return idx

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._epoch_order()


def agree(flag: bool, dist: DistContext, device: torch.device) -> bool:
    """True on every rank when it is true on any (ranks must take the same branch)."""
    return agree_each((flag,), dist, device)[0]


def agree_each(flags: tuple[bool, ...], dist: DistContext, device: torch.device) -> tuple[bool, ...]:
    """:func:`agree` for several flags at once, in one collective."""
    if dist.world_size == 1:
        return tuple(bool(f) for f in flags)
    t = torch.tensor([float(f) for f in flags], device=device if device.type == "cuda" else "cpu")
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return tuple(bool(v) for v in t.tolist())


def from_main(values: list[float], dist: DistContext, device: torch.device) -> list[float]:
    """Rank 0's numbers on every rank (the other ranks' ``values`` are ignored), so that every rank
    takes the same decisions from them (the best checkpoint, early stopping)."""
    if dist.world_size == 1:
        return list(values)
    mine = values if dist.is_main else [0.0] * len(values)
    t = torch.tensor(mine, dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t.tolist()


def gather_rank_states(mine: dict, dist: DistContext) -> list[dict]:
    """Every rank's own part of a training state (data position and generators differ by rank)."""
    states: list = [None] * dist.world_size
    torch_dist.all_gather_object(states, {k: mine[k] for k in ("batches", "gen", "torch_rng", "cuda_rng") if k in mine})
    return states


def barrier(dist: DistContext) -> None:
    """Wait for every process (nothing when alone)."""
    if dist.world_size > 1:
        torch_dist.barrier()


def init_distributed(device: str = "cpu", timeout_s: float = 1800.0) -> tuple[DistContext, str]:
    """(this process's DistContext, its device). Under torchrun (``WORLD_SIZE`` > 1) start the
    process group — gloo on CPU, nccl on GPU (each process on ``cuda:LOCAL_RANK``) — with
    ``timeout_s`` for joining and for every collective; alone, start nothing."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    if world == 1:
        return DistContext(restart_count=restarts), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    backend = "nccl" if device.startswith("cuda") else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    rank = int(os.environ["RANK"])
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == str(True):
        store = torch_dist.TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False, timeout=timeout
        )
        store = torch_dist.PrefixStore(f"ddkit/attempt-{restarts}", store)
        torch_dist.init_process_group(backend=backend, store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        torch_dist.init_process_group(backend=backend, timeout=timeout)
    return DistContext(rank=torch_dist.get_rank(), world_size=world, restart_count=restarts), device


def shutdown_distributed(dist: DistContext) -> None:
    """End the process group started by :func:`init_distributed` (nothing when alone)."""
    if dist.world_size > 1 and torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def fit_batch(config, n: int, dist: DistContext):
    """The default batch cut to the data set's size (a multiple of the process count) when the data
    set is smaller; says so on stderr (rank 0). ``config``: a RunConfig."""
    cap = max(1, n // dist.world_size) * dist.world_size
    if config.train.batch_size <= cap:
        return config
    if dist.is_main:
        print(
            f"ddkit: the data set has {n} examples, fewer than the default batch of "
            f"{config.train.batch_size}; training with batches of {cap}",
            file=sys.stderr,
        )
    return replace(config, train=replace(config.train, batch_size=cap))


def check_divisible_batch(batch_size: int, dist: DistContext) -> None:
    """The global batch must split evenly over the processes."""
    if batch_size % dist.world_size:
        raise ParameterError(f"`batch_size` {batch_size} must be divisible by the {dist.world_size} processes")
