"""Argument checks shared by the whole library: one function per kind of value, each raising a
:class:`ParameterError` (a ``ValueError``) that names the parameter and the allowed values (never
``assert``).

Library errors name parameters (``steps``, ``num_timesteps``); the CLI maps them to its flags.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch


class ParameterError(ValueError):
    """A ValueError about the caller's parameters, written as a template whose parameter names stand
    in backticks ("`classifier_scale` needs `classifier`"). ``str()`` shows the plain names; a front
    end renders them its own way (:meth:`render`; the CLI as its flags)."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.render(lambda name: name))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each `parameter` written as ``name(parameter)``."""
        return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", lambda m: name(m.group(1)), self.template)


def invalid(name: str, rest: str) -> ParameterError:
    """The error "``name`` ``rest``" with ``name`` marked as a parameter (when it is an identifier:
    "num_timesteps (T)" stays as written), so that a front end can render it as its flag."""
    return ParameterError(f"`{name}` {rest}" if name.isidentifier() else f"{name} {rest}")


def is_int(value) -> bool:
    """An integer that is not a bool (``True`` is an ``int`` in Python; here it is not a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def integer(name: str, value, *, low: int | None = None, high: int | None = None, what: str | None = None) -> int:
    """``value`` as an int in [low, high] (either bound may be None); ``what`` rewords the allowed
    values in the error (default e.g. "an integer in [1, 10]")."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise invalid(name, f"must be {what or _int_range(low, high)}, got {value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    """``value`` as an int ≥ 1."""
    return integer(name, value, low=1)


def optional_positive_int(name: str, value) -> int | None:
    """None, or an int ≥ 1."""
    return None if value is None else positive_int(name, value)


def number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    what: str | None = None,
) -> float:
    """``value`` as a finite float in the interval given by ``low``/``high`` (closed unless
    ``low_open``/``high_open``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = ok and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise invalid(name, f"must be {what or _float_range(low, high, low_open, high_open)}, got {value!r}")
    return float(value)


def positive(name: str, value) -> float:
    """A finite number > 0."""
    return number(name, value, low=0.0, low_open=True)


def fraction(name: str, value, *, high_open: bool = False, what: str | None = None) -> float:
    """A number in [0, 1] (or [0, 1) with ``high_open``)."""
    return number(name, value, low=0.0, high=1.0, high_open=high_open, what=what)


def choice(name: str, value, allowed: Iterable) -> object:
    """``value`` if it is one of ``allowed``; the error lists them."""
    allowed = tuple(allowed)
    if isinstance(value, bool) or value not in allowed:
        raise invalid(name, f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def timestep_batch(
    t,
    n: int,
    num_timesteps: int | None = None,
    *,
    fractional: bool = False,
    phrase: str = "lie in",
    per_sample: bool = True,
) -> torch.Tensor:
    """A batch of 0-based training timesteps: an integer tensor [n] (or, with ``fractional``, a
    float one too: the timesteps of a σ-grid), in [0, T-1] when T = ``num_timesteps`` is given.

    The range is read only from a CPU tensor: on an accelerator that read would stall the device
    at every call (samplers call this in their loops), and an index out of range fails there anyway.
    ``phrase`` words the range error ("t must lie in …"), ``per_sample`` the shape error (the
    networks say "[N] = [n]", as they do for x)."""
    allowed = (torch.int64, torch.int32) + (
        (torch.float64, torch.float32, torch.float16, torch.bfloat16) if fractional else ()
    )
    if not isinstance(t, torch.Tensor) or t.dtype not in allowed:
        kind = "an integer or float" if fractional else "an integer (Long)"
        raise ValueError(
            f"t must be {kind} tensor of 0-based timesteps, got {type(t).__name__}"
            + (f" of dtype {t.dtype}" if isinstance(t, torch.Tensor) else "")
        )
    if t.dim() != 1 or t.shape[0] != n:
        if per_sample:
            raise ValueError(f"t must have shape [{n}] (one timestep per sample), got {list(t.shape)}")
        raise ValueError(f"t must have shape [N] = [{n}], got {tuple(t.shape)}")
    if num_timesteps is not None and n and t.device.type == "cpu":
        lo, hi = t.min().item(), t.max().item()
        if lo < 0 or hi > num_timesteps - 1:
            raise ValueError(f"t must {phrase} [0, {num_timesteps - 1}], got [{lo}, {hi}]")
    return t if t.is_floating_point() else t.long()


def labels(value, num_classes: int | None, name: str = "labels") -> torch.Tensor:
    """Class labels: an int (every sample that class) or an integer tensor [N], in [0, K-1] when
    the class count K is known (read only from a CPU tensor, as for timesteps). Returns a
    LongTensor (0-d for an int)."""
    if isinstance(value, bool):
        raise invalid(name, f"must be an int or an integer tensor [N], got {value!r}")
    value = torch.as_tensor(value)
    if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool or value.ndim > 1:
        raise invalid(name, f"must be an int or an integer tensor [N], got {value.dtype} {list(value.shape)}")
    value = value.long()
    if value.numel() and value.device.type == "cpu":
        lo, hi = int(value.min()), int(value.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            top = "" if num_classes is None else f", {num_classes - 1}"
            raise invalid(name, f"must be in [0{top}], got values in [{lo}, {hi}]")
    return value


def same_shape(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    """Two tensors of one shape (``names`` says which, e.g. "x0 and noise")."""
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {list(a.shape)} and {list(b.shape)}")


def decreasing(name: str, values: Sequence, low, high) -> list:
    """A non-empty, strictly decreasing sequence with every entry in [low, high]."""
    values = list(values)
    if not values or any(not low <= v <= high for v in values) or any(a <= b for a, b in zip(values, values[1:])):
        rest = f"must be a non-empty, strictly decreasing sequence in [{low}, {high}], got {_short(values)}"
        raise invalid(name, rest)
    return values


def _short(values: list) -> str:
    text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:8])
    return f"[{text}{', …' if len(values) > 8 else ''}]"


def _int_range(low, high) -> str:
    if low is not None and high is not None:
        return f"an integer in [{low}, {high}]"
    if low == 1:
        return "a positive integer"
    if low is not None:
        return f"an integer >= {low}"
    if high is not None:
        return f"an integer <= {high}"
    return "an integer"


def _float_range(low, high, low_open, high_open) -> str:
    if low is None and high is None:
        return "a finite number"
    if high is None:
        return "a positive number" if (low == 0 and low_open) else f"a number {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"a number {'<' if high_open else '<='} {high:g}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
