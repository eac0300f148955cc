"""Data sets: the embedded multi-label benchmark and loaders for the papers' benchmarks."""

from importlib import import_module

_LAZY = {
    "make_multidigit": "sklearn_certify.datasets._multidigit",
    "load_voc2007": "sklearn_certify.datasets._voc",
    "load_coco": "sklearn_certify.datasets._coco",
    "load_nuswide": "sklearn_certify.datasets._nuswide",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sklearn_certify.datasets' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
