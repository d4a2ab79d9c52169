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


def save_figure(fig, path: str | Path) -> Path:
    """Lay out ``fig`` and write it to ``path`` (a PNG), creating the folder."""
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


__all__ = ["MISSING", "have_matplotlib", "new_figure", "save_figure", "plot_bound_terms", "plot_quality_table"]
