"""The certificate math: closed forms, literal transcriptions, brute force, properties."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, norm

from sklearn_certify.bounds import clopper_pearson_bounds
from sklearn_certify.certificates import (
    bagging_certified_size,
    dpa_certified_size,
    gaussian_certified_size,
)

from . import _reference as ref

# ---------------------------------------------------------------- random cases


def random_bounds(rng, n, c, kp=1, n_draws=200, alpha=0.01):
    """Clopper-Pearson bounds of counts drawn from a random top-k' base model."""
    Y = np.zeros((n, c), dtype=int)
    counts = np.zeros((n, c), dtype=int)
    for i in range(n):
        Y[i, rng.choice(c, size=rng.integers(0, c + 1), replace=False)] = 1
        w = rng.dirichlet(np.full(c, 0.3)) + 1e-9
        draws = np.argsort(-(np.log(w) + rng.gumbel(size=(n_draws, c))), axis=1)[:, :kp]
        counts[i] = np.bincount(draws.ravel(), minlength=c)
    lower, upper = clopper_pearson_bounds(counts, n_draws, alpha)
    return counts, lower, upper, Y


@st.composite
def gaussian_cases(draw, max_classes=7):
    c = draw(st.integers(1, max_classes))
    kp = draw(st.integers(1, c))
    k = draw(st.integers(1, c))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    _, lower, upper, Y = random_bounds(rng, 4, c, kp=kp)
    sigma = draw(st.sampled_from([0.12, 0.25, 0.5, 1.0]))
    return lower, upper, Y, k, kp, sigma


RADII = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0])

# ---------------------------------------------------------------- bounds


def test_clopper_pearson_matches_beta_quantiles():
    counts = np.array([[0, 1, 500, 999, 1000]])
    lower, upper = clopper_pearson_bounds(counts, 1000, 0.005)
    level = 0.005 / 5
    assert lower[0, 0] == 0.0 and upper[0, 4] == 1.0
    # The quantiles, each moved towards its trivial bound (0 or 1) by at most 1e-9 of
    # its distance to it (the safety margin against rounding in the quantile).
    quantile_lower = [beta.ppf(level, x, 1000 - x + 1) for x in (1, 500, 999, 1000)]
    quantile_upper = [beta.ppf(1 - level, x + 1, 1000 - x) for x in (0, 1, 500, 999)]
    np.testing.assert_allclose(lower[0, 1:], quantile_lower, rtol=2e-9)
    np.testing.assert_allclose(1 - upper[0, :4], 1 - np.array(quantile_upper), rtol=2e-9)
    assert np.all(lower[0, 1:] <= quantile_lower) and np.all(upper[0, :4] >= quantile_upper)
    # Closed forms at the ends: lower(n) = level^(1/n), upper(0) = 1 - level^(1/n).
    assert lower[0, 4] == pytest.approx(level ** (1 / 1000), rel=2e-9)
    assert 1 - upper[0, 0] == pytest.approx(level ** (1 / 1000), rel=2e-9)
    assert np.all(lower <= counts / 1000) and np.all(upper >= counts / 1000)


def test_clopper_pearson_per_row_draws_and_errors():
    lower, upper = clopper_pearson_bounds([[3, 7], [10, 0]], np.array([10, 20]), 0.1)
    l2, u2 = clopper_pearson_bounds([[10, 0]], 20, 0.1)
    np.testing.assert_array_equal(lower[1], l2[0])
    np.testing.assert_array_equal(upper[1], u2[0])
    with pytest.raises(ValueError, match="alpha"):
        clopper_pearson_bounds([[1, 2]], 10, 1.5)
    with pytest.raises(ValueError, match="between 0 and n_draws"):
        clopper_pearson_bounds([[11, 2]], 10, 0.1)
    with pytest.raises(ValueError, match="2-D"):
        clopper_pearson_bounds([1, 2], 10, 0.1)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("p_top, p_other", [(0.9, 0.05), (0.7, 0.3), (0.99, 0.02), (0.6, 0.5)])
def test_cohen_radius_k1(p_top, p_other):
    """k = k' = 1, one true label: certified exactly below Cohen et al.'s radius."""
    sigma = 0.5
    lower = np.array([[p_top, 0.0, 0.0]])
    upper = np.array([[1.0, p_other, p_other / 2]])
    # "first-term" has no cap at 1 - lower (that comes with Eq. 8's second term).
    for method, cap in (("multiguard", 1 - p_top), ("jia", 1 - p_top), ("first-term", 1.0)):
        cohen = sigma / 2 * (norm.ppf(p_top) - norm.ppf(min(p_other, cap)))
        radii = (
            np.array([0.0, cohen * 0.999, cohen * 1.001, cohen + 1.0])
            if cohen > 0
            else np.array([0.0, 0.1])
        )
        sizes = gaussian_certified_size(
            lower, upper, [[1, 0, 0]], k=1, k_prime=1, sigma=sigma, radius=radii, method=method
        )
        np.testing.assert_array_equal(sizes[0], (radii < cohen).astype(int), err_msg=method)


def test_dpa_vote_gap_closed_form():
    """k = k_b = 1: certified at T exactly when n_y - n_c > 2 T~."""
    rng = np.random.default_rng(0)
    counts = rng.multinomial(50, [0.5, 0.2, 0.2, 0.1], size=200)
    y = rng.integers(0, 4, size=200)
    Y = np.eye(4, dtype=int)[y]
    T = np.arange(0, 15)
    other = np.where(Y.astype(bool), -1, counts).max(axis=1)
    gap = counts[np.arange(200), y] - other
    for attack, factor in (("modification", 2), ("addition", 1), ("deletion", 1)):
        for method in ("poisoningguard", "dpa"):
            sizes = dpa_certified_size(
                counts, Y, k=1, k_base=1, radius=T, attack=attack, method=method
            )
            np.testing.assert_array_equal(sizes, (gap[:, None] > 2 * factor * T).astype(int))


def test_bagging_closed_form_k1():
    """k = k_b = 1, modification: p_A - p_B > 2 (1 - ((n - T)/n)^m) (Jia et al. 2021)."""
    n, m = 5000, 50
    lower = np.array([[0.8, 0.0, 0.0], [0.55, 0.0, 0.0]])
    upper = np.array([[1.0, 0.15, 0.05], [1.0, 0.44, 0.01]])
    T = np.arange(0, 120)
    sizes = bagging_certified_size(
        lower, upper, [[1, 0, 0], [1, 0, 0]], k=1, k_base=1, n_train=n, max_samples=m, radius=T
    )
    for i, (pa, pb) in enumerate(((0.8, 0.15), (0.55, 0.44))):
        expected = (pa - pb > 2 * (1 - ((n - T) / n) ** m)).astype(int)
        np.testing.assert_array_equal(sizes[i], expected)
    assert sizes[0].sum() > 10  # a real range of T is certified


def test_bagging_huge_n_power_m_no_overflow():
    """n^m overflows floats (n = 50000, m = 1000); deletion's (n/n_p)^m too."""
    lower = np.array([[0.9, 0.6, 0.0, 0.0]])
    upper = np.array([[1.0, 1.0, 0.05, 0.02]])
    for attack in ("modification", "addition", "deletion"):
        sizes = bagging_certified_size(
            lower,
            upper,
            [[1, 1, 0, 0]],
            k=2,
            k_base=1,
            n_train=50_000,
            max_samples=1000,
            radius=[0, 5, 20, 100, 10_000, 60_000],
            attack=attack,
        )
        assert sizes[0, 0] == 2 and sizes[0, -1] == 0
        assert np.all(np.diff(sizes[0]) <= 0)


# ---------------------------------------------------------------- literal transcriptions


@settings(max_examples=60, deadline=None)
@given(gaussian_cases())
def test_gaussian_matches_literal_transcription(case):
    lower, upper, Y, k, kp, sigma = case
    radii = RADII[::3]
    for method, second in (("multiguard", True), ("first-term", False)):
        sizes = gaussian_certified_size(
            lower, upper, Y, k=k, k_prime=kp, sigma=sigma, radius=radii, method=method
        )
        expected = [
            [ref.multiguard(lower[i], upper[i], Y[i], k, kp, sigma, R, second) for R in radii]
            for i in range(len(Y))
        ]
        np.testing.assert_array_equal(sizes, expected, err_msg=method)
    if kp == 1:
        sizes = gaussian_certified_size(
            lower, upper, Y, k=k, k_prime=1, sigma=sigma, radius=radii, method="jia"
        )
        expected = [
            [ref.jia(lower[i], upper[i], Y[i], k, sigma, R) for R in radii] for i in range(len(Y))
        ]
        np.testing.assert_array_equal(sizes, expected)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["modification", "addition", "deletion"]),
)
def test_dpa_matches_literal_transcription(c, seed, attack):
    rng = np.random.default_rng(seed)
    k, kb = int(rng.integers(1, c + 1)), int(rng.integers(1, c + 1))
    N = int(rng.integers(1, 40))
    votes = np.array([[rng.choice(c, size=kb, replace=False) for _ in range(N)] for _ in range(3)])
    counts = np.array([np.bincount(v.ravel(), minlength=c) for v in votes])
    Y = (rng.random((3, c)) < 0.5).astype(int)
    T = np.arange(0, 8)
    for method in ("poisoningguard", "dpa"):
        sizes = dpa_certified_size(
            counts, Y, k=k, k_base=kb, radius=T, attack=attack, method=method
        )
        expected = [
            [ref.dpa(counts[i], Y[i], k, kb, t, attack, method == "dpa") for t in T]
            for i in range(3)
        ]
        np.testing.assert_array_equal(sizes, expected)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["modification", "addition", "deletion"]),
    st.sampled_from([(12, 2), (30, 3), (200, 5)]),
)
def test_bagging_matches_literal_transcription(c, seed, attack, nm):
    """Small n and m, so that the rounding to multiples of k_b / n^m is visible."""
    n, m = nm
    rng = np.random.default_rng(seed)
    kb = int(rng.integers(1, c + 1))
    k = int(rng.integers(1, c + 1))
    _, lower, upper, Y = random_bounds(rng, 3, c, kp=kb, n_draws=100)
    T = np.array([0, 1, 2, 3, 5, 8])
    for method in ("poisoningguard", "bagging"):
        sizes = bagging_certified_size(
            lower,
            upper,
            Y,
            k=k,
            k_base=kb,
            n_train=n,
            max_samples=m,
            radius=T,
            attack=attack,
            method=method,
        )
        expected = [
            [
                ref.bagging(lower[i], upper[i], Y[i], k, kb, n, m, t, attack, method == "bagging")
                for t in T
            ]
            for i in range(3)
        ]
        np.testing.assert_array_equal(sizes, expected)


# ---------------------------------------------------------------- brute force


def worst_case_dpa(votes, y, k, kb, n_corrupt):
    """Smallest |top-k ∩ L| over every rewrite of n_corrupt partitions' vote sets.

    Ties in the top-k are broken against the true labels (the attacker's best case).
    """
    c = len(y)
    N = len(votes)
    vote_sets = list(itertools.combinations(range(c), kb))
    worst = min(k, int(np.sum(y)))
    for victims in itertools.combinations(range(N), min(n_corrupt, N)):
        for new in itertools.product(vote_sets, repeat=len(victims)):
            counts = np.zeros(c, dtype=int)
            for j in range(N):
                for label in new[victims.index(j)] if j in victims else votes[j]:
                    counts[label] += 1
            # Sort by count, then non-true labels first among ties.
            order = sorted(range(c), key=lambda lab: (-counts[lab], y[lab]))
            worst = min(worst, int(sum(y[lab] for lab in order[:k])))
    return worst


@pytest.mark.parametrize("seed", range(12))
def test_dpa_never_exceeds_brute_force_worst_case(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 5))
    kb = int(rng.integers(1, min(c, 2) + 1))
    k = int(rng.integers(1, c + 1))
    N = int(rng.integers(2, 6))
    votes = [tuple(rng.choice(c, size=kb, replace=False)) for _ in range(N)]
    y = (rng.random(c) < 0.5).astype(int)
    if y.sum() == 0:
        y[0] = 1
    counts = np.bincount(np.concatenate(votes), minlength=c)[None, :]
    for T in (0, 1):
        for attack in ("modification", "addition"):
            n_corrupt = 2 * T if attack == "modification" else T
            certified = dpa_certified_size(
                counts, y[None, :], k=k, k_base=kb, radius=T, attack=attack
            )[0]
            assert certified <= worst_case_dpa(votes, y, k, kb, n_corrupt)


# ---------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(gaussian_cases())
def test_gaussian_properties(case):
    lower, upper, Y, k, kp, sigma = case
    c = Y.shape[1]
    d = Y.sum(axis=1)
    sizes = {
        m: gaussian_certified_size(
            lower, upper, Y, k=k, k_prime=kp, sigma=sigma, radius=RADII, method=m
        )
        for m in (["multiguard", "first-term"] + (["jia"] if kp == 1 else []))
    }
    floor = np.maximum(0, k - (c - d))[:, None]
    cap = np.minimum(k, d)[:, None]
    for s in sizes.values():
        assert np.all(np.diff(s, axis=1) <= 0)  # non-increasing in radius
        assert np.all(s >= floor) and np.all(s <= cap)
        assert np.all(s[d == 0] == 0)
    assert np.all(sizes["multiguard"] >= sizes["first-term"])
    if "jia" in sizes:
        assert np.all(sizes["multiguard"] >= sizes["jia"])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_poisoning_properties(c, seed):
    rng = np.random.default_rng(seed)
    kb, k = int(rng.integers(1, c + 1)), int(rng.integers(1, c + 1))
    counts, lower, upper, Y = random_bounds(rng, 5, c, kp=kb, n_draws=300)
    d = Y.sum(axis=1)
    floor = np.maximum(0, k - (c - d))[:, None]
    cap = np.minimum(k, d)[:, None]
    T = np.arange(0, 40, 3)
    for attack in ("modification", "addition", "deletion"):
        pg = bagging_certified_size(
            lower, upper, Y, k=k, k_base=kb, n_train=1000, max_samples=20, radius=T, attack=attack
        )
        base = bagging_certified_size(
            lower,
            upper,
            Y,
            k=k,
            k_base=kb,
            n_train=1000,
            max_samples=20,
            radius=T,
            attack=attack,
            method="bagging",
        )
        dpg = dpa_certified_size(counts, Y, k=k, k_base=kb, radius=T, attack=attack)
        dbase = dpa_certified_size(counts, Y, k=k, k_base=kb, radius=T, attack=attack, method="dpa")
        for s in (pg, base, dpg, dbase):
            assert np.all(np.diff(s, axis=1) <= 0)
            assert np.all(s >= floor) and np.all(s <= cap)
        assert np.all(pg >= base) and np.all(dpg >= dbase)


def test_scalar_radius_gives_1d_and_empty_inputs():
    lower = np.array([[0.9, 0.01]])
    upper = np.array([[1.0, 0.05]])
    assert gaussian_certified_size(
        lower, upper, [[1, 0]], k=1, k_prime=1, sigma=0.5, radius=0.1
    ).shape == (1,)
    assert gaussian_certified_size(
        np.zeros((0, 3)),
        np.zeros((0, 3)),
        np.zeros((0, 3)),
        k=1,
        k_prime=1,
        sigma=0.5,
        radius=[0, 1],
    ).shape == (0, 2)
    assert dpa_certified_size(
        np.zeros((0, 3), int), np.zeros((0, 3)), k=2, k_base=1, radius=3
    ).shape == (0,)


def test_multiguard_beats_jia_on_multi_label_example():
    """Two true labels sharing the mass: jointly certified (Eq. 8's second terms)."""
    lower = np.array([[0.45, 0.45, 0.0, 0.0, 0.0]])
    upper = np.array([[1.0, 1.0, 0.04, 0.03, 0.02]])
    kwargs = dict(k=1, k_prime=1, sigma=0.5, radius=[0.0, 0.5, 1.0])
    assert gaussian_certified_size(lower, upper, [[1, 1, 0, 0, 0]], **kwargs).tolist() == [
        [1, 1, 0]
    ]
    assert gaussian_certified_size(
        lower, upper, [[1, 1, 0, 0, 0]], method="jia", **kwargs
    ).tolist() == [[0, 0, 0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(k=0), "k must be at least 1"),
        (dict(k=4), "at most 3"),
        (dict(k_prime=2, method="jia"), "k_prime == 1"),
        (dict(sigma=0.0), "sigma"),
        (dict(radius=-1.0), "non-negative"),
        (dict(radius=np.nan), "finite"),
        (dict(method="cohen"), "method must be one of"),
    ],
)
def test_gaussian_errors(kwargs, match):
    base = dict(k=1, k_prime=1, sigma=0.5, radius=0.5, method="multiguard")
    base.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        gaussian_certified_size([[0.5, 0.1, 0.1]], [[0.6, 0.2, 0.2]], [[1, 0, 0]], **base)


def test_bounds_and_labels_errors():
    with pytest.raises(ValueError, match="lower <= upper"):
        gaussian_certified_size(
            [[0.5, 0.3]], [[0.4, 0.4]], [[1, 0]], k=1, k_prime=1, sigma=1.0, radius=0
        )
    with pytest.raises(ValueError, match="only 0 and 1"):
        gaussian_certified_size(
            [[0.5, 0.3]], [[0.6, 0.4]], [[2, 0]], k=1, k_prime=1, sigma=1.0, radius=0
        )
    with pytest.raises(ValueError, match="integers"):
        dpa_certified_size([[3, 1]], [[1, 0]], k=1, k_base=1, radius=0.5)
    with pytest.raises(ValueError, match="attack"):
        dpa_certified_size([[3, 1]], [[1, 0]], k=1, k_base=1, radius=1, attack="flip")


# ---------------------------------------------------------------- ties and extremes


@pytest.mark.parametrize(
    "lower, upper, k, kp, method",
    [
        # a true label tied with the s-th other label: Eq. 8 must reject (real arithmetic)
        ([[0.03, 0, 0, 0]], [[1, 0.8, 0.17, 0.03]], 3, 1, "multiguard"),
        # k' * Phi(Phi^-1(x / k')) differs from x by an ulp
        ([[0.1, 0, 0, 0]], [[1, 0.1, 0, 0]], 1, 2, "multiguard"),
        ([[0.003, 0, 0, 0]], [[1, 0.003, 0.003, 0]], 2, 1, "jia"),
    ],
)
def test_gaussian_exact_ties_are_not_certified(lower, upper, k, kp, method):
    sizes = gaussian_certified_size(
        lower, upper, [[1, 0, 0, 0]], k=k, k_prime=kp, sigma=1.0, radius=0.0, method=method
    )
    assert sizes.tolist() == [0]


def test_bagging_ties_and_coarse_grid_rounding():
    # p# = 0.2 ties p* = 0.2 at T = 0 (prefix-sum differences must not break the tie)
    assert bagging_certified_size(
        [[0.2, 0, 0, 0]],
        [[1, 0.7, 0.2, 0.2]],
        [[1, 0, 0, 0]],
        k=3,
        k_base=1,
        n_train=1000,
        max_samples=100,
        radius=0,
    ).tolist() == [0]
    # the float 0.3 lies below 3/10: on the grid of 1/10^4, p# = 0.2999, not 0.3
    assert bagging_certified_size(
        [[0.3, 0]], [[1, 0.2999]], [[1, 0]], k=1, k_base=1, n_train=10, max_samples=4, radius=0
    ).tolist() == [0]
    # and the float 0.1 lies above 1/10: p* = 0.1001
    assert bagging_certified_size(
        [[0.1001, 0]], [[1, 0.1]], [[1, 0]], k=1, k_base=1, n_train=10, max_samples=4, radius=0
    ).tolist() == [0]


@pytest.mark.parametrize("T", [2**62, 2**63, 1e19])
def test_huge_poisoning_sizes_certify_nothing(T):
    """T beyond int64 must not wrap around to a small or negative number."""
    for attack in ("modification", "addition", "deletion"):
        assert dpa_certified_size(
            [[10, 3, 1]], [[1, 0, 0]], k=1, k_base=1, radius=T, attack=attack
        ).tolist() == [0]
        assert bagging_certified_size(
            [[0.8, 0]],
            [[1, 0.1]],
            [[1, 0]],
            k=1,
            k_base=1,
            n_train=1000,
            max_samples=10,
            radius=T,
            attack=attack,
        ).tolist() == [0]
