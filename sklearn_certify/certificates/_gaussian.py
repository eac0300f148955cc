"""Certified intersection size under l2 evasion for Gaussian smoothing.

MultiGuard (Jia, Wang, Cao, Gong; NeurIPS 2022), Theorem 1, Eq. (8). For a candidate
size e' (1 <= e' <= min(|L|, k)), with the true labels' lower bounds sorted
``a_1 >= ... >= a_d`` and the other labels' upper bounds sorted ``b_1 >= b_2 >= ...``,
``eta = d - e' + 1`` and ``s = k - e' + 1``, e' is certified at radius R when

    max{ Phi(Phi^-1(a_e') - R/sigma),  max_{u=1..eta} (k'/u) Phi(Phi^-1(A_u / k') - R/sigma) }
  > min{ Phi(Phi^-1(b_s) + R/sigma),  min_{v=1..s}   (k'/v) Phi(Phi^-1(B_v / k') + R/sigma) }

with ``A_u = a_e' + ... + a_{e'+u-1}`` and (Section 3.3)
``B_v = min(b_{s-v+1} + ... + b_s,  k' - sum_{i in L} lower_i)``. The certificate is
the largest e' that passes.

Jia, Cao, Wang, Gong (ICLR 2020), Theorem 1, counts each true label l on its own:
l stays in the top-k at radius R when, for some t in 1..k,

    Phi(Phi^-1(lower_l) - R/sigma) > Phi(Phi^-1(min(S_t, 1 - lower_l)) + R/sigma) / t

where S_t sums the t smallest of the k largest upper bounds of the labels other than l,
each first clipped to 1 - lower_l.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from .._utils._validation import check_bounds, check_choice, check_positive, check_radius
from ._common import RankedLabels, check_top_k, finalize_sizes, strictly_greater
from ._radius import RadiusSearch
from ._spec import CertificateSpec

GAUSSIAN_METHODS = ("multiguard", "first-term", "jia")

__all__ = [
    "GAUSSIAN",
    "GAUSSIAN_METHODS",
    "check_jia",
    "gaussian_certified_radius",
    "gaussian_certified_size",
]


def check_jia(method: str, k_prime) -> None:
    """Jia et al.'s certificate is defined for base predictions of one label only."""
    if method == "jia" and k_prime != 1:
        raise ValueError(f"method='jia' needs k_prime == 1, got k_prime={k_prime}.")


def gaussian_certified_size(
    lower: np.ndarray,
    upper: np.ndarray,
    Y: np.ndarray,
    *,
    k: int,
    k_prime: int,
    sigma: float,
    radius,
    method: str = "multiguard",
) -> np.ndarray:
    """Certified intersection size of a Gaussian-smoothed multi-label classifier.

    Parameters
    ----------
    lower, upper : array-like of float, shape (n_inputs, n_classes)
        Lower and upper bounds of the label probabilities ``p_i`` (the probability
        that label i is in the base classifier's top-k' under noise), e.g. from
        :func:`sklearn_certify.bounds.clopper_pearson_bounds`. Only ``lower`` of the
        true labels and ``upper`` of the other labels are used by "multiguard" and
        "first-term"; "jia" also uses the upper bounds of the other true labels, so for
        "jia" all of them must hold jointly (estimators and
        :class:`~sklearn_certify.results.CertificationResult` compute its bounds at
        ``alpha / 2``).
    Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        The labels L(x) whose presence in the top-k is certified.
    k : int
        Number of labels the smoothed classifier predicts.
    k_prime : int
        Number of labels in each base prediction.
    sigma : float
        Standard deviation of the Gaussian noise.
    radius : float or array-like of float
        l2 norm(s) of the perturbation.
    method : {"multiguard", "first-term", "jia"}, default="multiguard"
        "multiguard" is Eq. (8) in full; "first-term" keeps only the first term of
        each side (the paper's ablation); "jia" is Jia et al. (2020), label by label,
        and needs ``k_prime == 1``.

    Returns
    -------
    sizes : ndarray of int, shape (n_inputs,) or (n_inputs, n_radii)
        The certified intersection size e for each input (and radius).

    Examples
    --------
    >>> import numpy as np
    >>> lower = np.array([[0.9, 0.0, 0.0]]); upper = np.array([[1.0, 0.05, 0.05]])
    >>> gaussian_certified_size(lower, upper, [[1, 0, 0]], k=1, k_prime=1,
    ...                         sigma=0.5, radius=[0.0, 0.5, 1.0]).tolist()
    [[1, 1, 0]]
    """
    lower, upper, Y = check_bounds(lower, upper, Y)
    n_classes, k, k_prime = check_top_k(Y, k, k_prime, "k_prime")
    sigma = check_positive(sigma, "sigma")
    radii, scalar = check_radius(radius)
    check_choice(method, "method", GAUSSIAN_METHODS)
    check_jia(method, k_prime)

    sizes = gaussian_sizes_at(lower, upper, Y, k, k_prime, (radii / sigma)[None, :], method)
    return finalize_sizes(sizes, Y.sum(axis=1), k, n_classes, scalar)


def gaussian_sizes_at(lower, upper, Y, k, k_prime, shift, method):
    """Certified sizes before clipping, for validated arguments.

    ``shift`` is R / sigma of shape (1, n_radii) (the same radii for every input) or
    (n_inputs, n_radii) (radii per input, as the certified-radius search needs).
    """
    if method == "jia":
        return _jia_sizes(lower, upper, Y, k, shift)
    return _multiguard_sizes(lower, upper, Y, k, k_prime, shift, method == "multiguard")


def _phi_shifted(z: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Phi(z + shift) broadcast to (n_inputs, n_terms, n_radii); z of shape (n, n_terms),
    shift of shape (1 or n, n_radii)."""
    return ndtr(z[:, :, None] + shift[:, None, :])


def _multiguard_sizes(lower, upper, Y, k, k_prime, shift, second_terms):
    n_inputs, n_classes = Y.shape
    # a: the true labels' lower bounds, b: the other labels' upper bounds, each sorted.
    # A label that does not exist has probability 0; where s exceeds the number of
    # other labels the trivial floor in finalize_sizes already certifies e'.
    ranked = RankedLabels(lower, upper, Y)
    d = ranked.n_true
    slack = np.clip(k_prime - (lower * Y).sum(axis=1), 0.0, k_prime)  # k' - sum_L lower
    sizes = np.zeros((n_inputs, shift.shape[1]), dtype=np.int64)
    max_d = int(d.max(initial=0))

    for e in range(1, min(k, max_d) + 1):
        valid = d >= e  # (n,)
        # Left-hand side: lower bound on the e'-th largest adversarial probability.
        z_left = [ndtri(ranked.true_at(e))]
        w_left = [1.0]
        if second_terms:
            for u in range(1, max_d - e + 2):  # eta = d - e' + 1 varies per input
                p_a = ranked.true_window(e, u)  # A_u
                z = ndtri(np.clip(p_a / k_prime, 0.0, 1.0))
                z = np.where(e - 1 + u <= d, z, -np.inf)  # u beyond eta: no term
                z_left.append(z)
                w_left.append(k_prime / u)
        left = np.max(
            np.asarray(w_left)[None, :, None] * _phi_shifted(np.stack(z_left, axis=1), -shift),
            axis=1,
        )
        # Right-hand side: upper bound on the s-th largest adversarial probability of
        # the other labels.
        s = k - e + 1
        z_right = [ndtri(ranked.other[:, s - 1]) if s <= n_classes else np.full(n_inputs, -np.inf)]
        w_right = [1.0]
        if second_terms:
            for v in range(1, s + 1):
                p_b = np.minimum(ranked.other_window(s, v), slack)  # B_v, Section 3.3
                # Clipped into [0, k']: a sum above k' is still bounded by k', so the
                # term is (k'/v) * Phi(+inf) = k'/v, not dropped.
                z_right.append(ndtri(np.clip(p_b / k_prime, 0.0, 1.0)))
                w_right.append(k_prime / v)
        right = np.min(
            np.asarray(w_right)[None, :, None] * _phi_shifted(np.stack(z_right, axis=1), shift),
            axis=1,
        )
        passes = strictly_greater(left, right) & valid[:, None]
        sizes[passes] = e
    return sizes


def _jia_sizes(lower, upper, Y, k, shift):
    n_inputs, n_classes = Y.shape
    rows = np.arange(n_inputs)[:, None]
    # The k + 1 largest upper bounds with their labels: the k largest among the labels
    # other than l are these with l removed (if present), truncated to k.
    n_top = min(k + 1, n_classes)
    top_idx = np.argsort(-upper, axis=1, kind="stable")[:, :n_top]
    top_val = upper[rows, top_idx]
    if n_top < k + 1:  # fewer labels than k + 1: pad with absent labels (probability 0)
        pad = k + 1 - n_top
        top_idx = np.concatenate([top_idx, np.full((n_inputs, pad), -1)], axis=1)
        top_val = np.concatenate([top_val, np.zeros((n_inputs, pad))], axis=1)

    true_idx = np.argsort(~Y, axis=1, kind="stable")  # true labels first
    d = Y.sum(axis=1)
    certified = np.zeros((n_inputs, shift.shape[1]), dtype=np.int64)
    column = np.arange(k)[None, :]
    for j in range(int(d.max(initial=0))):
        label = true_idx[:, j]
        p_l = lower[rows[:, 0], label]
        # Position of l among the top k + 1 (k + 1 when absent), then drop it.
        hit = top_idx == label[:, None]
        pos = np.where(hit.any(axis=1), hit.argmax(axis=1), k)[:, None]
        others = np.where(column < pos, top_val[:, :k], top_val[:, 1 : k + 1])
        others = np.minimum(others, (1.0 - p_l)[:, None])  # sorted descending
        # S_t: the t smallest of those k, i.e. the last t columns.
        tail_sums = np.cumsum(others[:, ::-1], axis=1)  # column t-1 holds S_t
        s_t = np.minimum(tail_sums, (1.0 - p_l)[:, None])
        right = np.min(_phi_shifted(ndtri(s_t), shift) / np.arange(1, k + 1)[None, :, None], axis=1)
        left = ndtr(ndtri(p_l)[:, None] - shift)
        certified += (strictly_greater(left, right) & (d > j)[:, None]).astype(np.int64)
    return certified


def _gaussian_bound_alpha(alpha: float, method: str) -> float:
    """The alpha given to the Clopper-Pearson bounds (each at level alpha / n_classes).

    MultiGuard uses one bound per label (a lower bound for each true label, an upper
    bound for each other label): c bounds, so alpha / c each holds them all jointly
    with probability 1 - alpha. Jia et al.'s label-by-label certificate also uses the
    upper bounds of the *other true* labels: up to 2c bounds, hence alpha / 2.
    """
    return alpha / 2 if method == "jia" else alpha


def _gaussian_radius_search(Y, *, k, method, params, lower, upper, counts) -> RadiusSearch:
    """The certified-radius search of Eq. (8) (and Jia et al.), run on ``R / sigma``."""
    lower, upper = np.asarray(lower), np.asarray(upper)
    k_prime = params["k_prime"]

    def sizes_at(rows, shift):
        return gaussian_sizes_at(
            lower[rows], upper[rows], Y[rows], k, k_prime, shift[:, None], method
        )

    return RadiusSearch(sizes_at, scale=params["sigma"])


GAUSSIAN = CertificateSpec(
    name="gaussian",
    function=gaussian_certified_size,
    methods=GAUSSIAN_METHODS,
    sampled=True,
    radius_name="radius",
    radius_label="l2 radius R",
    poisoning=False,
    integer_radius=False,
    radius_search=_gaussian_radius_search,
    params=("k_prime", "sigma"),
    bound_alpha=_gaussian_bound_alpha,
    check=lambda method, params: check_jia(method, params.get("k_prime", 1)),
)


def gaussian_certified_radius(lower, upper, Y, *, k, k_prime, sigma, method, size=1):
    """Certified l2 radius per input of Gaussian smoothing (validated arguments).

    Returns
    -------
    ndarray of float, shape (n_inputs,)
        The supremum of the radii at which at least ``size`` true labels are
        certified, from below: the returned radius R is certified, and the supremum
        lies in ``[R, R (1 + 1e-13)]``.
    """
    return GAUSSIAN.certified_radius(
        Y,
        k=k,
        method=method,
        params={"k_prime": k_prime, "sigma": sigma},
        lower=lower,
        upper=upper,
        size=size,
    )
