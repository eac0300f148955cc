"""Pieces shared by every certificate: sorting labels, the trivial bounds, output shape."""

from __future__ import annotations

import numpy as np

from .._utils._validation import check_int


def check_k(k, n_classes: int, name: str = "k") -> int:
    return check_int(k, name, low=1, high=n_classes)


def check_top_k(Y: np.ndarray, k, base, base_name: str) -> tuple[int, int, int]:
    """``(n_classes, k, base)``: the number of labels of ``Y``, and ``k`` (labels the
    certified classifier predicts) and the size of each base prediction (``k_prime`` or
    ``k_base``, named ``base_name``), each checked against it."""
    n_classes = Y.shape[1]
    return n_classes, check_k(k, n_classes), check_k(base, n_classes, base_name)


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


class RankedLabels:
    """The ranking every theorem reads: per input, the true labels' values sorted
    descending ``a_1 >= ... >= a_d`` (``d = |L|``) and the other labels' values sorted
    descending ``b_1 >= b_2 >= ...``, with sums of consecutive positions.

    MultiGuard Eq. (8) reads ``A_u = a_e' + ... + a_{e'+u-1}`` and
    ``B_v = b_{s-v+1} + ... + b_s``; PoisoningGuard Eq. (4) and Eq. (9) read the same
    windows of the rounded bounds and of the vote counts (their ``t``). Positions count
    from 1; a label that does not exist (a position beyond the ``c - d`` other labels)
    has value 0.

    Attributes
    ----------
    true : ndarray, shape (n_inputs, n_classes)
        ``a``, NaN after the ``d`` true labels of each row.
    other : ndarray, shape (n_inputs, n_classes)
        ``b``, 0 after the ``c - d`` other labels of each row.
    n_true : ndarray of int, shape (n_inputs,)
        ``d``.
    """

    def __init__(self, values_true: np.ndarray, values_other: np.ndarray, Y: np.ndarray):
        self.true, other, self.n_true = sorted_true_and_other(values_true, values_other, Y)
        self.other = np.nan_to_num(other, nan=0.0)  # absent labels: probability / votes 0
        self.n_classes = Y.shape[1]
        self._prefix_true = window_sums(self.true)
        self._prefix_other = window_sums(self.other)

    def true_at(self, position: int) -> np.ndarray:
        """``a_position`` per input, 0 where the input has fewer true labels."""
        return np.nan_to_num(self.true[:, position - 1], nan=0.0)

    def true_window(self, first: int, width: int) -> np.ndarray:
        """``a_first + ... + a_{first+width-1}`` per input (absent labels count 0)."""
        last = min(first - 1 + width, self.n_classes)
        return self._prefix_true[:, last] - self._prefix_true[:, first - 1]

    def other_window(self, last: int, width: int) -> np.ndarray:
        """``b_{last-width+1} + ... + b_last`` per input (absent labels count 0)."""
        c = self.n_classes
        return self._prefix_other[:, min(last, c)] - self._prefix_other[:, min(last - width, c)]


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


def finalize_sizes(
    sizes: np.ndarray, n_true: np.ndarray, k: int, n_classes: int, scalar: bool
) -> np.ndarray:
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
