"""The layers, read from the imports of every module (at any depth: an import inside a function
counts too, so none may go upward to dodge a circle). Each top-level module or package imports only
those before it in ORDER; ``ddkit/__init__.py`` (the public names), ``__main__`` and ``_compat``
sit on top. The same order is written in ``ddkit/__init__.py``'s docstring and the README. The
samplers see only ``model_fn`` (every registered sampler's first parameter)."""

import ast
import inspect
import re
from pathlib import Path

import pytest

import ddkit
from ddkit.samplers import SAMPLERS

SRC = Path(ddkit.__file__).parent
ORDER = (
    "version",
    "options",
    "checks",
    "rng",
    "timesteps",
    "schedule",
    "forward",
    "parameterization",
    "losses",
    "guidance",
    "latents",
    "oracle",
    "samplers",
    "consistency",
    "edit",
    "klub",
    "tuning",
    "generate",
    "plots",
    "nn",
    "data",
    "eval",
    "training",
    "interop",
    "tasks",
    "cli",
)
ON_TOP = ("", "__main__", "_compat")  # "": ddkit/__init__.py
RANK = {name: i for i, name in enumerate(ORDER)}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every ddkit module ``path`` imports (relative imports resolved), at any depth of the file."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ddkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "ddkit":  # `from . import x` at the top: x is a module (or the package's own name)
                found |= {f"ddkit.{a.name}" for a in node.names}
            elif module.startswith("ddkit"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}  # `from . import x` names a module
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_was_read():
    assert "ddkit.samplers.ddim" in MODULES and "ddkit.cli.train" in MODULES and len(MODULES) > 50


def test_every_top_level_module_has_a_place_in_the_order():
    tops = {_top(m) for m in MODULES} - set(ON_TOP)
    assert not sorted(tops - set(ORDER)), "add each new module or package to ORDER (and the docs' order)"
    assert not sorted(set(ORDER) - tops), "ORDER names a module that no longer exists"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _top(m) not in ON_TOP))
def test_every_import_goes_down_the_order(name):
    here = RANK[_top(name)]
    bad = sorted(i for i in MODULES[name] if RANK.get(_top(i), len(ORDER)) > here)  # the package root: on top
    assert not bad, f"{name} ({_top(name)}) imports {bad}, which come after it in {ORDER}"


@pytest.mark.parametrize("doc", ["src/ddkit/__init__.py", "README.md"])
def test_the_docs_state_the_same_order(doc):
    text = (SRC.parent.parent / doc).read_text()
    chain = re.search(r"version ←[^\n]*(?:\n\s*←[^\n]*)*", text)
    assert chain, f"{doc} does not write the layer order"
    assert tuple(re.split(r"\s*←\s*", chain.group(0).strip())) == ORDER


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_takes_model_fn_first(name):
    params = list(inspect.signature(SAMPLERS[name].fn).parameters)
    assert params[:3] == ["model_fn", "x_T", "schedule"], params


# ddkit.__main__ is `python -m ddkit`: the command line's own entry point
@pytest.mark.parametrize("name", sorted(m for m in MODULES if _top(m) not in ("cli", "__main__")))
def test_nothing_but_cli_imports_cli(name):
    bad = sorted(i for i in MODULES[name] if _top(i) == "cli")
    assert not bad, f"{name} imports {bad}"


def test_the_checks_would_catch_a_violation(tmp_path):
    """The parser resolves relative imports, so a math module reaching into training is seen."""
    fake = SRC / "samplers" / "_probe_for_test.py"
    try:
        fake.write_text("from ..training import train\nfrom . import common\n")
        found = _imports(fake)
    finally:
        fake.unlink()
    assert "ddkit.training" in found and "ddkit.samplers.common" in found
    assert RANK[_top("ddkit.training")] > RANK["samplers"]


def test_an_import_of_the_package_root_is_upward(tmp_path):
    """``from . import __version__`` in a module (the circle tuning once closed this way) is seen."""
    fake = SRC / "_probe_for_test.py"
    try:
        fake.write_text("def f():\n    from . import __version__\n    from . import checks\n")
        found = _imports(fake)
    finally:
        fake.unlink()
    assert found == {"ddkit.__version__", "ddkit.checks"}
    assert RANK.get(_top("ddkit.__version__"), len(ORDER)) == len(ORDER)
