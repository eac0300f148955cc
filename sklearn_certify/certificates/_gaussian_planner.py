"""The sample-size planner of Gaussian smoothing: what n_draws and alpha allow at best.

With every draw agreeing, the Clopper-Pearson bounds (MultiGuard Eq. (9)-(10)) are as
tight as ``n_draws`` and ``alpha`` let them be, and no input can be certified beyond the
radius (MultiGuard Theorem 1 / Eq. (8)) they give: :func:`max_certifiable_radius`, and
its inverse :func:`draws_for_radius`. Public path: :mod:`sklearn_certify.bounds`, beside
the bounds. Only numpy and scipy.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import ndtr, ndtri

from .._utils._validation import check_alpha, check_int, check_positive
from ._clopper_pearson import clopper_pearson_bounds
from ._gaussian import gaussian_certified_radius, gaussian_certified_size

__all__ = ["draws_for_radius", "max_certifiable_radius", "unreachable_radii"]


def max_certifiable_radius(
    n_draws, alpha: float, sigma: float, n_classes: int, *, k: int = 1, k_prime: int = 1
):
    """The largest l2 radius at which any input can be certified with these settings.

    Reached when every one of the ``n_draws`` noisy copies predicts the same ``k'``
    labels and those are the input's true labels: the Clopper-Pearson bounds are then
    as tight as ``n_draws`` and ``alpha`` allow. A radius at or beyond it certifies
    nothing (beyond the trivial bound), whatever the model. For ``k = k' = 1`` it is
    Cohen et al.'s radius at ``p_A = (alpha / n_classes) ** (1 / n_draws)``:

        max(0, sigma * Phi^-1((alpha / n_classes) ** (1 / n_draws))),

    0 where ``p_A <= 1/2`` (too few draws: even radius 0 is not certified).

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
        The supremum radius, 0 where no input can be certified even at radius 0
        (too few draws for ``alpha``). ``inf`` where ``k > n_classes - k_prime`` (one label,
        ``n_classes = 1``, included): the top-k of an input whose k' labels are all
        true then always holds a true label, and ``certify`` reports it certified at
        every radius by the trivial bound ``k - (n_classes - |L|)``.

    Examples
    --------
    >>> round(max_certifiable_radius(100, 0.001, 1.0, 10), 3)
    1.353
    """
    alpha, sigma, n_classes, k, k_prime = _check_settings(alpha, sigma, n_classes, k, k_prime)
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
        # Phi^-1(p_A) < 0 (p_A < 1/2): not certified at radius 0 either, as the
        # general path below reports it (the certified radius is 0, never negative).
        radius = np.maximum(sigma * ndtri(np.exp(np.log(level) / n)), 0.0)
    else:
        lower, upper, Y = _best_case(n.reshape(-1), n_classes, k_prime, alpha)
        radius = gaussian_certified_radius(
            lower, upper, Y, k=k, k_prime=k_prime, sigma=sigma, method="multiguard"
        )
        radius = radius.reshape(n.shape)
    return float(radius) if n.ndim == 0 else radius


def _check_settings(alpha, sigma, n_classes, k, k_prime):
    """The planner's settings, checked in this order: ``alpha, sigma, n_classes, k,
    k_prime``."""
    alpha = check_alpha(alpha)
    sigma = check_positive(sigma, "sigma")
    n_classes = check_int(n_classes, "n_classes")
    k = check_int(k, "k", high=n_classes)
    return alpha, sigma, n_classes, k, check_int(k_prime, "k_prime", high=n_classes)


def _best_case(n_draws: np.ndarray, n_classes: int, k_prime: int, alpha: float):
    """Bounds and labels of the best-case inputs, one per entry of the 1-D ``n_draws``:
    all their draws on their k' labels."""
    counts = np.zeros((n_draws.size, n_classes), dtype=np.int64)
    counts[:, :k_prime] = n_draws[:, None]
    Y = (np.arange(n_classes) < k_prime)[None, :].repeat(n_draws.size, axis=0)
    lower, upper = clopper_pearson_bounds(counts, n_draws, alpha)
    return lower, upper, Y


def unreachable_radii(
    radii, n_draws: int, alpha: float, sigma: float, n_classes: int, *, k: int = 1, k_prime: int = 1
) -> tuple[np.ndarray, float | None]:
    """Which of ``radii`` lie at or beyond :func:`max_certifiable_radius`, and that radius.

    The same answer as ``radii >= max_certifiable_radius(...)``, but the bisection behind
    the maximum (tens of certificate evaluations) runs only when some radius may be
    beyond it: one evaluation of the best-case input's certificate at every radius,
    widened by 2e-13 relative (more than the search's 1e-13 tolerance), rules the others
    out, since the certificate is monotone in the radius.

    Returns
    -------
    beyond : ndarray of bool, shape of ``radii``
    reach : float or None
        :func:`max_certifiable_radius`, or None when no radius is beyond it (not computed).
    """
    alpha, sigma, n_classes, k, k_prime = _check_settings(alpha, sigma, n_classes, k, k_prime)
    n_draws = check_int(n_draws, "n_draws", low=1)
    radii = np.asarray(radii, dtype=np.float64)
    general = not (k > n_classes - k_prime or (k == 1 and k_prime == 1))
    if general and radii.size:
        lower, upper, Y = _best_case(np.array([n_draws]), n_classes, k_prime, alpha)
        sizes = gaussian_certified_size(
            lower,
            upper,
            Y,
            k=k,
            k_prime=k_prime,
            sigma=sigma,
            radius=radii.reshape(-1) * (1 + 2e-13),
            method="multiguard",
        )
        if sizes.min() >= 1:  # every radius certified, with room: none is beyond
            return np.zeros(radii.shape, dtype=bool), None
    reach = max_certifiable_radius(n_draws, alpha, sigma, n_classes, k=k, k_prime=k_prime)
    beyond = radii >= reach
    return beyond, (reach if beyond.any() else None)


def draws_for_radius(
    radius: float, alpha: float, sigma: float, n_classes: int, *, k: int = 1, k_prime: int = 1
) -> int:
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
        raise TypeError(f"radius must be a real number, got {radius!r} ({type(radius).__name__}).")
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
