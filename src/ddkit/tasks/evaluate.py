"""``ddkit.evaluate_run``: what ``ddkit eval`` does, from Python. A run's samples scored against
held-out real images (FID, KID, precision/recall, memorisation), its bits/dim on held-out images and
the quality-vs-steps table. The reference (the run's held-out part unless ``reference`` says
otherwise), the feature network (the shipped digits net for 8×8 images, else Inception) and the
memory the scoring needs are decided here, before any sample is drawn."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..checks import ParameterError
from ..eval.features import FEATURE_SETS
from ..options import option
from ..training.config import RunConfig
from ..training.rundir import RunDir
from .sampling import SamplingOptions, batches, guidance_labels, guided_model_fn_for, load_model, options_from, plan

METRICS = ("fid", "kid", "precision_recall", "memorization")  # the switches, named as in ddkit.eval.METRICS
NOT_SETTINGS = METRICS + ("nll", "table", "no_progress", "progress")


@dataclass(frozen=True)
class EvalOptions(SamplingOptions):
    """:class:`SamplingOptions` (1000 samples by default) and what ``ddkit eval`` measures and how.
    Without a metric switch: fid and kid."""

    num: int = option(1000, "number of samples (default 1000)")
    progress: bool = True  # the opposite of no_progress (an option of ddkit sample, not of ddkit eval)
    fid: bool = option(False, "Fréchet distance in the feature space (lower is better)", switch=True)
    kid: bool = option(False, "kernel distance, unbiased, mean ± sd over subsets", switch=True)
    precision_recall: bool = option(False, "k-NN precision and recall (k = 3)", switch=True)
    memorization: bool = option(
        False, "median pixel distance to the nearest training image, against held-out real images'", switch=True
    )
    nll: bool = option(
        False,
        "bits/dim of held-out images (variational bound; T network calls per image) and a plot of the "
        "per-timestep terms in --out",
        switch=True,
    )
    table: bool = option(
        False,
        "the quality-vs-steps table (DDIM's Table 1 layout): printed and saved as CSV, Markdown and PNG in --out",
        switch=True,
    )
    reference: str | None = option(
        None,
        "real images to compare with: digits:test, digits:train, digits, a folder or an .npz with 'images' "
        "(default: the run's held-out part)",
    )
    samples: str | None = option(
        None,
        "score these samples (uint8 'images' [N, H, W, C], as ddkit sample writes) instead of drawing",
        metavar="FILE.npz",
    )
    features: str | None = option(
        None,
        "feature space: digits (the shipped digits net; default for 8×8 images) or inception "
        "(needs torch-fidelity or pytorch-fid with weights on disk)",
        choices=FEATURE_SETS,
    )
    nll_num: int = option(100, "held-out images for --nll (default 100)")
    steps_list: tuple = option((10, 20, 50, 100, 1000), "--table columns S", type=int, nargs="+")
    etas: tuple = option((0.0, 0.2, 0.5, 1.0), "--table rows η", type=float, nargs="+")
    table_seeds: int = option(3, "--table start-noise sets per cell (default 3)")
    out: str = option("eval_out", "folder for the --nll plot and --table files (default eval_out)")
    cache_dir: str | None = option(
        None, "where reference statistics are cached (default $XDG_CACHE_HOME/ddkit or ~/.cache/ddkit)"
    )
    no_progress: bool = option(False, "no progress bars", switch=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "progress", not self.no_progress)
        for name in ("nll_num", "table_seeds"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ParameterError("`nll_num` and `table_seeds` must be positive")
        if self.samples is not None and self.table:
            raise ParameterError("`table` draws its own samples; drop `samples`")

    @property
    def metrics(self) -> list[str]:
        chosen = [m for m in METRICS if getattr(self, m)]
        return chosen if chosen or self.nll or self.table else ["fid", "kid"]


class EvalResult(dict):
    """The scores and settings (what ``ddkit eval --json`` prints); ``table_text`` holds the
    quality-vs-steps table as text when ``table`` was asked for."""

    table_text: str | None = None


def evaluate_run(run, **options) -> EvalResult:
    """Score the run folder ``run`` as ``ddkit eval`` does, with its options as keywords
    (:class:`EvalOptions`: ``fid``, ``kid``, ``nll``, ``table``, ``reference``, ``samples``,
    ``features`` and every sampling option of :func:`ddkit.sample_run`, same defaults), and return
    the dict that ``ddkit eval --json`` prints::

        ddkit.evaluate_run("runs/digits", fid=True, num=500)["fid"]
    """
    from ..data import load_run_data
    from ..data.images import to_uint8
    from ..eval import check_counts, evaluate_samples
    from ..eval.features import get_features
    from ..eval.references import load_npz_images, run_reference

    o = options_from(EvalOptions, options)
    metrics = o.metrics
    if not RunDir(run).root.is_dir():
        raise ParameterError(f"run folder {run} does not exist")
    config = RunConfig.load(RunDir(run).config)
    if not hasattr(config.model, "image_size"):
        what = "`nll`" if o.nll else "the sample metrics"
        raise ParameterError(f"{what} need an image run; {run} is a toy run on 2-D points ({config.data.source})")
    plots = _plots_possible(o)  # optional packages: checked before any work
    ref = run_reference(config, o.reference, run_name=str(run))
    samples = load_npz_images(o.samples) if o.samples else None
    shape = (
        tuple(samples.shape[1:])
        if samples is not None
        else (config.model.image_size,) * 2 + (config.model.in_channels,)
    )
    if shape != tuple(ref.images.shape[1:]):
        raise ParameterError(
            f"samples are {list(shape)} (H, W, C) but the reference {ref.name} is {list(ref.images.shape[1:])}"
        )
    feature_name = o.features or ("digits" if shape[:2] == (8, 8) else "inception")
    features = get_features(feature_name) if (set(metrics) - {"memorization"} or o.table) else None
    if features is not None and set(metrics) - {"memorization"}:
        dim = np.asarray(features(ref.images[:2])).shape[1]
        try:
            check_counts(metrics, len(samples) if samples is not None else o.num, len(ref.images), dim)
        except ValueError as e:
            raise ParameterError(f"{e} (in the {features.name} features)") from None
    if samples is None and metrics:
        check_memory(o.num, shape)
    train_images = None
    if "memorization" in metrics or o.table:
        train_images = to_uint8(load_run_data(config.data, config.train.seed, "train").x)
    model = schedule = None
    if samples is None or o.nll or o.table:
        model, schedule, config = load_model(run, o)
    if samples is None and metrics:
        samples = to_uint8(torch.cat([x for _, x in batches(plan(o, model, schedule, config, run))]))
    result = EvalResult()
    if metrics:
        bar = tqdm(total=1, desc="scoring", disable=not o.progress, file=sys.stderr)
        result.update(
            evaluate_samples(
                samples,
                ref.images,
                metrics=metrics,
                features=features,
                train_images=train_images,
                seed=o.seed,
                cache_dir=_cache_dir(o.cache_dir),
            )
        )
        bar.update(1)
        bar.close()
    if o.nll:
        result.update(_nll(o, model, schedule, config, ref, plots))
    if o.table:
        result.update(_table(o, result, model, schedule, config, ref, features, train_images, plots))
    if model is not None:
        result.update(checkpoint=model.loaded_from.kind, checkpoint_step=model.loaded_from.step)
    result.update(
        reference=ref.name,
        num=int(len(samples)) if samples is not None else 0,
        features=feature_name if features is not None else None,
        reference_is_training_data=ref.trained_on,
        settings=_settings(run, o),
    )
    result.reference_size = len(ref.images)
    return result


def _cache_dir(cache_dir: str | None) -> str | None:
    if cache_dir is not None:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "ddkit")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs time
    return path


def _plots_possible(o: EvalOptions) -> bool:
    """``nll`` and ``table`` draw plots with matplotlib: without it they still compute and save the
    numbers, and one note says the plot is skipped — said now, before the work."""
    from ..plots import MISSING, have_matplotlib

    if not (o.nll or o.table) or have_matplotlib():
        return True
    print(
        f"ddkit: note: {MISSING}; the --nll/--table plots are skipped, the numbers are still printed and saved",
        file=sys.stderr,
    )
    return False


def check_memory(num: int, shape: tuple[int, ...]) -> None:
    """Scoring holds every sample in memory: refuse a ``num`` that cannot fit, before sampling."""
    need = num * int(np.prod(shape)) * 5  # uint8 images plus their float32 while drawn
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > avail:
        raise ParameterError(
            f"`num` {num} samples need about {need / 2**30:.1f} GiB of memory to score, more than the "
            f"{avail / 2**30:.1f} GiB available; score fewer, or write them with ddkit sample and "
            "pass `samples`"
        )


def _nll(o: EvalOptions, model, schedule, config, ref, plots: bool) -> dict:
    from ..eval.likelihood import nll_bpd
    from ..plots import plot_bound_terms

    net = config.diffusion.eps_network(model, schedule)
    if getattr(config.model, "num_classes", None) is not None:
        raise ParameterError("`nll` needs an unconditional run (a class-conditional bound needs each image's label)")
    bound = nll_bpd(
        lambda x, t: net(x, t),
        schedule,
        ref.x[: o.nll_num].to(o.device),
        levels=ref.levels,
        generator=torch.Generator(device=o.device).manual_seed(o.seed),
        batch_size=o.batch_size,
        progress=o.progress,
    )
    plot = plot_bound_terms(bound, Path(o.out) / "nll_terms.png") if plots else None
    summary = bound.summary()
    return {
        "nll_bpd": summary["nll_bpd"],
        "nll_prior_bpd": summary["prior_bpd"],
        "nll_decoder_bpd": summary["decoder_bpd"],
        "nll_num": summary["num"],
        "nll_levels": ref.levels,
        "nll_plot": None if plot is None else str(plot),
    }


def _table(o: EvalOptions, result: EvalResult, model, schedule, config, ref, features, train_images, plots) -> dict:
    from ..eval.table import sample_quality_table

    net = config.diffusion.eps_network(model, schedule)
    cycle = guidance_labels(o, config)
    table = sample_quality_table(
        net,
        schedule,
        steps_list=list(o.steps_list),
        etas=list(o.etas),
        num=o.num,
        seeds=tuple(range(o.seed, o.seed + o.table_seeds)),
        reference=ref.images,
        metric="fid",
        features=features,
        train_images=train_images,
        model_fn_for=guided_model_fn_for(o, net, schedule, config),
        labels=None if cycle is None else cycle(0, o.num),
        spacing=o.spacing,
        batch_size=o.batch_size,
        device=o.device,
        progress=o.progress,
    )
    paths = table.save(o.out, plot=plots)
    result.table_text = table.format()
    return {"table": table.rows(), "table_files": {k: str(v) for k, v in paths.items()}}


def _settings(run, o: EvalOptions) -> dict:
    values = {"run": str(run) if isinstance(run, Path) else run}
    values |= {f.name: getattr(o, f.name) for f in fields(o) if f.name not in NOT_SETTINGS}
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return {k: v for k, v in sorted(values.items()) if isinstance(v, (str, int, float, bool, list, type(None)))}


def report(r: EvalResult) -> str:
    """The scores as ``ddkit eval`` prints them without ``--json``."""
    s = r["settings"]
    if s["samples"]:
        src = f"{r['num']} samples from {s['samples']}"
    elif r["num"]:
        src = f"{r['num']} samples of {s['run']} ({s['sampler']}, steps {s['steps'] or 'default'}, seed {s['seed']})"
    else:
        src = str(s["run"])
    lines = [
        f"ddkit eval: {src} against {r['reference']} ({r.reference_size} images"
        + (f", {r['features']} features)" if r["features"] else ")")
    ]
    if r["reference_is_training_data"]:
        lines.append("  NOTE: the reference contains images this run trained on: these scores reward copying them")
    rows = [
        ("FID", "fid", "{:.3f}"),
        ("KID", "kid", "{:.5f}"),
        ("precision", "precision", "{:.3f}"),
        ("recall", "recall", "{:.3f}"),
        ("NN median", "nn_median", "{:.3f}"),
        ("bits/dim", "nll_bpd", "{:.4f}"),
    ]
    for label, key, fmt in rows:
        if key in r:
            text = fmt.format(r[key])
            if key == "kid":
                text += f" ± {r['kid_std']:.5f} (sd over subsets)"
            if key == "nn_median":
                text += (
                    f"   held-out real: {r['nn_median_real']:.3f}; samples closer than that: "
                    f"{100 * r['closer_than_real']:.1f}% (fresh real images: 50%)"
                )
            if key == "nll_bpd":
                plot = f"plot {r['nll_plot']}" if r["nll_plot"] else "no plot: matplotlib is missing"
                text += f"   ({r['nll_num']} held-out images, {r['nll_levels']} levels; {plot})"
            lines.append(f"  {label:<10} {text}")
    if "table_files" in r:
        lines.append(f"  table written to {', '.join(r['table_files'].values())}")
    return "\n".join(lines)


__all__ = ["evaluate_run", "EvalOptions", "EvalResult", "report"]
