"""Certified intersection size of a DPA ensemble under data poisoning.

PoisoningGuard, Theorem 2, Eq. (9). N base models are trained on disjoint hash
partitions; ``n_l`` of them put label l in their top-k_b. T poisoned examples touch at
most T~ partitions (T~ = 2T for modification, T for addition and deletion). With the
true labels' counts sorted ``n_{l_1} >= ... >= n_{l_M}`` and the other labels' counts
sorted ``n_{s_1} >= n_{s_2} >= ...``, size r is certified at T when

    max_{t=1..M-r+1} (1/t) (n_{l_r} + ... + n_{l_{r+t-1}} - min(k_b T~, t T~))
  > min_{t=1..k-r+1} (1/t) (n_{s_{k-r+2-t}} + ... + n_{s_{k-r+1}} + min(k_b T~, t T~)).

"dpa" (Levine & Feizi, ICLR 2021, extended to top-k) fixes t = 1; for k = k_b = 1 it is
their vote-gap condition ``n_y - n_c > 2 T~``.

The test is exact although it divides: both sides are fractions A/t with integer A and
t <= n_classes, IEEE division rounds correctly and monotonically, and two different
such fractions differ by at least 1/n_classes^2, far above float error for any
realistic vote count. Equal fractions give equal floats, so ">" never passes on a tie.
"""

from __future__ import annotations

import numpy as np

from .._validation import (
    ATTACKS,
    check_choice,
    check_count_matrix,
    check_label_matrix,
    check_radius,
)
from ._common import check_k, finalize_sizes, sorted_true_and_other, window_sums
from ._spec import CertificateSpec

DPA_METHODS = ("poisoningguard", "dpa")

__all__ = ["DPA", "DPA_METHODS", "dpa_certified_size", "partitions_touched"]


def partitions_touched(T: np.ndarray, attack: str) -> np.ndarray:
    """T~, the number of partitions T poisoned examples can change."""
    return 2 * T if attack == "modification" else T


def dpa_certified_size(
    counts: np.ndarray,
    Y: np.ndarray,
    *,
    k: int,
    k_base: int,
    radius,
    attack: str = "modification",
    method: str = "poisoningguard",
) -> np.ndarray:
    """Certified intersection size of a DPA ensemble against T poisoned examples.

    Deterministic: no confidence level is involved.

    Parameters
    ----------
    counts : array-like of int, shape (n_inputs, n_classes)
        ``n_l``, the number of base models whose top-k_base contains label l.
    Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        The labels L(x) whose presence in the top-k is certified.
    k : int
        Number of labels the ensemble predicts.
    k_base : int
        Number of labels each base model predicts.
    radius : int or array-like of int
        T, the number of poisoned training examples.
    attack : {"modification", "addition", "deletion"}, default="modification"
    method : {"poisoningguard", "dpa"}, default="poisoningguard"
        "poisoningguard" is Eq. (9); "dpa" is Eq. (9) with t fixed to 1.

    Returns
    -------
    sizes : ndarray of int, shape (n_inputs,) or (n_inputs, n_radii)

    Examples
    --------
    >>> dpa_certified_size([[10, 3, 1]], [[1, 0, 0]], k=1, k_base=1,
    ...                    radius=[0, 1, 2]).tolist()
    [[1, 1, 0]]
    """
    counts = check_count_matrix(counts)
    Y = check_label_matrix(Y)
    if counts.shape != Y.shape:
        raise ValueError(f"counts has shape {counts.shape} but Y has shape {Y.shape}.")
    n_classes = Y.shape[1]
    k = check_k(k, n_classes)
    k_base = check_k(k_base, n_classes, "k_base")
    T, scalar = check_radius(radius, integer=True)
    check_choice(attack, "attack", ATTACKS)
    check_choice(method, "method", DPA_METHODS)

    sizes = dpa_sizes_at(counts, Y, k, k_base, T[None, :], attack, method)
    return finalize_sizes(sizes, Y.sum(axis=1), k, n_classes, scalar)


def dpa_sizes_at(counts, Y, k, k_base, T, attack, method):
    """Certified sizes before clipping, for validated arguments.

    ``T`` has shape (1, n_radii) (the same radii for every input) or
    (n_inputs, n_radii) (radii per input, as the certified-radius search needs).
    """
    budget = partitions_touched(T, attack).astype(np.float64)  # T~ per radius
    return _eq9_sizes(counts.astype(np.float64), Y, k, k_base, budget,
                      t_fixed=method == "dpa")


def _eq9_sizes(counts, Y, k, k_base, budget, *, t_fixed):
    n_inputs, n_classes = Y.shape
    true_n, other_n, d = sorted_true_and_other(counts, counts, Y)
    other_n = np.nan_to_num(other_n, nan=0.0)  # absent labels: no votes
    prefix_true, prefix_other = window_sums(true_n), window_sums(other_n)
    sizes = np.zeros((n_inputs, budget.shape[1]), dtype=np.int64)

    for r in range(1, min(k, int(d.max(initial=0))) + 1):
        left = np.full((n_inputs, budget.shape[1]), -np.inf)
        for t in range(1, 2 if t_fixed else n_classes - r + 2):
            exists = r - 1 + t <= d  # t <= M - r + 1
            if not exists.any():
                break
            window = prefix_true[:, min(r - 1 + t, n_classes)] - prefix_true[:, r - 1]
            term = (window[:, None] - min(k_base, t) * budget) / t
            left = np.where(exists[:, None], np.maximum(left, term), left)
        s = k - r + 1
        top = min(s, n_classes)
        right = np.full((n_inputs, budget.shape[1]), np.inf)
        for t in range(1, 2 if t_fixed else s + 1):
            window = prefix_other[:, top] - prefix_other[:, min(s - t, n_classes)]
            term = (window[:, None] + min(k_base, t) * budget) / t
            right = np.minimum(right, term)
        passes = (left > right) & (d >= r)[:, None]
        sizes[passes] = r
    return sizes


DPA = CertificateSpec(
    name="dpa", function=dpa_certified_size, methods=DPA_METHODS, sampled=False,
    radius_name="T", params=("k_base", "attack"), recertifiable=frozenset({"attack"}))
