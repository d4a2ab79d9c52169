"""``ddkit.sample_run``: what ``ddkit sample`` does, from Python. Samples drawn from a run (or a
diffusers folder) batch by batch, streamed into an NPZ so that memory does not grow with ``num``,
with a grid PNG or scatter plot and the denoising trajectory when asked. A ``num`` whose output would
not fit on the disk is refused before any work."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..checks import ParameterError
from ..data.images import save_grid, to_uint8
from ..data.npz import NpzStream, check_room, npz_bytes, savez_atomic
from ..generate import Trajectory
from ..options import option
from ..plots import MISSING, have_matplotlib, plot_points
from .sampling import SamplingOptions, batches, load_model, options_from, plan

GRID_MAX = {"images": 1024, "points": 100_000}  # the grid or scatter shows at most the first this many


@dataclass(frozen=True)
class SampleOptions(SamplingOptions):
    """:class:`SamplingOptions` and what ``ddkit sample`` writes besides the NPZ."""

    diffusers: str | None = option(
        None, "sample a local diffusers folder (UNet2DModel pipeline or model folder) instead of a run", metavar="PATH"
    )
    grid: str | None = option(
        None,
        f"also write a PNG grid of the first {GRID_MAX['images']} samples (or a scatter plot for 2-D data); "
        "with --trajectory, the denoising progression instead: one row per recorded sample, x̂₀ after each step "
        "left to right, then the sample (2-D data: the recorded x̂₀ of every step, coloured by step)",
    )
    trajectory: str | None = option(
        None,
        "also save what the sampler predicts at every step for the first --trajectory-num samples: x0 and "
        "x_t float32 [S, n, ...] (S steps, the samples' own layout), t and sigma float64 [S]",
        metavar="FILE.npz",
    )
    trajectory_num: int = option(8, "how many samples --trajectory records (default 8)", metavar="N")


@dataclass
class Samples:
    """What :func:`sample_run` drew: ``arrays`` as in the NPZ (``images`` uint8 [N, H, W, C] or
    ``points`` float32 [N, D]; ``labels`` int64 [N] for labelled samples), empty with ``keep=False``;
    ``num`` samples; ``written``: the files written (NPZ, grid, trajectory)."""

    arrays: dict[str, np.ndarray]
    num: int
    written: list[Path] = field(default_factory=list)

    @property
    def images(self) -> np.ndarray | None:
        return self.arrays.get("images")

    @property
    def points(self) -> np.ndarray | None:
        return self.arrays.get("points")

    @property
    def labels(self) -> np.ndarray | None:
        return self.arrays.get("labels")


def check_output(name: str, path, suffix: str | None = None) -> Path | None:
    """An output path whose folder exists (and whose name ends in ``suffix``), before any work."""
    if path is None:
        return None
    path = Path(path)
    if suffix is not None and path.suffix != suffix:
        raise ParameterError(f"`{name}` must name a {suffix} file, got {path}")
    if not path.parent.is_dir():
        raise ParameterError(f"the folder of {path} (`{name}`) does not exist")
    return path


def sample_run(run=None, *, out=None, keep: bool = True, **options) -> Samples:
    """Draw samples from the run folder ``run`` as ``ddkit sample`` does, with its options as
    keywords (``--guidance-scale`` is ``guidance_scale``; :class:`SampleOptions`, same defaults:
    64 samples of DDIM with 50 steps, seed 0). ``out``: also write them to this NPZ (``grid``,
    ``trajectory``: the PNG and the trajectory NPZ, as ``ddkit sample``). ``keep``: return the arrays
    (False: only stream them to ``out``, memory stays that of a batch). Sample i depends only on
    (seed, i)::

        s = ddkit.sample_run("runs/digits", num=16, sampler="dpm++", steps=10)
        s.images  # uint8 [16, 8, 8, 1]
    """
    o = options_from(SampleOptions, options)
    out = check_output("out", out, ".npz")
    trajectory_path = check_output("trajectory", o.trajectory, ".npz")
    grid_path = check_output("grid", o.grid)
    if not isinstance(o.trajectory_num, int) or o.trajectory_num < 1:
        raise ParameterError(f"`trajectory_num` must be positive, got {o.trajectory_num}")
    if out is None and not keep:
        raise ParameterError("`keep` False returns nothing: give `out` to write the samples")
    model, schedule, config = load_model(run, o, o.diffusers)
    p = plan(o, model, schedule, config, run)
    key = "images" if p.is_image else "points"
    if not p.is_image and grid_path and not have_matplotlib():
        raise ParameterError(f"`grid` of 2-D points is a scatter plot: {MISSING}")  # before the work
    shape = (o.num, p.shape[1], p.shape[2], p.shape[0]) if p.is_image else (o.num, *p.shape)
    dtype = np.uint8 if p.is_image else np.float32
    layout = {key: (shape, dtype)} | ({"labels": ((o.num,), np.int64)} if p.labels is not None else {})
    if out is not None:
        check_room(out, npz_bytes(layout), f"`num` {o.num} samples")
    trajectory = Trajectory(min(o.trajectory_num, o.num)) if trajectory_path else None
    kept, shown = [], []
    with NpzStream(out) if out is not None else _NoFile() as npz:
        npz.begin(key, shape, dtype)
        for start, x in batches(p, step_callback=trajectory):
            rows = to_uint8(x) if p.is_image else x.numpy().astype(np.float32)
            npz.write(rows)
            kept += [rows] if keep else []
            shown += [rows[: GRID_MAX[key] - start]] if grid_path and start < GRID_MAX[key] else []
        if p.labels is not None:  # made again batch by batch: memory stays that of a batch
            npz.begin("labels", (o.num,), np.int64)
            for start in range(0, o.num, o.batch_size):
                npz.write(p.labels(start, min(start + o.batch_size, o.num)).numpy())
    arrays = {key: np.concatenate(kept)} if keep else {}
    if keep and p.labels is not None:
        arrays["labels"] = p.labels(0, o.num).numpy().astype(np.int64)
    written = [out] if out is not None else []
    if trajectory is not None:
        steps = trajectory.arrays()
        savez_atomic(trajectory_path, **steps)
        if grid_path:
            _save_progression(steps, shown, grid_path, p.is_image)
        written += ([grid_path] if grid_path else []) + [trajectory_path]
    elif grid_path:
        shown = np.concatenate(shown)
        labels = None if p.labels is None else p.labels(0, len(shown)).numpy()
        if p.is_image:
            save_grid(shown, grid_path, nrow=getattr(config.model, "num_classes", None) if labels is not None else None)
        else:
            plot_points(shown, grid_path, labels=labels)
        written.append(grid_path)
    return Samples(arrays, o.num, written)


class _NoFile:
    """An :class:`NpzStream` stand-in that writes nothing (``out`` None)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def begin(self, *args) -> None:
        pass

    def write(self, rows) -> None:
        pass


def _save_progression(arrays: dict, shown: list, path: Path, is_image: bool) -> None:
    """The denoising progression of the recorded samples: images, one row per sample (x̂₀ after
    each step, then the sample); 2-D points, the x̂₀ of every step in one scatter, coloured by step."""
    x0 = arrays["x0"]  # [S, n, ...]
    steps, n = x0.shape[:2]
    if is_image:
        per_sample = torch.from_numpy(x0).transpose(0, 1).reshape(n * steps, *x0.shape[2:])
        frames = to_uint8(per_sample).reshape(n, steps, *shown[0].shape[1:])  # [n, S, H, W, C]
        final = np.concatenate(shown)[:n, None]  # [n, 1, H, W, C]
        rows = np.concatenate([frames, final], axis=1)
        save_grid(rows.reshape(-1, *rows.shape[2:]), path, nrow=steps + 1)
    else:
        plot_points(x0.reshape(-1, x0.shape[-1]), path, labels=np.repeat(np.arange(steps), n))


__all__ = ["sample_run", "Samples", "SampleOptions", "GRID_MAX"]
