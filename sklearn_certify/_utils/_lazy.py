"""Lazy attribute loading for package namespaces (PEP 562).

Keeps ``import sklearn_certify`` light: the estimators (and torch behind them) load on
first use, while the pure certificate math needs only numpy and scipy.
"""

from __future__ import annotations

from importlib import import_module


def lazy_attributes(namespace: dict, mapping: dict[str, str]):
    """``__getattr__`` and ``__dir__`` for a module whose names live in submodules.

    ``mapping`` maps a public name to the module that defines it; the first access
    imports that module and caches the value in ``namespace`` (the package's globals).
    """
    package = namespace["__name__"]

    def __getattr__(name: str):
        if name in mapping:
            value = getattr(import_module(mapping[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(mapping))

    return __getattr__, __dir__
