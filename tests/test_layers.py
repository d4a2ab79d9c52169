"""The layers, read from the imports of every module: math ← nn ← data ← training ← eval ← cli.

The nevers: the math imports nothing from nn/, data/, training/, eval/, interop/ or cli/; the
samplers see only ``model_fn`` (they import the math alone, and every registered sampler's first
parameter is ``model_fn``); nothing but cli/ imports cli/."""

import ast
import inspect
from pathlib import Path

import pytest

import ddkit
from ddkit.samplers import SAMPLERS

SRC = Path(ddkit.__file__).parent
MATH = (
    "schedule",
    "timesteps",
    "forward",
    "parameterization",
    "losses",
    "guidance",
    "samplers",
    "checks",
    "rng",
    "latents",
    "oracle",
    "edit",
    "tuning",
    "options",
)
MACHINERY = ("nn", "data", "training", "eval", "interop", "tasks", "cli", "generate", "plots")


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
            if module.startswith("ddkit"):
                found.add(module)
                found |= {f"{module}.{a.name}" for a in node.names}  # `from . import x` names a module
    return found


MODULES = {_module_name(p): _imports(p) for p in sorted(SRC.rglob("*.py"))}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_was_read():
    assert "ddkit.samplers.ddim" in MODULES and "ddkit.cli.train" in MODULES and len(MODULES) > 50


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _top(m) in MATH))
def test_the_math_imports_no_machinery(name):
    bad = sorted(i for i in MODULES[name] if _top(i) in MACHINERY)
    assert not bad, f"{name} (math) imports {bad}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _top(m) == "samplers"))
def test_samplers_import_only_the_math(name):
    bad = sorted(i for i in MODULES[name] if _top(i) not in MATH)
    assert not bad, f"{name} imports {bad}: a sampler sees only model_fn"


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
