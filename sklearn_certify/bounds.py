"""One-sided Clopper-Pearson bounds on label probabilities.

MultiGuard Eq. (9)-(10): with ``n`` draws and ``n_i`` hits for label ``i``,

    lower_i = Beta(alpha / c; n_i, n - n_i + 1)
    upper_i = Beta(1 - alpha / c; n_i + 1, n - n_i)

each one-sided at level ``alpha / c`` so that, by Bonferroni, all ``c`` bounds of an
input hold together with probability at least ``1 - alpha``.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import beta

from ._validation import check_alpha, check_counts

__all__ = ["clopper_pearson_bounds"]


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
