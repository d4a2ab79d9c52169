"""Figures (matplotlib): the bound's per-timestep terms, the quality-vs-steps table, validation
curves during training, and the benchmarks' plots. matplotlib is optional (``pip install
'ddkit[plot]'``): :func:`have_matplotlib` lets a command check before its work and skip a plot with
one note rather than fail after it. (The trainer's previews, the sample grid, the 2-D scatter and
the loss curve, are drawn with Pillow in :mod:`ddkit.data.images` and need nothing more.)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


__all__ = [
    "MISSING",
    "have_matplotlib",
    "new_figure",
    "save_figure",
    "plot_bound_terms",
    "plot_quality_table",
    "plot_validation",
]
