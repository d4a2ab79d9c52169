"""``ddkit eval``: parses the options of :func:`ddkit.evaluate_run` and prints its scores (a report,
or the dict as one JSON object)."""

from __future__ import annotations

import json

from ..tasks.evaluate import EvalOptions, evaluate_run, report
from .common import add_options, given


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="score a run against held-out data (FID, KID, precision/recall, memorisation, bits/dim, quality vs steps)",
        description=(
            "Draw samples from a run (or read --samples) and score them against real images the run never "
            "trained on: digits:test for a digits:train run, the --holdout part of a folder run. Without a "
            "metric flag: --fid --kid. Scoring against training data needs an explicit --reference."
        ),
    )
    p.add_argument("run", help="run folder written by ddkit train")
    p.add_argument("--json", action="store_true", help="print one JSON object (scores and settings), not a report")
    p.set_defaults(options=add_options(p, EvalOptions))


def run(args) -> int:
    result = evaluate_run(args.run, **given(args, args.options))
    if result.table_text is not None and not args.json:
        print(result.table_text)
    print(json.dumps(result) if args.json else report(result))
    return 0
