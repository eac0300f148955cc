"""Data sets: the embedded multi-label benchmark and loaders for the papers' benchmarks."""

from .._utils._lazy import lazy_attributes

_LAZY = {
    "make_multidigit": "sklearn_certify.datasets._multidigit",
    "load_voc2007": "sklearn_certify.datasets._voc",
    "load_coco": "sklearn_certify.datasets._coco",
    "load_nuswide": "sklearn_certify.datasets._nuswide",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(globals(), _LAZY)
