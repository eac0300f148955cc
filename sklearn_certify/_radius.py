"""Per-input certified radii: the largest attack each input's certificate survives.

For one input and a target ``size``, the certified radius is the supremum of the
radii at which at least ``size`` of its true labels are certified. Every certificate
here is monotone in the radius (each candidate size is certified on an interval
``[0, R_e)``: the left-hand sides of the theorems decrease and the right-hand sides
increase with the radius), so the radius is found by search on the certificate
itself, for all inputs at once:

* Gaussian smoothing: exponential search for a failing radius, then bisection on
  ``R / sigma`` until the bracket is narrower than 1e-13 relative (or no float lies
  inside it): the returned R is certified and the supremum lies in
  ``[R, R (1 + 1e-13)]``;
* the ensembles: T is an integer, found exactly by exponential then binary search.

Inputs whose trivial floor ``k - (n_classes - |L|)`` already reaches ``size`` are
certified at every radius (``inf``); inputs not certified at radius 0, or with fewer
than ``size`` true labels, get 0. Only numpy and the certificate functions are used.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .certificates._bagging import bagging_sizes_at, rounded_bounds
from .certificates._common import finalize_sizes
from .certificates._dpa import dpa_sizes_at
from .certificates._finite_aggregation import FAStatistics, fa_statistics
from .certificates._gaussian import gaussian_sizes_at

__all__ = ["gaussian_certified_radius", "bagging_certified_radius", "dpa_certified_radius"]

# Bisection stops once every bracket is this narrow relative to its end (in R / sigma).
_RELATIVE_TOLERANCE = 1e-13
# R / sigma beyond which no Gaussian certificate can pass: Phi^-1 of the largest float
# below 1 is about 8.3, so both sides of Eq. (8) underflow long before.
_MAX_SHIFT = 1024.0
# T is capped where the radius validation caps it: beyond it every certificate is trivial.
_MAX_T = 2**53


def gaussian_certified_radius(lower, upper, Y, *, k, k_prime, sigma, method, size=1):
    """Certified l2 radius per input of Gaussian smoothing (validated arguments).

    Returns
    -------
    ndarray of float, shape (n_inputs,)
        The supremum of the radii at which at least ``size`` true labels are
        certified, from below: the returned radius R is certified, and the supremum
        lies in ``[R, R (1 + 1e-13)]``.
    """
    lower, upper, Y = (np.asarray(a) for a in (lower, upper, Y))

    def sizes_at(rows, shift):
        return gaussian_sizes_at(lower[rows], upper[rows], Y[rows], k, k_prime,
                                 shift[:, None], method)

    shift = _search(sizes_at, Y, k, size, integer=False)
    radius = sigma * shift
    # Certificates at a radius R are computed from R / sigma, which may round above the
    # certified shift: step R down until it does not.
    above = np.isfinite(radius) & (radius / sigma > shift)
    while above.any():
        radius[above] = np.nextafter(radius[above], 0.0)
        above = np.isfinite(radius) & (radius / sigma > shift)
    return radius


def dpa_certified_radius(counts, Y, *, k, k_base, attack, method, size=1, spread=1):
    """Largest certified T per input of a DPA ensemble (validated arguments).

    ``counts`` are vote counts, or every model's votes (Finite Aggregation), whose
    per-input statistics are computed once for the whole search.
    """
    counts, Y = np.asarray(counts), np.asarray(Y)
    if counts.ndim == 3:
        counts = fa_statistics(counts, Y, spread)

    def sizes_at(rows, T):
        own = counts.take(rows) if isinstance(counts, FAStatistics) else counts[rows]
        return dpa_sizes_at(own, Y[rows], k, k_base, T[:, None], attack, method, spread)

    return _search(sizes_at, Y, k, size, integer=True)


def bagging_certified_radius(lower, upper, Y, *, k, k_base, n_train, max_samples, attack,
                             method, size=1):
    """Largest certified T per input of a bagging ensemble (validated arguments)."""
    Y = np.asarray(Y)
    p_sharp, p_star = rounded_bounds(np.asarray(lower), np.asarray(upper), n_train,
                                     max_samples, k_base)

    def sizes_at(rows, T):
        return bagging_sizes_at(p_sharp[rows], p_star[rows], Y[rows], k, k_base, n_train,
                                max_samples, T[:, None], attack, method)

    return _search(sizes_at, Y, k, size, integer=True)


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


def certified_radius_of(certificate: str, *, method: str, k: int, params: dict, Y,
                        lower=None, upper=None, counts=None, size: int = 1) -> np.ndarray:
    """Dispatch on the certificate kind of a :class:`CertificationResult`."""
    if certificate == "gaussian":
        return gaussian_certified_radius(lower, upper, Y, k=k, k_prime=params["k_prime"],
                                         sigma=params["sigma"], method=method, size=size)
    if certificate == "bagging":
        return bagging_certified_radius(
            lower, upper, Y, k=k, k_base=params["k_base"], n_train=params["n_train"],
            max_samples=params["max_samples"], attack=params["attack"], method=method,
            size=size)
    if certificate == "dpa":
        return dpa_certified_radius(counts, Y, k=k, k_base=params["k_base"],
                                    attack=params["attack"], method=method, size=size,
                                    spread=params.get("spread", 1))
    raise ValueError(f"no certified radius for certificate {certificate!r}.")
