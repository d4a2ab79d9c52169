"""``ddkit eval``: score a run's samples against held-out real images (FID, KID, precision/recall,
memorisation), its bits/dim on held-out images, and the quality-vs-steps table."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..eval.features import FEATURE_SETS
from ..eval.references import Reference
from ..training.config import RunConfig
from ..training.rundir import RunDir
from .common import UsageError
from .sampling import add_sampling_arguments, check_counts, draw, load_run, model_fn_for, sample_labels

# flag → metric name in ddkit.eval.METRICS
METRIC_FLAGS = {"fid": "fid", "kid": "kid", "precision_recall": "precision_recall", "memorization": "memorization"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score a run against held-out data (FID, KID, precision/recall, memorisation, bits/dim, quality vs steps)",
        description=(
            "Draw samples from a run (or read --samples) and score them against real images the run never "
            "trained on: digits:test for a digits:train run, fashion-mnist:test for a fashion-mnist run, "
            "the --holdout part of a folder run. Without a "
            "metric flag: --fid --kid. Scoring against training data needs an explicit --reference."
        ),
    )
    p.add_argument("run", help="run folder written by ddkit train")
    m = p.add_argument_group("metrics")
    m.add_argument("--fid", action="store_true", help="Fréchet distance in the feature space (lower is better)")
    m.add_argument("--kid", action="store_true", help="kernel distance, unbiased, mean ± sd over subsets")
    m.add_argument("--precision-recall", action="store_true", help="k-NN precision and recall (k = 3)")
    m.add_argument(
        "--memorization",
        action="store_true",
        help="median pixel distance to the nearest training image, against held-out real images'",
    )
    m.add_argument(
        "--nll",
        action="store_true",
        help="bits/dim of held-out images (variational bound; T network "
        "calls per image) and a plot of the per-timestep terms in --out",
    )
    m.add_argument(
        "--table",
        action="store_true",
        help="the quality-vs-steps table (DDIM's Table 1 layout): printed and saved as CSV, Markdown and PNG in --out",
    )
    e = p.add_argument_group("evaluation")
    e.add_argument(
        "--reference",
        default=None,
        help="real images to compare with: digits:test, digits:train, digits, fashion-mnist:test, fashion-mnist:train, "
        "a folder or an .npz with 'images' (default: the run's held-out part)",
    )
    e.add_argument(
        "--samples",
        default=None,
        metavar="FILE.npz",
        help="score these samples (uint8 'images' [N, H, W, C], as ddkit sample writes) instead of drawing",
    )
    e.add_argument(
        "--features",
        choices=FEATURE_SETS,
        default=None,
        help="feature space: digits (the shipped digits net; default for 8×8 images), fashion (the shipped "
        "Fashion-MNIST net; default for 28×28 grey images) or inception "
        "(needs torch-fidelity or pytorch-fid with weights on disk)",
    )
    e.add_argument("--nll-num", type=int, default=100, help="held-out images for --nll (default %(default)s)")
    e.add_argument("--steps-list", type=int, nargs="+", default=[10, 20, 50, 100, 1000], help="--table columns S")
    e.add_argument("--etas", type=float, nargs="+", default=[0.0, 0.2, 0.5, 1.0], help="--table rows η")
    e.add_argument("--table-seeds", type=int, default=3, help="--table start-noise sets per cell (default %(default)s)")
    e.add_argument(
        "--out", default="eval_out", help="folder for the --nll plot and --table files (default %(default)s)"
    )
    e.add_argument(
        "--cache-dir",
        default=None,
        help="where reference statistics are cached (default $XDG_CACHE_HOME/ddkit or ~/.cache/ddkit)",
    )
    e.add_argument(
        "--json", action="store_true", help="print one JSON object (scores and settings) instead of a report"
    )
    e.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_sampling_arguments(p)
    p.set_defaults(num=1000)


def _chosen_metrics(args) -> list[str]:
    chosen = [m for flag, m in METRIC_FLAGS.items() if getattr(args, flag)]
    return chosen if chosen or args.nll or args.table else ["fid", "kid"]


def _cache_dir(args) -> str | None:
    if args.cache_dir is not None:
        return args.cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "ddkit")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None  # an unwritable cache only costs time
    return path


def _check_args(args, config, metrics) -> None:
    check_counts(args)
    if not hasattr(config.model, "image_size"):
        what = "--nll" if args.nll else "the sample metrics"
        raise UsageError(f"{what} need an image run; {args.run} is a toy run on 2-D points ({config.data.source})")
    if args.nll_num < 1 or args.table_seeds < 1:
        raise UsageError("--nll-num and --table-seeds must be positive")
    if args.samples is not None and args.table:
        raise UsageError("--table draws its own samples; drop --samples")


def run(args) -> int:
    from ..data import load_run_data
    from ..data.images import to_uint8
    from ..eval import check_counts, evaluate_samples
    from ..eval.features import default_features, get_features
    from ..eval.references import load_npz_images, run_reference

    progress = not args.no_progress
    args.progress = progress
    metrics = _chosen_metrics(args)
    if not RunDir(args.run).root.is_dir():
        raise UsageError(f"run folder {args.run} does not exist")
    config = RunConfig.load(RunDir(args.run).config)
    _check_args(args, config, metrics)
    plots = _plots_possible(args)  # optional packages: checked before any work
    ref = run_reference(config, args.reference, run_name=args.run)
    samples = load_npz_images(args.samples) if args.samples else None
    shape = (
        tuple(samples.shape[1:])
        if samples is not None
        else (config.model.image_size,) * 2 + (config.model.in_channels,)
    )
    if shape != tuple(ref.images.shape[1:]):
        raise UsageError(
            f"samples are {list(shape)} (H, W, C) but the reference {ref.name} is {list(ref.images.shape[1:])}"
        )
    feature_name = args.features or default_features(shape)
    features = get_features(feature_name) if (set(metrics) - {"memorization"} or args.table) else None
    n = len(samples) if samples is not None else args.num
    if features is not None and set(metrics) - {"memorization"}:
        dim = np.asarray(features(ref.images[:2])).shape[1]
        try:
            check_counts(metrics, n, len(ref.images), dim)
        except ValueError as e:
            raise UsageError(f"{e} (in the {features.name} features)") from None
    if samples is None and metrics:
        _check_memory(args.num, shape)
    train_images = None
    if "memorization" in metrics or args.table:
        train_images = to_uint8(load_run_data(config.data, config.train.seed, "train").x)
    model = schedule = None
    if samples is None or args.nll or args.table:
        model, schedule, config = load_run(args)
    if samples is None and metrics:
        samples = to_uint8(draw(args, model, schedule, config).x)
    result: dict = {}
    if metrics:
        bar = tqdm(total=1, desc="scoring", disable=not progress, file=sys.stderr)
        result = evaluate_samples(
            samples,
            ref.images,
            metrics=metrics,
            features=features,
            train_images=train_images,
            seed=args.seed,
            cache_dir=_cache_dir(args),
        )
        bar.update(1)
        bar.close()
    if args.nll:
        result.update(_nll(args, model, schedule, config, ref, progress, plots))
    if args.table:
        result.update(_table(args, model, schedule, config, ref, features, train_images, progress, plots))
    if model is not None:
        result.update(checkpoint=model.loaded_from.kind, checkpoint_step=model.loaded_from.step)
    result.update(
        reference=ref.name,
        num=int(len(samples)) if samples is not None else 0,
        features=feature_name if features is not None else None,
        reference_is_training_data=ref.trained_on,
        settings=_settings(args),
    )
    print(json.dumps(result) if args.json else _report(args, result, ref))
    return 0


def _plots_possible(args) -> bool:
    """--nll and --table draw plots with matplotlib: without it they still compute and save the
    numbers, and one note says the plot is skipped — said now, before the work."""
    from ..plots import MISSING, have_matplotlib

    if not (args.nll or args.table) or have_matplotlib():
        return True
    print(
        f"ddkit: note: {MISSING}; the --nll/--table plots are skipped, the numbers are still printed and saved",
        file=sys.stderr,
    )
    return False


def _check_memory(num: int, shape: tuple[int, ...]) -> None:
    """Scoring holds every sample in memory: refuse a --num that cannot fit, before sampling."""
    need = num * int(np.prod(shape)) * 5  # uint8 images plus their float32 while drawn
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return
    if need > avail:
        raise UsageError(
            f"--num {num} samples need about {need / 2**30:.1f} GiB of memory to score, more than the "
            f"{avail / 2**30:.1f} GiB available; score fewer, or write them with ddkit sample and "
            "pass --samples"
        )


def _nll(args, model, schedule, config, ref: Reference, progress: bool, plots: bool) -> dict:
    from ..eval.likelihood import nll_bpd
    from ..plots import plot_bound_terms

    net = config.diffusion.eps_network(model, schedule)
    if getattr(config.model, "num_classes", None) is not None:
        raise UsageError("--nll needs an unconditional run (a class-conditional bound needs each image's label)")
    x0 = ref.x[: args.nll_num].to(args.device)
    bound = nll_bpd(
        lambda x, t: net(x, t),
        schedule,
        x0,
        levels=ref.levels,
        generator=torch.Generator(device=args.device).manual_seed(args.seed),
        batch_size=args.batch_size,
        progress=progress,
    )
    plot = plot_bound_terms(bound, Path(args.out) / "nll_terms.png") if plots else None
    summary = bound.summary()
    return {
        "nll_bpd": summary["nll_bpd"],
        "nll_prior_bpd": summary["prior_bpd"],
        "nll_decoder_bpd": summary["decoder_bpd"],
        "nll_num": summary["num"],
        "nll_levels": ref.levels,
        "nll_plot": None if plot is None else str(plot),
    }


def _table(args, model, schedule, config, ref: Reference, features, train_images, progress: bool, plots: bool) -> dict:
    from ..eval.table import sample_quality_table

    net = config.diffusion.eps_network(model, schedule)
    table = sample_quality_table(
        net,
        schedule,
        steps_list=args.steps_list,
        etas=args.etas,
        num=args.num,
        seeds=tuple(range(args.seed, args.seed + args.table_seeds)),
        reference=ref.images,
        metric="fid",
        features=features,
        train_images=train_images,
        model_fn_for=model_fn_for(args, net, schedule, config),
        labels=sample_labels(args, config),
        spacing=args.spacing,
        batch_size=args.batch_size,
        device=args.device,
        progress=progress,
    )
    paths = table.save(args.out, plot=plots)
    if not args.json:
        print(table.format())
    return {"table": table.rows(), "table_files": {k: str(v) for k, v in paths.items()}}


def _settings(args) -> dict:
    skip = {
        "command",
        "json",
        "no_progress",
        "progress",
        "fid",
        "kid",
        "precision_recall",
        "memorization",
        "nll",
        "table",
    }
    return {
        k: v
        for k, v in sorted(vars(args).items())
        if k not in skip and isinstance(v, (str, int, float, bool, list, type(None)))
    }


def _report(args, r: dict, ref: Reference) -> str:
    src = (
        f"{r['num']} samples from {args.samples}"
        if args.samples
        else (
            f"{r['num']} samples of {args.run} ({args.sampler}, steps {args.steps or 'default'}, seed {args.seed})"
            if r["num"]
            else str(args.run)
        )
    )
    lines = [
        f"ddkit eval: {src} against {ref.name} ({len(ref.images)} images"
        + (f", {r['features']} features)" if r["features"] else ")")
    ]
    if ref.trained_on:
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
