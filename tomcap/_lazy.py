"""Package exports resolved on first use (PEP 562), so that importing a config module does not pay
for torch, FAISS or polars through its package's ``__init__`` (light commands, ``tomcap --help``)."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[list[str], Callable[[str], object]]:
    """(``__all__``, ``__getattr__``) for ``package``: ``exports`` maps a public name to the submodule
    (relative, e.g. ``".stage"``) that defines it, optionally as ``".stage:OTHER_NAME"``."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = exports[name].partition(":")
        value = getattr(importlib.import_module(module, package), attr or name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # later lookups skip __getattr__
        return value

    return sorted(exports), __getattr__
