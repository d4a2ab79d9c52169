"""Figures, all drawn with matplotlib: the 2-D scatter of toy samples, the training loss curve,
the bound's per-timestep terms, the quality-vs-steps table, validation curves during training, and
the benchmarks' plots. matplotlib is optional (``pip install 'ddkit[plot]'``): :func:`have_matplotlib`
lets a command check before its work and skip a plot with one note rather than fail after it.
(Sample grids are images, not figures: :mod:`ddkit.data.images` writes them with Pillow.)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MISSING = "plots need matplotlib: pip install matplotlib (or pip install 'ddkit[plot]')"


def have_matplotlib() -> bool:
    """Whether matplotlib can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        return False


def new_figure(figsize: tuple[float, float] = (6.4, 4.0), dpi: int = 120):
    """A matplotlib ``Figure`` drawn off-screen (no pyplot, no global backend switch), or a one-line
    error that says what to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(MISSING) from None
    return Figure(figsize=figsize, dpi=dpi)


def save_figure(fig, path: str | Path, *, tight: bool = True) -> Path:
    """Lay out ``fig`` (``tight``: matplotlib's tight layout) and write it to ``path`` (a PNG),
    creating the folder."""
    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_bound_terms(bound, path: str | Path, *, title: str | None = None) -> Path:
    """A PNG of a :class:`~ddkit.eval.likelihood.BoundTerms`' mean per-timestep terms L_t (bits/dim,
    log scale) against t, with L_T and the total in the legend."""
    mean = bound.terms.mean(0).numpy()
    fig = new_figure()
    ax = fig.subplots()
    ax.plot(
        range(1, len(mean) + 1),
        mean,
        lw=1.2,
        label=f"L_{{t-1}} (t = 1: decoder L_0 = {float(bound.decoder.mean()):.3f})",
    )
    ax.axhline(
        float(bound.prior.mean()), color="grey", ls=":", lw=1, label=f"L_T (prior) = {float(bound.prior.mean()):.2g}"
    )
    ax.set_yscale("log")
    ax.set_xlabel("t (paper's 1-based timestep)")
    ax.set_ylabel("bits/dim")
    ax.set_title(title or f"variational bound: {float(bound.total.mean()):.3f} bits/dim (mean of {len(bound.total)})")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_quality_table(table, path: str | Path) -> Path:
    """A PNG of a :class:`~ddkit.eval.table.QualityTable`: the score against S (log axis), one curve
    per η, error bars ±sd, the real-data floor dashed."""
    fig = new_figure()
    ax = fig.subplots()
    mean, sd = table.mean(), table.sd()
    for e, eta in enumerate(table.etas):
        ax.errorbar(table.steps_list, mean[e], yerr=sd[e], marker="o", ms=3, capsize=3, label=f"η = {eta:g}")
    if table.floor is not None:
        ax.axhline(table.floor, color="grey", ls="--", lw=1, label="real data")
    ax.set_xscale("log")
    ax.set_xticks(table.steps_list, [str(s) for s in table.steps_list])
    ax.set_xlabel("sampling steps S")
    ax.set_ylabel(table.metric)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_validation(evals: list[dict], path: str | Path, *, select: str = "fid", warn_at: float = 0.6) -> Path:
    """RUN/val.png: the evaluations during training (``evals``: the log's ``eval`` records, each with
    its ``step``) against the step, in three panels: FID against the val part with the best
    checkpoint's step marked; closer_than_real with fresh data's 0.5 and the warning level; and the
    loss gap (val − train denoising loss), overall and per band of t. (Drawn after every
    evaluation, so kept cheap: fixed margins rather than a layout pass.)"""
    steps = [r["step"] for r in evals]
    fig = new_figure(figsize=(11.0, 3.4), dpi=100)
    fig.subplots_adjust(left=0.075, right=0.99, bottom=0.14, top=0.92, wspace=0.3)
    ax_fid, ax_closer, ax_gap = fig.subplots(1, 3)
    ax_fid.plot(steps, [r["fid"] for r in evals], marker="o", ms=3, label="FID")
    best = [r for r in evals if r.get("best")]
    if best:
        b = best[-1]
        ax_fid.axvline(b["step"], color="tab:green", ls=":", lw=1, label=f"best ({select}): step {b['step']}")
    ax_fid.set_ylabel("FID against the val part")
    ax_fid.legend(fontsize=7, loc="upper right")
    ax_closer.plot(steps, [r["closer_than_real"] for r in evals], marker="o", ms=3, color="tab:red")
    ax_closer.axhline(0.5, color="grey", ls="--", lw=1, label="fresh samples (0.5)")
    ax_closer.axhline(warn_at, color="tab:red", ls=":", lw=1, label=f"warning ({warn_at:g})")
    ax_closer.set_ylim(0, 1)
    ax_closer.set_ylabel("share nearer a training image")
    ax_closer.legend(fontsize=7, loc="lower right")
    ax_gap.plot(steps, [r["loss_gap"] for r in evals], marker="o", ms=3, color="black", label="all t")
    for band in evals[0].get("loss_gap_bands", {}) if evals else ():
        ax_gap.plot(steps, [r["loss_gap_bands"][band] for r in evals], lw=1, alpha=0.7, label=f"t {band}")
    ax_gap.axhline(0.0, color="grey", ls="--", lw=1)
    ax_gap.set_ylabel("loss gap (val − train)")
    ax_gap.legend(fontsize=7, loc="upper left")
    for ax in (ax_fid, ax_closer, ax_gap):
        ax.set_xlabel("step")
    return save_figure(fig, path, tight=False)


def _as_points(points) -> np.ndarray:
    if hasattr(points, "detach"):  # a tensor
        points = points.detach().cpu().double().numpy()
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must have shape [N, 2], got {list(points.shape)}")
    return points


def plot_points(points, path: str | Path, *, lim: float | None = None, labels=None, size: int = 512) -> Path:
    """Scatter plot of 2-D samples as a size×size PNG.

    points: [N, 2]. The axes span [−lim, lim] in both coordinates (default: 1.05 × the largest finite
    |coordinate|, at least 1e-6); non-finite points are not drawn. labels: optional [N] integers,
    each label in its own colour (matplotlib's tab10, cycled). Grey axes cross at the origin."""
    points = _as_points(points)
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    finite = np.isfinite(points).all(axis=1)
    if lim is None:
        largest = np.abs(points[finite]).max() if finite.any() else 1.0
        lim = max(1.05 * float(largest), 1e-6)
    if not lim > 0:
        raise ValueError(f"lim must be positive, got {lim}")
    colours = np.zeros(len(points), dtype=np.int64)
    if labels is not None:
        labels = np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).astype(np.int64).reshape(-1)
        if labels.shape != (len(points),):
            raise ValueError(f"labels must have shape [{len(points)}], got {list(labels.shape)}")
        colours = labels % 10
    fig = new_figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    palette = np.array([f"C{i}" for i in range(10)])
    ax.scatter(points[finite, 0], points[finite, 1], s=max(4.0, (size / 128) ** 2), c=palette[colours[finite]], lw=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path, tight=False)


def smooth(values: np.ndarray, window: float) -> np.ndarray:
    """Debiased exponential moving average with time constant ``window`` samples."""
    beta = 1.0 - 1.0 / max(1.0, window)
    out = np.empty(len(values), dtype=np.float64)
    mean, weight = 0.0, 0.0
    for i, v in enumerate(values):
        mean = beta * mean + (1 - beta) * v
        weight = beta * weight + (1 - beta)
        out[i] = mean / weight
    return out


def plot_loss_curve(steps: Sequence[float], losses: Sequence[float], path: str | Path, *, log_y: bool = True) -> Path:
    """The training loss against the step as a PNG: the raw losses in light grey and a smoothed
    curve (:func:`smooth`, over ~2 % of the points) in blue. The y axis is logarithmic when ``log_y``
    and every finite loss is positive. Non-finite losses are skipped; with none left the plot says
    "no data"."""
    steps = np.asarray(steps, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if steps.shape != losses.shape:
        raise ValueError(f"steps and losses must have the same length, got {len(steps)} and {len(losses)}")
    keep = np.isfinite(steps) & np.isfinite(losses)
    order = np.argsort(steps[keep], kind="stable")
    steps, losses = steps[keep][order], losses[keep][order]
    fig = new_figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if len(losses) == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return save_figure(fig, path)
    if log_y and bool((losses > 0).all()):
        ax.set_yscale("log")
    ax.plot(steps, losses, color="0.8", lw=1, marker="o" if len(losses) == 1 else None)
    if len(losses) > 1:
        ax.plot(steps, smooth(losses, len(losses) / 50), color="C0", lw=2)
    return save_figure(fig, path)


__all__ = [
    "MISSING",
    "have_matplotlib",
    "new_figure",
    "save_figure",
    "plot_points",
    "plot_loss_curve",
    "smooth",
    "plot_bound_terms",
    "plot_quality_table",
    "plot_validation",
]
