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

Public path: :func:`sklearn_certify.bounds.clopper_pearson_bounds`. Only numpy and scipy.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import betainc, betaincc, gammaln
from scipy.stats import beta

from .._utils._validation import check_alpha, check_alpha_level, check_counts

__all__ = ["clopper_pearson_bounds"]

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
