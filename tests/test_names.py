"""Every name the package publishes (``ddkit.__all__``) imports and exists."""

import importlib

import ddkit


def test_every_name_in_all_imports():
    assert len(ddkit.__all__) == len(set(ddkit.__all__))
    namespace: dict = {}
    exec(f"from ddkit import {', '.join(ddkit.__all__)}", namespace)
    assert all(namespace[name] is getattr(ddkit, name) for name in ddkit.__all__)


def test_old_module_paths_are_gone():
    """0.2.0 removed the 0.1 module paths (CHANGELOG.md); ``ddkit.train`` is the training function."""
    for path in ("ddkit.config", "ddkit.toy", "ddkit.checkpoint", "ddkit.diffusers_io", "ddkit.metrics"):
        try:
            importlib.import_module(path)
        except ModuleNotFoundError:
            continue
        raise AssertionError(f"{path} still imports")
    assert callable(ddkit.train) and not hasattr(ddkit.train, "__path__")
