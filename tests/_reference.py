"""Literal, per-input transcriptions of the theorems, for testing the vectorised code.

Written from the papers' statements one input and one radius at a time, with no
shared code with the package beyond nothing: slow and obvious by design.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def _greater(left, right):
    """Strict '>' with the package's documented 1e-12 relative margin against float noise
    on real ties (the float-evaluated theorems need it; exact comparisons do not)."""
    return left > right + 1e-12 * max(1.0, abs(right))


def _trivial(k, c, d):
    return max(0, k - (c - d)), min(k, d)


def _largest_size(k, c, d, n_other, separated):
    """The theorems' outer loop: the largest e <= min(d, k) for which ``separated(e, s)``
    holds, s = k - e + 1 (always when fewer than s other labels can push e true labels
    out), clipped to the trivial bounds."""
    best = 0
    for e in range(1, min(d, k) + 1):
        s = k - e + 1
        if s > n_other or separated(e, s):
            best = e
    lo, hi = _trivial(k, c, d)
    return min(max(best, lo), hi)


def multiguard(lower, upper, y, k, kp, sigma, R, second_terms=True):
    """MultiGuard Theorem 1, Eq. (8), with p_B capped as in Section 3.3."""
    c = len(y)
    true = [i for i in range(c) if y[i]]
    d = len(true)
    if d == 0:
        return 0
    a = sorted((lower[i] for i in true), reverse=True)
    b = sorted((upper[j] for j in range(c) if not y[j]), reverse=True)
    slack = kp - sum(lower[i] for i in true)
    shift = R / sigma

    def separated(e, s):
        left = norm.cdf(norm.ppf(a[e - 1]) - shift)
        if second_terms:
            for u in range(1, d - e + 2):
                p_a = min(max(sum(a[e - 1 : e - 1 + u]), 0.0), kp)
                left = max(left, kp / u * norm.cdf(norm.ppf(p_a / kp) - shift))
        right = norm.cdf(norm.ppf(b[s - 1]) + shift)
        if second_terms:
            for v in range(1, s + 1):
                p_b = min(sum(b[s - v : s]), slack)
                p_b = min(max(p_b, 0.0), kp)
                right = min(right, kp / v * norm.cdf(norm.ppf(p_b / kp) + shift))
        return _greater(left, right)

    return _largest_size(k, c, d, len(b), separated)


def jia(lower, upper, y, k, sigma, R):
    """Jia et al. (2020), Theorem 1, label by label (k' = 1)."""
    c = len(y)
    d = sum(1 for v in y if v)
    if d == 0:
        return 0
    shift = R / sigma
    count = 0
    for l in range(c):
        if not y[l]:
            continue
        cap = 1.0 - lower[l]
        others = sorted((upper[j] for j in range(c) if j != l), reverse=True)[:k]
        others = [min(o, cap) for o in others] + [0.0] * (k - len(others))
        left = norm.cdf(norm.ppf(lower[l]) - shift)
        certified = False
        for t in range(1, k + 1):
            s_t = min(sum(others[k - t : k]), cap)
            if _greater(left, norm.cdf(norm.ppf(s_t) + shift) / t):
                certified = True
        count += certified
    lo, hi = _trivial(k, c, d)
    return min(max(count, lo), hi)


def dpa(counts, y, k, kb, T, attack="modification", t_fixed=False):
    """PoisoningGuard Theorem 2, Eq. (9), with exact fractions."""
    from fractions import Fraction

    c = len(y)
    true = sorted((counts[i] for i in range(c) if y[i]), reverse=True)
    other = sorted((counts[j] for j in range(c) if not y[j]), reverse=True)
    d = len(true)
    if d == 0:
        return 0
    Tt = 2 * int(T) if attack == "modification" else int(T)
    true, other = [int(v) for v in true], [int(v) for v in other]

    def separated(r, s):
        tmax_left = 1 if t_fixed else d - r + 1
        left = max(
            Fraction(sum(true[r - 1 : r - 1 + t]) - min(kb * Tt, t * Tt), t)
            for t in range(1, tmax_left + 1)
        )
        tmax_right = 1 if t_fixed else s
        right = min(
            Fraction(sum(other[s - t : s]) + min(kb * Tt, t * Tt), t)
            for t in range(1, tmax_right + 1)
        )
        return left > right

    return _largest_size(k, c, d, len(other), separated)


def bagging(lower, upper, y, k, kb, n, m, T, attack="modification", t_fixed=False):
    """PoisoningGuard Theorem 1, Eq. (4), in exact-enough floats (small n, m only).

    The rounding to multiples of k_b / n^m is done literally with integers.
    """
    from fractions import Fraction

    c = len(y)
    d = sum(1 for v in y if v)
    if d == 0:
        return 0
    n, m, kb, T = int(n), int(m), int(kb), int(T)
    grid = Fraction(n**m, kb)
    p_sharp = [math.floor(Fraction(float(lower[i])) * grid) / grid for i in range(c)]
    p_star = [math.ceil(Fraction(float(upper[i])) * grid) / grid for i in range(c)]
    if attack == "modification":
        e, n_p = n - T, n
    elif attack == "addition":
        e, n_p = n, n + T
    else:
        e, n_p = n - T, n - T
    if e <= 0 or n_p <= 0:
        return _trivial(k, c, d)[0]
    a = Fraction(e, n) ** m
    b = Fraction(e, n_p) ** m
    rho = Fraction(n, n_p) ** m
    true = sorted((p_sharp[i] for i in range(c) if y[i]), reverse=True)
    other = sorted((p_star[j] for j in range(c) if not y[j]), reverse=True)

    def separated(r, s):
        left = (true[r - 1] - 1 + a) * rho
        if not t_fixed:
            for t in range(1, d - r + 2):
                left = max(left, (sum(true[r - 1 : r - 1 + t]) - kb + kb * a) * rho / t)
        right = other[s - 1] * rho + 1 - b
        if not t_fixed:
            for t in range(1, s + 1):
                right = min(right, (sum(other[s - t : s]) * rho + kb * (1 - b)) / t)
        return left > right

    return _largest_size(k, c, d, len(other), separated)
