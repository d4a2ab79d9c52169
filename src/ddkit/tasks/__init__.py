"""What the commands do, callable from Python with the commands' option names as keywords: the
layer between the library's pieces and the command line, which only parses.

- :func:`sample_run` (``ddkit sample``), :func:`evaluate_run` (``ddkit eval``), :func:`edit_run`
  (``ddkit edit``), :func:`tune_steps` (``ddkit tune-steps``);
- the option dataclasses (:class:`SampleOptions`, :class:`EvalOptions`, :class:`EditOptions`,
  :class:`TuneOptions`): one field per option, with its help and flag (:mod:`ddkit.options`).
"""

from .edit import EditOptions, edit_run
from .evaluate import EvalOptions, EvalResult, evaluate_run
from .sample import SampleOptions, Samples, sample_run
from .sampling import SamplingOptions
from .tune import TuneOptions, tune_steps

__all__ = [
    "sample_run",
    "evaluate_run",
    "edit_run",
    "tune_steps",
    "Samples",
    "EvalResult",
    "SamplingOptions",
    "SampleOptions",
    "EvalOptions",
    "EditOptions",
    "TuneOptions",
]
