"""The module paths of ddkit 0.1 before the packages (``ddkit.train``, ``ddkit.config``,
``ddkit.toy`` …): each still imports, as a deprecated alias whose names come from the modules that
are their homes now (:data:`MOVED`). ``ddkit.train`` is also callable, since ``ddkit.train(...)``
is the training function: whichever of the two a program reaches, calling it trains.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

# old module -> the modules its names live in now (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "ddkit.train": (
        "ddkit.training.api",
        "ddkit.training.trainer",
        "ddkit.training.distributed",
        "ddkit.training.objectives",
        "ddkit.data.splits",
    ),
    "ddkit.config": ("ddkit.training.config", "ddkit.parameterization"),
    "ddkit.checkpoint": ("ddkit.training.checkpoint",),
    "ddkit.runlock": ("ddkit.training.rundir",),
    "ddkit.safety": ("ddkit.training.stops", "ddkit.training.checkpoint", "ddkit.training.precision"),
    "ddkit.ema": ("ddkit.training.ema",),
    "ddkit.precision": ("ddkit.training.precision",),
    "ddkit.reporting": ("ddkit.training.reporting",),
    "ddkit.tensorboard_log": ("ddkit.training.tensorboard_log",),
    "ddkit.runs": ("ddkit.training.load",),
    "ddkit.classify": ("ddkit.training.objectives",),
    "ddkit.toy": ("ddkit.data.toy", "ddkit.oracle"),
    "ddkit.images": ("ddkit.data.images",),
    "ddkit.diffusers_io": ("ddkit.interop.diffusers",),
}


class _Alias(types.ModuleType):
    """An old module path: attribute reads go to the new homes; calling it (``ddkit.train``) trains."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name, f"Deprecated alias of {', '.join(homes)}.")
        self._homes = homes

    def __getattr__(self, attr: str):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self.__name__ in EAGER:  # registered up front: it warns on use rather than on import
            _warn(self.__name__, stacklevel=3)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} (it moved to {self._homes[0]})")

    def __dir__(self):
        return sorted({n for home in self._homes for n in dir(importlib.import_module(home))})

    def __call__(self, *args, **kwargs):
        if self.__name__ != "ddkit.train":
            raise TypeError(f"module {self.__name__!r} is not callable")
        from .training.api import train

        return train(*args, **kwargs)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return _Alias(spec.name, MOVED[spec.name])

    def exec_module(self, module):
        _warn(module.__name__, stacklevel=2)


def _warn(name: str, stacklevel: int) -> None:
    warnings.warn(f"the module {name} is deprecated; use {MOVED[name][0]}", DeprecationWarning, stacklevel=stacklevel)


# old paths that are also names in the package (ddkit.train, the function): registered in sys.modules
# up front, so that importing the path finds the alias there and never rebinds ddkit.train
EAGER = ("ddkit.train",)


def install() -> None:
    """Put the finder for the old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
    for name in EAGER:
        sys.modules.setdefault(name, _Alias(name, MOVED[name]))
