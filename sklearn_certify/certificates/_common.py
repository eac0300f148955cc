"""Pieces shared by every certificate: sorting labels, the trivial bounds, output shape."""

from __future__ import annotations

import numpy as np

from .._utils._validation import check_int


def check_k(k, n_classes: int, name: str = "k") -> int:
    return check_int(k, name, low=1, high=n_classes)


def sorted_true_and_other(values_true, values_other, Y):
    """Sort the true labels' values and the other labels' values, each descending.

    Returns ``(true_sorted, other_sorted, n_true)`` of shapes (n, c), (n, c), (n,).
    Row i of ``true_sorted`` holds the values of its ``n_true[i]`` true labels in
    descending order followed by NaN; ``other_sorted`` likewise for the
    ``c - n_true[i]`` other labels.
    """
    true_sorted = -np.sort(np.where(Y, -values_true, np.inf), axis=1)
    other_sorted = -np.sort(np.where(Y, np.inf, -values_other), axis=1)
    true_sorted[~np.isfinite(true_sorted)] = np.nan
    other_sorted[~np.isfinite(other_sorted)] = np.nan
    return true_sorted, other_sorted, Y.sum(axis=1)


def window_sums(values_sorted: np.ndarray) -> np.ndarray:
    """Prefix sums with a leading zero column, NaN (absent labels) counted as 0.

    ``P[:, j] - P[:, i]`` is the sum of sorted positions ``i .. j-1``.
    """
    zeroed = np.nan_to_num(values_sorted, nan=0.0)
    out = np.zeros((zeroed.shape[0], zeroed.shape[1] + 1), dtype=zeroed.dtype)
    np.cumsum(zeroed, axis=1, out=out[:, 1:])
    return out


# Relative margin of the strict comparisons of the sampled certificates. Both sides are
# float evaluations of real expressions (prefix-sum differences, Phi(Phi^-1(x)) round
# trips, k' * Phi(Phi^-1(x / k'))) that are off by a few ulps; on an exact tie in real
# arithmetic (which the theorems must reject) that noise could make "left > right" true.
# The margin is far above that noise and far below any statistical resolution.
TIE_MARGIN = 1e-12


def strictly_greater(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``left > right`` with a margin that keeps float noise from passing a real tie."""
    return left > right + TIE_MARGIN * np.maximum(1.0, np.abs(right))


def finalize_sizes(sizes: np.ndarray, n_true: np.ndarray, k: int, n_classes: int,
                   scalar: bool) -> np.ndarray:
    """Clip to the trivial bounds and shape the result.

    Whatever the attack, the top-k holds at least ``k - (n_classes - |L|)`` true
    labels (there are not enough other labels to fill it) and at most
    ``min(k, |L|)``. Rows without true labels get 0.
    """
    n_true = n_true[:, None]
    floor = np.maximum(0, k - (n_classes - n_true))
    cap = np.minimum(k, n_true)
    sizes = np.clip(sizes, floor, cap).astype(np.int64)
    return sizes[:, 0] if scalar else sizes
