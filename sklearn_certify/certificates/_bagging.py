"""Certified intersection size of a bagging ensemble under data poisoning.

PoisoningGuard, Theorem 1, Eq. (4). The ensemble trains base models on m examples
drawn with replacement from the n training examples; ``e`` of them survive the attack
in a poisoned set of ``n_p``:

    modification: e = n - T, n_p = n;   addition: e = n, n_p = n + T;
    deletion:     e = n - T, n_p = n - T.

Write ``a = (e/n)^m``, ``b = (e/n_p)^m`` and ``rho = (n/n_p)^m``. With the true labels'
rounded lower bounds ``p#`` sorted ``l_1 >= ... >= l_M`` and the other labels' rounded
upper bounds ``p*`` sorted ``s_1 >= s_2 >= ...``, size r is certified at T when

    max( max_{t=1..M-r+1} (1/t) (p#_{l_r} + ... + p#_{l_{r+t-1}} - k_b (1 - a)) rho,
         (p#_{l_r} - 1 + a) rho )
  > min( min_{t=1..k-r+1} (1/t) ((p*_{s_{k-r+2-t}} + ... + p*_{s_{k-r+1}}) rho + k_b (1 - b)),
         p*_{s_{k-r+1}} rho + 1 - b ).

"bagging" (Jia et al., AAAI 2021, extended to top-k) fixes t = 1, which leaves the
single-label terms; for k = k_b = 1 it is their condition
``p_A - p_B > 2 (1 - ((n - T)/n)^m)`` under modification.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from .._utils._validation import ATTACKS, check_bounds, check_choice, check_int, check_radius
from ._common import RankedLabels, check_top_k, finalize_sizes, strictly_greater
from ._radius import RadiusSearch
from ._spec import CertificateSpec

BAGGING_METHODS = ("poisoningguard", "bagging")

__all__ = ["BAGGING", "BAGGING_METHODS", "bagging_certified_size"]


def bagging_certified_size(
    lower: np.ndarray,
    upper: np.ndarray,
    Y: np.ndarray,
    *,
    k: int,
    k_base: int,
    n_train: int,
    max_samples: int,
    radius,
    attack: str = "modification",
    method: str = "poisoningguard",
) -> np.ndarray:
    """Certified intersection size of a bagging ensemble against T poisoned examples.

    Parameters
    ----------
    lower, upper : array-like of float, shape (n_inputs, n_classes)
        Bounds of the label probabilities ``p_l`` (probability that label l is among
        the top-k_base labels of a base model trained on a random subsample).
    Y : array-like of {0, 1}, shape (n_inputs, n_classes)
        The labels L(x) whose presence in the top-k is certified.
    k : int
        Number of labels the ensemble predicts.
    k_base : int
        Number of labels each base model predicts.
    n_train : int
        Size n of the clean training set.
    max_samples : int
        Size m of each subsample (drawn with replacement).
    radius : int or array-like of int
        T, the number of poisoned training examples.
    attack : {"modification", "addition", "deletion"}, default="modification"
    method : {"poisoningguard", "bagging"}, default="poisoningguard"
        "poisoningguard" is Eq. (4); "bagging" is Eq. (4) with t fixed to 1.

    Returns
    -------
    sizes : ndarray of int, shape (n_inputs,) or (n_inputs, n_radii)

    Examples
    --------
    >>> import numpy as np
    >>> lower = np.array([[0.8, 0.0]]); upper = np.array([[1.0, 0.1]])
    >>> bagging_certified_size(lower, upper, [[1, 0]], k=1, k_base=1, n_train=1000,
    ...                        max_samples=10, radius=[0, 20, 50]).tolist()
    [[1, 1, 0]]
    """
    lower, upper, Y = check_bounds(lower, upper, Y)
    n_classes, k, k_base = check_top_k(Y, k, k_base, "k_base")
    n_train = check_int(n_train, "n_train")
    max_samples = check_int(max_samples, "max_samples")
    T, scalar = check_radius(radius, integer=True)
    check_choice(attack, "attack", ATTACKS)
    check_choice(method, "method", BAGGING_METHODS)

    p_sharp, p_star = rounded_bounds(lower, upper, n_train, max_samples, k_base)
    sizes = bagging_sizes_at(
        p_sharp, p_star, Y, k, k_base, n_train, max_samples, T[None, :], attack, method
    )
    return finalize_sizes(sizes, Y.sum(axis=1), k, n_classes, scalar)


def rounded_bounds(lower, upper, n_train, max_samples, k_base):
    """The bounds rounded to the grid of Eq. (4): ``p#`` (down) and ``p*`` (up)."""
    log_grid = max_samples * np.log(n_train) - np.log(k_base)
    p_sharp = _round_to_grid(lower, n_train, max_samples, k_base, log_grid, down=True)
    p_star = _round_to_grid(upper, n_train, max_samples, k_base, log_grid, down=False)
    return p_sharp, p_star


def bagging_sizes_at(p_sharp, p_star, Y, k, k_base, n_train, max_samples, T, attack, method):
    """Certified sizes before clipping, for validated arguments and rounded bounds.

    ``T`` has shape (1, n_radii) (the same radii for every input) or
    (n_inputs, n_radii) (radii per input, as the certified-radius search needs).
    """
    terms = _overlap_terms(T, n_train, max_samples, attack)
    return _eq4_sizes(p_sharp, p_star, Y, k, k_base, *terms, t_fixed=method == "bagging")


def _round_to_grid(p, n, m, k_base, log_grid, *, down):
    """p# = (k_b/n^m) floor(p n^m / k_b) (down) or p* = (k_b/n^m) ceil(p n^m / k_b) (up).

    Done soundly: p# is never overestimated and p* never underestimated, which can only
    make the certificate smaller.

    * Coarse grid (n^m / k_b < 2^52, small n and m): literally, in exact rational
      arithmetic on each distinct bound (there are at most n_draws + 1 of each kind),
      and the result converted to the nearest float on the safe side. Float
      arithmetic is not enough here: fl(0.3 * 10^4) is exactly 3000 although the
      float 0.3 lies below 3/10, so a float floor would give 0.3 instead of 0.2999.
    * Fine grid (any realistic n and m: n^m overflows a float): the step k_b / n^m is
      below float resolution. The true p# lies in (p - step, p], so
      ``nextafter(p - step, -inf)`` with the step rounded up is a valid lower bound on
      it (symmetrically for p*); this gives up less than one grid step.
    """
    direction = -np.inf if down else np.inf
    if log_grid < 52 * np.log(2):
        denominator = n**m
        values, inverse = np.unique(p, return_inverse=True)
        rounded = np.array(
            [_exact_grid_point(v, denominator, k_base, down) for v in values.tolist()]
        )
        return rounded[inverse].reshape(p.shape)
    step = np.nextafter(np.exp(-log_grid) * (1 + 1e-9), np.inf)  # k_b / n^m, rounded up
    rounded = np.nextafter(p - step if down else p + step, direction)
    return np.maximum(rounded, 0.0) if down else rounded


def _exact_grid_point(value: float, denominator: int, k_base: int, down: bool) -> float:
    """The grid point k_b q / n^m below (above) ``value``, as a float on the safe side."""
    scaled = Fraction(value) * denominator / k_base
    q = math.floor(scaled) if down else math.ceil(scaled)
    exact = Fraction(q * k_base, denominator)
    nearest = float(exact)
    if down and Fraction(nearest) > exact:
        nearest = float(np.nextafter(nearest, -np.inf))
    elif not down and Fraction(nearest) < exact:
        nearest = float(np.nextafter(nearest, np.inf))
    return max(nearest, 0.0) if down else nearest


def _overlap_terms(T, n, m, attack):
    """1 - (e/n)^m, 1 - (e/n_p)^m and (n/n_p)^m per T, in log space.

    (n/n_p)^m exceeds any float for deletion with large m, so both sides of Eq. (4) are
    divided by ``max(1, rho)``: ``rho_scaled = rho / max(1, rho)`` multiplies the
    probability terms and ``inv_scale = 1 / max(1, rho)`` the constant terms.
    ``feasible`` is False where the attack leaves nothing to sample from (e = 0 in a
    deletion), which certifies nothing beyond the trivial floor.
    """
    T = T.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_keep = m * np.log1p(-np.minimum(T, n) / n)  # log((n - T)/n)^m, -inf at T >= n
        if attack == "modification":
            log_a, log_b, log_rho = log_keep, log_keep, np.zeros_like(T)
        elif attack == "addition":
            log_rho = -m * np.log1p(T / n)
            log_a, log_b = np.zeros_like(T), log_rho
        else:  # deletion: e = n_p = n - T
            log_a, log_b, log_rho = log_keep, np.zeros_like(T), -log_keep
    feasible = np.isfinite(log_rho) & (T < n if attack == "deletion" else True)
    log_rho = np.where(feasible, log_rho, 0.0)
    one_minus_a, one_minus_b = -np.expm1(log_a), -np.expm1(log_b)
    rho_scaled = np.exp(np.minimum(log_rho, 0.0))
    inv_scale = np.exp(-np.maximum(log_rho, 0.0))
    return one_minus_a, one_minus_b, rho_scaled, inv_scale, np.broadcast_to(feasible, T.shape)


def _eq4_sizes(
    p_sharp, p_star, Y, k, k_base, one_minus_a, one_minus_b, rho, inv_scale, feasible, *, t_fixed
):
    n_inputs, n_classes = Y.shape
    ranked = RankedLabels(p_sharp, p_star, Y)  # p# of the true labels, p* of the others
    d = ranked.n_true
    sizes = np.zeros((n_inputs, rho.shape[1]), dtype=np.int64)

    for r in range(1, min(k, int(d.max(initial=0))) + 1):
        # Left: lower bound on min_U max_{u in U} p'_u over U of M - r + 1 true labels.
        p_r = ranked.true_at(r)
        left = (p_r[:, None] - one_minus_a) * rho
        if not t_fixed:
            for t in range(1, n_classes - r + 2):
                exists = r - 1 + t <= d  # t <= M - r + 1
                window = ranked.true_window(r, t)  # p#_{l_r} + ... + p#_{l_{r+t-1}}
                term = (window[:, None] - k_base * one_minus_a) * rho / t
                left = np.where(exists[:, None], np.maximum(left, term), left)
                if not exists.any():
                    break
        # Right: upper bound on max_V min_{v in V} p'_v over V of k - r + 1 other labels.
        s = k - r + 1
        p_s = ranked.other[:, s - 1] if s <= n_classes else np.zeros(n_inputs)
        right = p_s[:, None] * rho + one_minus_b * inv_scale
        if not t_fixed:
            for t in range(1, s + 1):
                window = ranked.other_window(s, t)  # p*_{s_{k-r+2-t}} + ... + p*_{s_{k-r+1}}
                term = (window[:, None] * rho + k_base * one_minus_b * inv_scale) / t
                right = np.minimum(right, term)
        passes = strictly_greater(left, right) & (d >= r)[:, None] & feasible
        sizes[passes] = r
    return sizes


def _bagging_radius_search(Y, *, k, method, params, lower, upper, counts) -> RadiusSearch:
    """The certified-T search of Eq. (4); the bounds are rounded to its grid once."""
    k_base, n_train, max_samples = params["k_base"], params["n_train"], params["max_samples"]
    p_sharp, p_star = rounded_bounds(
        np.asarray(lower), np.asarray(upper), n_train, max_samples, k_base
    )

    def sizes_at(rows, T):
        return bagging_sizes_at(
            p_sharp[rows],
            p_star[rows],
            Y[rows],
            k,
            k_base,
            n_train,
            max_samples,
            T[:, None],
            params["attack"],
            method,
        )

    return RadiusSearch(sizes_at)


BAGGING = CertificateSpec(
    name="bagging",
    function=bagging_certified_size,
    methods=BAGGING_METHODS,
    sampled=True,
    radius_name="T",
    radius_label="T (poisoned training examples)",
    poisoning=True,
    integer_radius=True,
    radius_search=_bagging_radius_search,
    params=("k_base", "n_train", "max_samples", "attack"),
    recertifiable=frozenset({"attack"}),
)
