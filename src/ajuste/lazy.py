"""A package's names imported on first use (PEP 562): importing the package stays light, and a command
imports only what it uses (PyTorch, FastAPI, Optuna only where they are needed)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, modules: Mapping[str, Sequence[str]], *, submodules: bool = False
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports each name from its module when first asked
    (and, with ``submodules``, any other name that is one of the package's modules, as ``package.name``)."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        if submodules and not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
