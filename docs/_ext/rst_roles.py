"""A griffe extension for the API reference: ddkit's docstrings use Sphinx roles
(:func:`name`, :class:`~ddkit.x.Name`, …) and reST literals (``x``), which Markdown would print as
they are. In prose each role becomes an optional cross-reference: a link when the target is
documented on the site, inline code otherwise (so `mkdocs build --strict` never fails on a role).
In indented code blocks (the notation tables) roles and ``literals`` become plain text."""

from __future__ import annotations

import html
import re

import griffe

ROLE = re.compile(r":(?P<kind>func|meth|class|data|attr|mod|exc|obj):`(?P<tilde>~?)(?P<target>[\w.]+)`")
LITERAL = re.compile(r"``(.+?)``")
CALLABLE = ("func", "meth")


class RstRoles(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj.docstring.value, obj)


def _walk(obj):
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _convert(text: str, obj) -> str:
    out, in_code, previous_blank = [], False, True
    for line in text.split("\n"):
        blank = not line.strip()
        indented = line.startswith("    ")
        in_code = indented and (in_code or previous_blank) if not blank else in_code
        if in_code and not blank:
            line = LITERAL.sub(r"\1", ROLE.sub(_plain, line))
        elif not blank:
            line = ROLE.sub(lambda m: _autoref(m, obj), line)
        out.append(line)
        previous_blank = blank
    return "\n".join(out)


def _shown(match: re.Match) -> str:
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target.lstrip(".")
    return shown + "()" if match["kind"] in CALLABLE else shown


def _plain(match: re.Match) -> str:
    return _shown(match)


def _autoref(match: re.Match, obj) -> str:
    identifier = html.escape(_resolve(obj, match["target"]))
    return f'<autoref identifier="{identifier}" optional><code>{html.escape(_shown(match))}</code></autoref>'


def _resolve(obj, target: str) -> str:
    """The full path of ``target`` as seen from ``obj``'s scope (its module's names), else ``target``."""
    if target.startswith("ddkit."):
        return target
    if target.startswith("."):  # relative to the package, as in an import
        module = obj if obj.is_module else obj.module
        base = module if module.is_init_module else module.parent
        dots = len(target) - len(target.lstrip("."))
        for _ in range(dots - 1):
            base = base.parent
        return f"{base.path}.{target.lstrip('.')}"
    head, _, rest = target.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    while scope is not None:
        try:
            full = scope.resolve(head)
        except Exception:  # noqa: BLE001 - any name griffe cannot resolve stays as written
            scope = scope.parent
            continue
        return f"{full}.{rest}" if rest else full
    return target
