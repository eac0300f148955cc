"""One-sided Clopper-Pearson bounds on label probabilities.

MultiGuard Eq. (9)-(10): with ``n`` draws and ``n_i`` hits for label ``i``,

    lower_i = Beta(alpha / c; n_i, n - n_i + 1)
    upper_i = Beta(1 - alpha / c; n_i + 1, n - n_i)

each one-sided at level ``alpha / c`` so that, by Bonferroni, all ``c`` bounds of an
input hold together with probability at least ``1 - alpha``.

The Beta quantiles are only a starting point: every bound is checked against the
binomial tail it stands for (``P(Bin(n, lower) >= n_i) <= alpha / c`` and
``P(Bin(n, upper) <= n_i) <= alpha / c``, through the regularized incomplete beta
function) and, where the quantile missed by rounding or gave up (tiny levels), moved
to the safe side by bisection on that tail. Levels below ``MIN_LEVEL`` are refused.

The sample-size planner (:func:`max_certifiable_radius`, :func:`draws_for_radius`) asks
what these bounds allow at best: with every draw agreeing, the bounds are as tight as
``n_draws`` and ``alpha`` let them be, and no input can be certified beyond the radius
they give.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from scipy.special import betainc, betaincc, gammaln, ndtr, ndtri
from scipy.stats import beta

from ._utils._validation import (
    MIN_LEVEL,
    check_alpha,
    check_alpha_level,
    check_counts,
    check_int,
    check_positive,
)

__all__ = ["clopper_pearson_bounds", "MIN_LEVEL", "max_certifiable_radius", "draws_for_radius"]

# Every bound is settled at level * (1 - _SLACK), so that its tail stays below the level
# even when computed by another implementation of the binomial tail (which may differ
# in the last digits).
_SLACK = 1e-10
# Relative step of every quantile towards the trivial bound (see _settle); far below
# any meaningful change of the bound.
_NUDGE = 1e-9
# Halvings of a bracket (in log scale) in the bisection fallback: from any bracket
# inside (1e-308, 1) to a relative width far below float64 resolution.
_BISECTION_STEPS = 64


def clopper_pearson_bounds(
    counts: np.ndarray, n_draws: int | np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous one-sided Clopper-Pearson bounds for every label.

    Parameters
    ----------
    counts : array-like of int, shape (n_inputs, n_classes)
        How many of the ``n_draws`` base predictions contained each label.
    n_draws : int or array-like of int, shape (n_inputs,)
        Number of base predictions behind each row of ``counts``.
    alpha : float in (0, 1)
        Failure probability per input. Each bound holds at level
        ``alpha / n_classes`` (Bonferroni), so that all bounds of one row hold
        together with probability at least ``1 - alpha``. ``alpha / n_classes`` must
        be at least ``1e-300``.

    Returns
    -------
    lower, upper : ndarray of float, shape (n_inputs, n_classes)
        ``lower`` is 0 where ``counts == 0`` and ``upper`` is 1 where
        ``counts == n_draws``. Each bound's binomial tail, computed in double
        precision, is at most ``alpha / n_classes``.

    Examples
    --------
    >>> import numpy as np
    >>> lower, upper = clopper_pearson_bounds(np.array([[900, 100, 0]]), 1000, 0.001)
    >>> bool(lower[0, 0] < 0.9 < upper[0, 0]), float(lower[0, 2])
    (True, 0.0)
    """
    alpha = check_alpha(alpha)
    counts, n = check_counts(counts, n_draws)
    n_classes = counts.shape[1]
    level = check_alpha_level(alpha, n_classes)
    n = np.broadcast_to(n, counts.shape)
    lower = np.zeros(counts.shape)
    upper = np.ones(counts.shape)
    hit = counts > 0
    if hit.any():
        lower[hit] = _lower_bound(counts[hit], n[hit], level)
    miss = counts < n
    if miss.any():
        upper[miss] = _upper_bound(counts[miss], n[miss], level)
    return lower, upper


def _log_binom(n, x):
    return gammaln(n + 1.0) - gammaln(x + 1.0) - gammaln(n - x + 1.0)


def _lower_bound(x, n, level):
    """Largest p found with ``P(Bin(n, p) >= x) <= level``, for counts ``x >= 1``."""
    def tail(p, i):
        return betainc(x[i], n[i] - x[i] + 1, p)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # boost gives up at tiny levels
        guess = beta.ppf(level, x, n - x + 1)
    # Union bound: P(Bin(n, p) >= x) <= C(n, x) p^x, so this p is always safe.
    safe = np.exp((np.log(level) - _log_binom(n, x)) / x)
    return _settle(tail, guess, safe, 0.0, level, lambda p: p)


def _upper_bound(x, n, level):
    """Smallest p found with ``P(Bin(n, p) <= x) <= level``, for counts ``x < n``."""
    def tail(p, i):
        return betaincc(x[i] + 1, n[i] - x[i], p)

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        guess = beta.isf(level, x + 1, n - x)
    # Union bound on the n - x failures: P(Bin(n, p) <= x) <= C(n, x) (1 - p)^(n - x).
    safe = 1.0 - np.exp((np.log(level) - _log_binom(n, x)) / (n - x))
    return _settle(tail, guess, safe, 1.0, level, lambda p: 1.0 - p)


def _settle(tail, guess, safe, trivial, level, gap):
    """Bounds whose tail is at most ``level``: the guess nudged, or bisected if needed.

    ``tail(p, i)`` is the tail at p for the entries ``i``; ``gap(p)`` is the distance
    from p to the trivial bound (p for a lower bound, 1 - p for an upper one), in which
    the bisection halves brackets geometrically, since bounds span many decades.
    """
    level = level * (1.0 - _SLACK)
    index = np.arange(guess.size)
    # Step every quantile towards the trivial bound by a hair, so that rounding in the
    # quantile cannot leave it on the wrong side of its tail.
    bound = np.where(np.isfinite(guess), trivial + (guess - trivial) * (1.0 - _NUDGE), trivial)
    bad = ~(tail(bound, index) <= level)
    if bad.any():  # the quantile failed: bisect between a safe and an unsafe point
        i = index[bad]
        good = np.where(tail(safe[i], i) <= level, safe[i], trivial)
        # The opposite end always fails: its tail is 1 > level.
        unsafe = np.where(np.isfinite(guess[i]), bound[i], 1.0 - trivial)
        for _ in range(_BISECTION_STEPS):
            g, u = gap(good), gap(unsafe)
            mid_gap = np.where(g > 0, np.sqrt(g * u), u / 2)
            mid = trivial + np.where(trivial == 0.0, mid_gap, -mid_gap)
            ok = tail(mid, i) <= level
            good = np.where(ok, mid, good)
            unsafe = np.where(ok, unsafe, mid)
        bound[i] = good
    return bound


def max_certifiable_radius(n_draws, alpha: float, sigma: float, n_classes: int, *,
                           k: int = 1, k_prime: int = 1):
    """The largest l2 radius at which any input can be certified with these settings.

    Reached when every one of the ``n_draws`` noisy copies predicts the same ``k'``
    labels and those are the input's true labels: the Clopper-Pearson bounds are then
    as tight as ``n_draws`` and ``alpha`` allow. A radius at or beyond it certifies
    nothing (beyond the trivial bound), whatever the model. For ``k = k' = 1`` it is
    Cohen et al.'s radius at ``p_A = (alpha / n_classes) ** (1 / n_draws)``:

        sigma * Phi^-1((alpha / n_classes) ** (1 / n_draws)).

    Otherwise it is the certified radius (at least one true label, MultiGuard Eq. 8)
    of those best-case counts.

    Parameters
    ----------
    n_draws : int or array-like of int
        Noisy draws per input.
    alpha : float in (0, 1)
        Failure probability per input (bounds at ``alpha / n_classes`` each).
    sigma : float
        Standard deviation of the smoothing noise.
    n_classes : int
        Number of labels.
    k, k_prime : int, default=1
        Labels predicted by the smoothed and by the base classifier.

    Returns
    -------
    float or ndarray of float
        The supremum radius. ``inf`` where ``k > n_classes - k_prime`` (one label,
        ``n_classes = 1``, included): the top-k of an input whose k' labels are all
        true then always holds a true label, and ``certify`` reports it certified at
        every radius by the trivial bound ``k - (n_classes - |L|)``.

    Examples
    --------
    >>> round(max_certifiable_radius(100, 0.001, 1.0, 10), 3)
    1.353
    """
    alpha = check_alpha(alpha)
    sigma = check_positive(sigma, "sigma")
    n_classes = check_int(n_classes, "n_classes")
    k = check_int(k, "k", high=n_classes)
    k_prime = check_int(k_prime, "k_prime", high=n_classes)
    n = np.asarray(n_draws)
    if not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
        raise ValueError(f"n_draws must hold integers >= 1, got {n_draws!r}.")
    level = alpha / n_classes
    if k > n_classes - k_prime:
        # The best-case input has k' true labels, so its trivial bound
        # k - (n_classes - k') is at least 1 with no draw at all: certify reports a
        # true label at every radius (n_classes = 1 included).
        radius = np.full(n.shape, np.inf)
    elif k == 1 and k_prime == 1:
        radius = sigma * ndtri(np.exp(np.log(level) / n))
    else:
        from ._radius import gaussian_certified_radius

        rows = n.reshape(-1)
        counts = np.zeros((rows.size, n_classes), dtype=np.int64)
        counts[:, :k_prime] = rows[:, None]
        Y = (np.arange(n_classes) < k_prime)[None, :].repeat(rows.size, axis=0)
        lower, upper = clopper_pearson_bounds(counts, rows, alpha)
        radius = gaussian_certified_radius(lower, upper, Y, k=k, k_prime=k_prime,
                                           sigma=sigma, method="multiguard")
        radius = radius.reshape(n.shape)
    return float(radius) if n.ndim == 0 else radius


def draws_for_radius(radius: float, alpha: float, sigma: float, n_classes: int, *,
                     k: int = 1, k_prime: int = 1) -> int:
    """The fewest draws per input with which ``radius`` can be certified at all.

    The inverse of :func:`max_certifiable_radius`: the smallest ``n_draws`` whose
    maximum certifiable radius exceeds ``radius``. It is a floor, reached only by an
    input whose every draw agrees; inputs with less agreement need more. For
    ``k = k' = 1`` it is ``floor(log(alpha / n_classes) / log(Phi(radius / sigma))) + 1``.

    Parameters
    ----------
    radius : float
        The l2 radius to certify (>= 0).
    alpha, sigma, n_classes, k, k_prime
        As in :func:`max_certifiable_radius`.

    Returns
    -------
    int
        1 where ``max_certifiable_radius`` is ``inf`` (``k > n_classes - k_prime``, one
        label included): the trivial bound certifies every radius without any draw,
        and 1 is the fewest draws the estimators take.

    Raises
    ------
    TypeError
        If ``radius`` is not a real number (a string or a bool is refused).
    ValueError
        If ``radius`` is negative or not finite, or more than 2**53 draws would be
        needed.

    Examples
    --------
    >>> draws_for_radius(0.5, 0.001, 0.5, 10)
    54
    """
    if not isinstance(radius, numbers.Real) or isinstance(radius, bool | np.bool_):
        raise TypeError(
            f"radius must be a real number, got {radius!r} ({type(radius).__name__}).")
    radius = float(radius)
    if not (np.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a finite number >= 0, got {radius}.")

    def reaches(n):
        return max_certifiable_radius(n, alpha, sigma, n_classes, k=k, k_prime=k_prime) > radius

    if np.isinf(max_certifiable_radius(1, alpha, sigma, n_classes, k=k, k_prime=k_prime)):
        return 1
    unreachable = ValueError(
        f"radius={radius} cannot be certified with any practical number of draws "
        f"(sigma={sigma}, alpha={alpha}, n_classes={n_classes}, k={k}, k_prime={k_prime})."
    )
    if k == 1 and k_prime == 1:
        log_phi = np.log(ndtr(radius / sigma))
        if log_phi == 0.0 or np.log(alpha / n_classes) / log_phi > 2.0**53:
            raise unreachable
        guess = int(np.floor(np.log(alpha / n_classes) / log_phi)) + 1
        # guard the float edge: step to the exact smallest n
        n = max(guess - 1, 1)
        while not reaches(n):
            n += 1
        while n > 1 and reaches(n - 1):
            n -= 1
        return n
    lo, hi = 0, 1  # reaches(hi) after the exponential search, not reaches(lo)
    while not reaches(hi):
        lo, hi = hi, 2 * hi
        if hi > 2**53:
            raise unreachable
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi
