"""One-sided Clopper-Pearson bounds on label probabilities.

MultiGuard Eq. (9)-(10): with ``n`` draws and ``n_i`` hits for label ``i``,

    lower_i = Beta(alpha / c; n_i, n - n_i + 1)
    upper_i = Beta(1 - alpha / c; n_i + 1, n - n_i)

each one-sided at level ``alpha / c`` so that, by Bonferroni, all ``c`` bounds of an
input hold together with probability at least ``1 - alpha``.

The sample-size planner (:func:`max_certifiable_radius`, :func:`draws_for_radius`) asks
what these bounds allow at best: with every draw agreeing, the bounds are as tight as
``n_draws`` and ``alpha`` let them be, and no input can be certified beyond the radius
they give.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import beta

from ._validation import check_alpha, check_counts, check_int, check_positive

__all__ = ["clopper_pearson_bounds", "max_certifiable_radius", "draws_for_radius"]


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
        together with probability at least ``1 - alpha``.

    Returns
    -------
    lower, upper : ndarray of float, shape (n_inputs, n_classes)
        ``lower`` is 0 where ``counts == 0`` and ``upper`` is 1 where
        ``counts == n_draws``.

    Examples
    --------
    >>> import numpy as np
    >>> lower, upper = clopper_pearson_bounds(np.array([[900, 100, 0]]), 1000, 0.001)
    >>> bool(lower[0, 0] < 0.9 < upper[0, 0]), float(lower[0, 2])
    (True, 0.0)
    """
    alpha = check_alpha(alpha)
    counts, n = check_counts(counts, n_draws)
    level = alpha / counts.shape[1]
    # Degenerate shapes (a == 0 or b == 0) are the closed ends of the interval and
    # are set explicitly below; scipy returns nan there.
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = beta.ppf(level, counts, n - counts + 1)
        upper = beta.ppf(1.0 - level, counts + 1, n - counts)
    lower = np.where(counts == 0, 0.0, lower)
    upper = np.where(counts == n, 1.0, upper)
    return lower.astype(np.float64), upper.astype(np.float64)


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
        The supremum radius (``inf`` where ``k > n_classes - k_prime``: the top-k then
        always holds a true label).

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
    if k == 1 and k_prime == 1:
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

    Raises
    ------
    ValueError
        If more than 2**53 draws would be needed.

    Examples
    --------
    >>> draws_for_radius(0.5, 0.001, 0.5, 10)
    54
    """
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
