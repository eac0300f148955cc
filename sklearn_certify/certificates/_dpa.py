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

"finite-aggregation" certifies an ensemble fitted with Finite Aggregation's buckets
(``DPACertifiedClassifier(spread=d)``, d >= 1) from every base model's votes, shape
(n_inputs, n_models, k_b); see :mod:`._finite_aggregation` and
``docs/poisoningguard.md``. With ``spread=d``, "poisoningguard" and "dpa" are Eq. (9)
with T~ replaced by ``d T~`` (each changed bucket changes at most d models).

The test is exact although it divides: both sides are fractions A/t with integer A and
t <= n_classes, IEEE division rounds correctly and monotonically, and two different
such fractions differ by at least 1/n_classes^2, far above float error for any
realistic vote count. Equal fractions give equal floats, so ">" never passes on a tie.
"""

from __future__ import annotations

import numpy as np

from .._utils._validation import (
    ATTACKS,
    check_choice,
    check_count_matrix,
    check_int,
    check_label_matrix,
    check_radius,
)
from ._common import RankedLabels, check_top_k, finalize_sizes
from ._finite_aggregation import FAStatistics, fa_sizes_at, fa_statistics
from ._radius import RadiusSearch
from ._spec import CertificateSpec

DPA_METHODS = ("poisoningguard", "dpa", "finite-aggregation")

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
    spread: int = 1,
) -> np.ndarray:
    """Certified intersection size of a DPA ensemble against T poisoned examples.

    Deterministic: no confidence level is involved.

    Parameters
    ----------
    counts : array-like of int, shape (n_inputs, n_classes) or (n_inputs, n_models, k_base)
        ``n_l``, the number of base models whose top-k_base contains label l; or,
        for "finite-aggregation" (and accepted by the other methods), the labels every
        base model votes for: ``counts[i, j]`` holds the ``k_base`` labels of model
        ``j`` on input ``i`` (:meth:`DPACertifiedClassifier.certify
        <sklearn_certify.DPACertifiedClassifier.certify>` keeps this array as the
        result's ``counts`` for that method).
    Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        The labels L(x) whose presence in the top-k is certified.
    k : int
        Number of labels the ensemble predicts.
    k_base : int
        Number of labels each base model predicts.
    radius : int or array-like of int
        T, the number of poisoned training examples.
    attack : {"modification", "addition", "deletion"}, default="modification"
    method : {"poisoningguard", "dpa", "finite-aggregation"}, default="poisoningguard"
        "poisoningguard" is Eq. (9); "dpa" is Eq. (9) with t fixed to 1;
        "finite-aggregation" uses every model's votes (per-model ``counts`` only) and
        is never below "poisoningguard" for the same ensemble.
    spread : int, default=1
        ``d``, the number of base models each hash bucket feeds (Finite Aggregation;
        ``DPACertifiedClassifier(spread=d)``): bucket ``b`` of ``n_models`` feeds
        models ``(b + s) % n_models`` for the shifts of
        :func:`~sklearn_certify.certificates._finite_aggregation.spread_shifts`. A
        poisoned example changes one bucket and so at most ``d`` models: "poisoningguard"
        and "dpa" apply Eq. (9) with T~ replaced by ``d T~``. 1 is DPA.

    Returns
    -------
    sizes : ndarray of int, shape (n_inputs,) or (n_inputs, n_radii)

    Examples
    --------
    >>> dpa_certified_size([[10, 3, 1]], [[1, 0, 0]], k=1, k_base=1,
    ...                    radius=[0, 1, 2]).tolist()
    [[1, 1, 0]]
    """
    Y = check_label_matrix(Y)
    n_classes, k, k_base = check_top_k(Y, k, k_base, "k_base")
    T, scalar = check_radius(radius, integer=True)
    check_choice(attack, "attack", ATTACKS)
    check_choice(method, "method", DPA_METHODS)
    counts = check_dpa_counts(counts, Y.shape, k_base, method, spread)

    sizes = dpa_sizes_at(counts, Y, k, k_base, T[None, :], attack, method, spread)
    return finalize_sizes(sizes, Y.sum(axis=1), k, n_classes, scalar)


def check_dpa_counts(counts, shape, k_base: int, method: str, spread) -> np.ndarray:
    """Vote counts (n_inputs, n_classes), or every model's votes (n_inputs, n_models,
    k_base), validated."""
    spread = check_int(spread, "spread", low=1)
    counts = np.asarray(counts)
    if counts.ndim == 3:
        n_inputs, n_models, width = counts.shape
        if n_inputs != shape[0] or width != k_base:
            raise ValueError(
                f"per-model votes must have shape (n_inputs, n_models, k_base) = "
                f"({shape[0]}, n_models, {k_base}), got {counts.shape}."
            )
        if not np.issubdtype(counts.dtype, np.integer):
            raise TypeError(f"per-model votes must be label indices, got {counts.dtype}.")
        if counts.size and (counts.min() < 0 or counts.max() >= shape[1]):
            raise ValueError(f"per-model votes must be labels in [0, {shape[1]}).")
        if k_base > 1 and np.any(np.diff(np.sort(counts, axis=2), axis=2) == 0):
            raise ValueError(f"each model must vote for k_base={k_base} distinct labels.")
        if spread > n_models:
            raise ValueError(f"spread={spread} exceeds the {n_models} models.")
        return counts
    if method == "finite-aggregation":
        raise ValueError(
            "method='finite-aggregation' needs every model's votes, counts of shape "
            "(n_inputs, n_models, k_base), not vote counts; certify the ensemble with "
            "DPACertifiedClassifier(method='finite-aggregation')."
        )
    counts = check_count_matrix(counts)
    if counts.shape != tuple(shape):
        raise ValueError(f"counts has shape {counts.shape} but Y has shape {tuple(shape)}.")
    return counts


def dpa_sizes_at(counts, Y, k, k_base, T, attack, method, spread=1):
    """Certified sizes before clipping, for validated arguments.

    ``counts`` are vote counts (n_inputs, n_classes), per-model votes (n_inputs,
    n_models, k_base) or their :class:`~._finite_aggregation.FAStatistics`. ``T`` has
    shape (1, n_radii) (the same radii for every input) or (n_inputs, n_radii) (radii
    per input, as the certified-radius search needs).
    """
    budget = partitions_touched(T, attack).astype(np.float64)  # T~ per radius
    if isinstance(counts, np.ndarray) and counts.ndim == 3:
        counts = fa_statistics(counts, Y, spread)
    if isinstance(counts, FAStatistics):
        return fa_sizes_at(
            counts,
            Y,
            k,
            k_base,
            budget,
            t_fixed=method == "dpa",
            per_model=method == "finite-aggregation",
        )
    return _eq9_sizes(
        counts.astype(np.float64), Y, k, k_base, spread * budget, t_fixed=method == "dpa"
    )


def _eq9_sizes(counts, Y, k, k_base, budget, *, t_fixed):
    n_inputs, n_classes = Y.shape
    ranked = RankedLabels(counts, counts, Y)  # absent labels: no votes
    d = ranked.n_true
    sizes = np.zeros((n_inputs, budget.shape[1]), dtype=np.int64)

    for r in range(1, min(k, int(d.max(initial=0))) + 1):
        left = np.full((n_inputs, budget.shape[1]), -np.inf)
        for t in range(1, 2 if t_fixed else n_classes - r + 2):
            exists = r - 1 + t <= d  # t <= M - r + 1
            if not exists.any():
                break
            window = ranked.true_window(r, t)  # n_{l_r} + ... + n_{l_{r+t-1}}
            term = (window[:, None] - min(k_base, t) * budget) / t
            left = np.where(exists[:, None], np.maximum(left, term), left)
        s = k - r + 1
        right = np.full((n_inputs, budget.shape[1]), np.inf)
        for t in range(1, 2 if t_fixed else s + 1):
            window = ranked.other_window(s, t)  # n_{s_{k-r+2-t}} + ... + n_{s_{k-r+1}}
            term = (window[:, None] + min(k_base, t) * budget) / t
            right = np.minimum(right, term)
        passes = (left > right) & (d >= r)[:, None]
        sizes[passes] = r
    return sizes


def _dpa_counts_layout(method: str) -> str:
    """Finite Aggregation reads (and a result keeps) every model's votes."""
    return "model-votes" if method == "finite-aggregation" else "label-counts"


def _dpa_empty_counts(method: str, params: dict, n_classes: int) -> np.ndarray:
    if _dpa_counts_layout(method) == "model-votes":  # (n_inputs, n_models, k_base)
        return np.zeros(
            (0, int(params.get("spread", 1)), int(params.get("k_base", 1))), dtype=np.int64
        )
    return np.zeros((0, n_classes), dtype=np.int64)


def _dpa_radius_search(Y, *, k, method, params, lower, upper, counts) -> RadiusSearch:
    """The certified-T search of Eq. (9) (or Finite Aggregation, whose per-input
    statistics of every model's votes are computed once for the whole search)."""
    counts = np.asarray(counts)
    k_base, attack, spread = params["k_base"], params["attack"], params.get("spread", 1)
    if counts.ndim == 3:
        counts = fa_statistics(counts, Y, spread)

    def sizes_at(rows, T):
        own = counts.take(rows) if isinstance(counts, FAStatistics) else counts[rows]
        return dpa_sizes_at(own, Y[rows], k, k_base, T[:, None], attack, method, spread)

    return RadiusSearch(sizes_at)


DPA = CertificateSpec(
    name="dpa",
    function=dpa_certified_size,
    methods=DPA_METHODS,
    sampled=False,
    radius_name="T",
    radius_label="T (poisoned training examples)",
    poisoning=True,
    integer_radius=True,
    radius_search=_dpa_radius_search,
    params=("k_base", "attack"),
    recertifiable=frozenset({"attack"}),
    optional_params=("spread",),
    counts_layout=_dpa_counts_layout,
    empty_counts=_dpa_empty_counts,
)
