"""Per-input certified radii: the largest attack each input's certificate survives.

For one input and a target ``size``, the certified radius is the supremum of the
radii at which at least ``size`` of its true labels are certified. Every certificate
here is monotone in the radius (each candidate size is certified on an interval
``[0, R_e)``: the left-hand sides of the theorems decrease and the right-hand sides
increase with the radius), so the radius is found by search on the certificate
itself, for all inputs at once (:func:`certified_radius`):

* a real radius (Gaussian smoothing): exponential search for a failing radius, then
  bisection on the searched variable (``R / sigma``) until the bracket is narrower than
  1e-13 relative (or no float lies inside it): the returned R is certified and the
  supremum lies in ``[R, R (1 + 1e-13)]``;
* an integer radius (the ensembles' T): found exactly by exponential then binary search.

What varies per certificate comes from its spec: ``spec.integer_radius``, and
``spec.radius_search``, defined in the certificate's own module, which gives the
certified sizes of a batch of inputs at one radius each (a :class:`RadiusSearch`).

Inputs whose trivial floor ``k - (n_classes - |L|)`` already reaches ``size`` are
certified at every radius (``inf``); inputs not certified at radius 0, or with fewer
than ``size`` true labels, get 0. Only numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._common import finalize_sizes

__all__ = ["RadiusSearch", "certified_radius"]

# Bisection stops once every bracket is this narrow relative to its end (in R / sigma).
_RELATIVE_TOLERANCE = 1e-13
# R / sigma beyond which no Gaussian certificate can pass: Phi^-1 of the largest float
# below 1 is about 8.3, so both sides of Eq. (8) underflow long before.
_MAX_SHIFT = 1024.0
# T is capped where the radius validation caps it: beyond it every certificate is trivial.
_MAX_T = 2**53


@dataclass(frozen=True)
class RadiusSearch:
    """What a certificate gives the certified-radius search (``spec.radius_search``).

    Attributes
    ----------
    sizes_at : callable
        ``sizes_at(rows, radius)``: the certified sizes, before clipping, of the inputs
        ``rows`` at one radius each (``radius`` of shape ``(len(rows),)``), shape
        ``(len(rows), 1)``.
    scale : float, optional
        The search runs on ``radius / scale`` (Gaussian smoothing: ``R / sigma``, the
        variable its theorem reads); the radius returned is ``scale`` times the one
        found, stepped down where it rounds above it. None: the radius itself.
    """

    sizes_at: Callable
    scale: float | None = None


def certified_radius(
    spec,
    Y,
    *,
    k: int,
    method: str,
    params: dict,
    lower=None,
    upper=None,
    counts=None,
    size: int = 1,
) -> np.ndarray:
    """Certified radius per input of the certificate ``spec`` (validated arguments).

    ``lower`` and ``upper`` (sampled certificates) or ``counts`` are those the sizes were
    certified from; ``params`` the certificate's other parameters.

    Returns
    -------
    ndarray of float, shape (n_inputs,)
        The supremum (real radius, from below) or maximum (integer radius) of the radii
        at which at least ``size`` true labels are certified.
    """
    Y = np.asarray(Y)
    search = spec.radius_search(
        Y, k=k, method=method, params=params, lower=lower, upper=upper, counts=counts
    )
    found = _search(search.sizes_at, Y, k, size, integer=spec.integer_radius)
    if search.scale is None:
        return found
    radius = search.scale * found
    # Certificates at a radius R are computed from R / scale, which may round above the
    # certified value: step R down until it does not.
    above = np.isfinite(radius) & (radius / search.scale > found)
    while above.any():
        radius[above] = np.nextafter(radius[above], 0.0)
        above = np.isfinite(radius) & (radius / search.scale > found)
    return radius


def _search(sizes_at: Callable, Y: np.ndarray, k: int, size: int, *, integer: bool):
    """Supremum (float) or maximum (integer) radius with certified size >= ``size``.

    ``sizes_at(rows, radius)`` gives the unclipped sizes of the inputs ``rows`` at one
    radius each (shape (len(rows), 1)).
    """
    n_inputs, n_classes = Y.shape
    n_true = Y.sum(axis=1).astype(np.int64)

    def passes(rows, radius):
        sizes = finalize_sizes(sizes_at(rows, radius), n_true[rows], k, n_classes, False)
        return sizes[:, 0] >= size

    out = np.zeros(n_inputs)
    always = np.maximum(0, k - (n_classes - n_true)) >= size
    out[always] = np.inf
    rows = np.flatnonzero(~always & (np.minimum(k, n_true) >= size))
    zero = np.zeros(rows.size, dtype=np.int64 if integer else np.float64)
    rows = rows[passes(rows, zero)]  # the others are not certified at radius 0: 0

    # Exponential search: lo passes, hi fails (or exceeds the cap: certified throughout).
    dtype = np.int64 if integer else np.float64
    lo = np.zeros(rows.size, dtype=dtype)
    hi = np.ones(rows.size, dtype=dtype)
    cap = _MAX_T if integer else _MAX_SHIFT
    growing = np.arange(rows.size)
    while growing.size:
        ok = passes(rows[growing], hi[growing])
        growing = growing[ok]
        lo[growing] = hi[growing]
        hi[growing] *= 2
        beyond = hi[growing] > cap
        out[rows[growing[beyond]]] = np.inf
        growing = growing[~beyond]
    finite = np.isfinite(out[rows])
    rows, lo, hi = rows[finite], lo[finite], hi[finite]

    # Bisection: keep lo certified and hi not.
    while rows.size:
        if integer:
            open_ = np.flatnonzero(hi - lo > 1)
            mid = (lo[open_] + hi[open_]) // 2
        else:
            open_ = np.flatnonzero(hi - lo > _RELATIVE_TOLERANCE * hi)
            mid = 0.5 * (lo[open_] + hi[open_])
            # float midpoints can stop moving before the tolerance is met
            moving = (mid > lo[open_]) & (mid < hi[open_])
            open_, mid = open_[moving], mid[moving]
        if open_.size == 0:
            break
        ok = passes(rows[open_], mid)
        lo[open_[ok]] = mid[ok]
        hi[open_[~ok]] = mid[~ok]
    out[rows] = lo
    return out
