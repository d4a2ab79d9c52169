"""Randomness per sample (EDM's ``StackedRandomGenerator``).

Sample i of a run seeded with ``seed`` draws its start noise x_T, and every later noise draw of a
stochastic sampler, from its own generator seeded by (seed, i). So the image a seed gives never
depends on the batch size, on which other samples share its batch, or on the sampler (the start
noise is the same for every sampler), and rows of a comparison table share their start noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def sample_seed(seed: int, index: int, stream: int = 0) -> int:
    """A 63-bit seed for sample ``index`` of a run seeded with ``seed`` (numpy's SeedSequence:
    distinct (seed, index) pairs give unrelated streams, unlike ``seed + index``). ``stream`` > 0
    gives sample ``index`` another unrelated stream (e.g. for a random mask besides its noise)."""
    if seed < 0 or index < 0 or stream < 0:
        raise ValueError(
            f"seed, sample index and stream must be non-negative, got seed={seed}, index={index}, stream={stream}"
        )
    entropy = [int(seed), int(index)] + ([int(stream)] if stream else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SampleGenerators:
    """One ``torch.Generator`` per sample; samplers accept it wherever they take ``generator``.

    ``SampleGenerators(seed, range(start, stop), device)`` covers samples start..stop-1 of a run.
    :meth:`randn` draws a [N, ...] tensor whose row i comes from generator i alone. ``stream``
    (default 0) selects another, unrelated set of streams for the same samples.
    """

    def __init__(self, seed: int, indices: Sequence[int], device: str | torch.device = "cpu", *, stream: int = 0):
        self.device = torch.device(device)
        self.indices = [int(i) for i in indices]
        if not self.indices:
            raise ValueError("SampleGenerators needs at least one sample index")
        self.generators = [torch.Generator(self.device).manual_seed(sample_seed(seed, i, stream)) for i in self.indices]

    def __len__(self) -> int:
        return len(self.generators)

    def randn(
        self, shape: Sequence[int], *, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
    ) -> torch.Tensor:
        """Standard normal noise [N, *shape[1:]] with row i drawn from sample i's generator."""
        shape = tuple(shape)
        if shape[0] != len(self.generators):
            raise ValueError(f"asked for {shape[0]} rows of noise from generators for {len(self.generators)} samples")
        rows = [torch.randn(shape[1:], generator=g, device=self.device, dtype=dtype) for g in self.generators]
        return torch.stack(rows).to(device or self.device)


Generator = torch.Generator | SampleGenerators | None


def randn(
    shape: Sequence[int],
    generator: Generator,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Standard normal noise of ``shape`` from a ``torch.Generator``, per-sample generators or
    torch's global one (``None``)."""
    if isinstance(generator, SampleGenerators):
        return generator.randn(shape, dtype=dtype, device=device)
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
