"""Pieces every ``ddkit`` subcommand shares: the one-line usage error and the parser built from the
option dataclasses (:mod:`ddkit.options`)."""

from __future__ import annotations

import argparse

from ..options import field_default, option_fields, option_name


class UsageError(ValueError):
    """Bad command-line input."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse prints usage too by default)
        raise UsageError(message)


_TYPES = {"int": int, "float": float, "str": str}
# library parameters whose flag is not their name with dashes (nor a field's flag)
FLAG_NAMES = {"weak": "--guide-with"}


def add_options(p, cls, *, only=None, none=False, helps=None, shown=None) -> list:
    """One flag per option field of the dataclass ``cls`` (its spec in the field's metadata), or of
    those named in ``only``. ``none``: every default None (not given: the library's default
    applies); ``helps`` replace a field's help, ``shown`` the default its help names (``{default}``).
    Returns the keywords, in order."""
    groups, names = {}, []
    for f, spec in option_fields(cls):
        name = option_name(f, spec)
        if only is not None and name not in only:
            continue
        help_ = (helps or {}).get(name, spec.help).format(default=(shown or {}).get(name, field_default(f)))
        kwargs = {"dest": name, "help": help_, "default": None if none else field_default(f)}
        if spec.switch:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = spec.type or _TYPES[str(f.type).split("|")[0].strip()]
            extra = {"choices": spec.choices, "metavar": spec.metavar, "nargs": spec.nargs}
            kwargs |= {k: v for k, v in extra.items() if v is not None}
            kwargs |= {"action": "append"} if spec.repeat else {}
        kwargs |= {"required": True} if spec.required else {}
        if spec.exclusive is not None and spec.exclusive not in groups:
            groups[spec.exclusive] = p.add_mutually_exclusive_group()
        target = groups[spec.exclusive] if spec.exclusive is not None else p
        target.add_argument(spec.flag or "--" + name.replace("_", "-"), **kwargs)
        names.append(name)
    return names


def given(args, names) -> dict:
    """{name: value} of ``names`` in the parsed ``args``."""
    return {name: getattr(args, name) for name in names}


def flags_of(parser: argparse.ArgumentParser, command: str) -> dict[str, str]:
    """{dest: its first long flag} for the subcommand ``command``, and :data:`FLAG_NAMES`."""
    flags = dict(FLAG_NAMES)
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        sub = action.choices.get(command) if hasattr(action, "choices") else None
        for a in sub._actions if sub is not None else ():
            long = [o for o in a.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(a.dest, long[0])
    return flags
