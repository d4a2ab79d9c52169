"""Options declared once: a dataclass field that is also a user option carries, in its metadata, the
help text, the command-line spelling and the resume rule. The command line builds its parsers from
these fields (``ddkit.cli.common.add_options``), the Python functions take the same names as
keywords, and ``ddkit.training.api.RESUME_MAY_CHANGE`` is read from them.

    steps: int | None = option(1200, "optimizer steps", resume=True)

is a field with default 1200 whose flag is ``--steps``."""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class OptionSpec:
    """How a field is an option. ``name``: the keyword (default the field's name); ``flag``: the
    command-line spelling (default ``--name-with-dashes``); ``type``, ``choices``, ``metavar``,
    ``nargs`` as argparse reads them (``type`` default: from the annotation); ``switch``: a flag without a
    value; ``repeat``: may be given several times (a list); ``exclusive``: options of one group
    exclude each other on the command line; ``required``: the
    command line needs it; ``resume``: ``resume`` may change it."""

    help: str
    name: str | None = None
    flag: str | None = None
    type: Any = None
    choices: tuple | None = None
    metavar: Any = None
    nargs: Any = None
    switch: bool = False
    repeat: bool = False
    exclusive: str | None = None
    required: bool = False
    resume: bool = False


def option(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **spec) -> Any:
    """A dataclass field that is a user option (see :class:`OptionSpec` for ``spec``)."""
    return field(default=default, default_factory=default_factory, metadata={"option": OptionSpec(help, **spec)})


def option_fields(cls) -> list[tuple[Field, OptionSpec]]:
    """The fields of the dataclass ``cls`` that are options, in order, with their specs."""
    return [(f, f.metadata["option"]) for f in fields(cls) if "option" in f.metadata]


def option_name(f: Field, spec: OptionSpec) -> str:
    """The keyword of an option field (``spec.name``, else the field's own name)."""
    return spec.name or f.name


def field_default(f: Field) -> Any:
    """A field's default value (its factory called), or None when it has none."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def values_of(cls, options: dict) -> dict:
    """``options`` (keyword → value) restricted to the option fields of ``cls``, keyed by field name."""
    return {f.name: options[option_name(f, s)] for f, s in option_fields(cls) if option_name(f, s) in options}


__all__ = ["OptionSpec", "option", "option_fields", "option_name", "field_default", "values_of"]
