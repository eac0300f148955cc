"""Per-input certified radii and the average certified radius of CertificationResult."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from sklearn_certify.results import CertificationResult


def _multilabel_counts(seed, n=60, c=6, kp=1, n_draws=400):
    """Counts of a random top-k' base model that is mostly right, and labels."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, c), dtype=int)
    counts = np.zeros((n, c), dtype=int)
    for i in range(n):
        Y[i, rng.choice(c, size=rng.integers(1, c), replace=False)] = 1
        w = rng.dirichlet(np.full(c, 0.3)) + 1e-9
        w[Y[i].astype(bool)] *= 8
        draws = np.argsort(-(np.log(w) + rng.gumbel(size=(n_draws, c))), axis=1)[:, :kp]
        counts[i] = np.bincount(draws.ravel(), minlength=c)
    return counts, Y


def _one_hot_counts(seed, n=300, c=5, n_draws=1000):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    p = rng.dirichlet(np.full(c, 0.3), size=n)
    p[np.arange(n), y] += rng.uniform(0, 3, n)  # from hopeless to near-certain
    p /= p.sum(axis=1, keepdims=True)
    counts = np.array([rng.multinomial(n_draws, row) for row in p])
    return counts, np.eye(c, dtype=int)[y], y


@pytest.mark.parametrize("method", ["multiguard", "first-term", "jia"])
@pytest.mark.parametrize("sigma", [0.25, 1.0])
def test_cohen_closed_form_at_k_one(method, sigma):
    counts, Y, y = _one_hot_counts(0)
    res = CertificationResult.from_counts(
        counts,
        Y,
        0.0,
        certificate="gaussian",
        k=1,
        method=method,
        n_draws=1000,
        alpha=0.001,
        k_prime=1,
        sigma=sigma,
    )
    rows = np.arange(len(y))
    a = res.lower[rows, y]
    b = np.where(Y == 1, -np.inf, res.upper).max(axis=1)
    cohen = sigma / 2 * (norm.ppf(a) - norm.ppf(np.minimum(b, 1 - a)))
    expected = np.maximum(cohen, 0.0)
    radius = res.certified_radius()
    assert 0.2 < np.mean(radius > 0) < 0.95  # both kinds of input are present
    np.testing.assert_allclose(radius, expected, rtol=0, atol=1e-6 * sigma)
    assert res.average_certified_radius() == pytest.approx(expected.mean(), abs=1e-6 * sigma)


@pytest.mark.parametrize("method", ["multiguard", "first-term"])
@pytest.mark.parametrize("size", [1, 2])
def test_gaussian_radius_is_the_edge_of_the_certificate(method, size):
    """sizes >= size exactly at the radii below the certified radius (k = 3, k' = 2)."""
    counts, Y = _multilabel_counts(1, kp=2)
    res = CertificationResult.from_counts(
        counts,
        Y,
        0.0,
        certificate="gaussian",
        k=3,
        method=method,
        n_draws=400,
        alpha=0.01,
        k_prime=2,
        sigma=0.5,
    )
    radius = res.certified_radius(size)
    finite = np.isfinite(radius)
    assert (radius[finite] > 0).sum() >= 10
    grid = np.linspace(0, 1.5, 301)
    sizes = res.recertify(radius=grid).sizes
    near = np.abs(grid[None, :] - radius[:, None]) < 1e-9
    expected = grid[None, :] < radius[:, None]
    expected[:, 0] |= sizes[:, 0] >= size  # certified at 0 means a positive radius
    np.testing.assert_array_equal((sizes >= size)[~near], expected[~near])
    # the returned radius is itself certified
    edge = res.recertify(radius=0.0)
    for i in np.flatnonzero(finite & (radius > 0))[:5]:
        one = CertificationResult.from_counts(
            counts[[i]],
            Y[[i]],
            radius[i],
            certificate="gaussian",
            k=3,
            method=method,
            n_draws=400,
            alpha=0.01,
            k_prime=2,
            sigma=0.5,
        )
        assert one.sizes[0, 0] >= size
    assert edge.sizes.shape == (len(Y), 1)


@pytest.mark.parametrize(
    "pa, upper_others",
    [
        (
            0.7989813152364129,
            [0.05313757662529612, 0.07974427378742317, 0.04292731191592621, 0.14240505039053647],
        ),
        (
            0.6576179130313453,
            [0.1218240384805517, 0.06005937850833214, 0.13292084623923056, 0.13616094841776238],
        ),
    ],
)
def test_gaussian_radius_is_certified_after_rounding_sigma_times_shift(pa, upper_others):
    """R = sigma * (R / sigma) may round up: the certificate at R (computed from R /
    sigma) must still hold."""
    from sklearn_certify.certificates import gaussian_certified_size
    from sklearn_certify.certificates._gaussian import gaussian_certified_radius

    lower = np.array([[pa, 0.0, 0.0, 0.0, 0.0]])
    upper = np.array([[1.0, *upper_others]])
    Y = np.array([[1, 0, 0, 0, 0]])
    radius = gaussian_certified_radius(
        lower, upper, Y, k=1, k_prime=1, sigma=0.1, method="multiguard"
    )
    assert radius[0] > 0
    size = gaussian_certified_size(
        lower, upper, Y, k=1, k_prime=1, sigma=0.1, radius=float(radius[0])
    )
    assert np.asarray(size).ravel()[0] >= 1


@pytest.mark.parametrize("k, k_prime, sigma", [(1, 1, 0.5), (3, 2, 0.25)])
def test_gaussian_radius_is_within_1e_13_below_the_supremum(k, k_prime, sigma):
    """What the docs promise: R is certified and R (1 + 1e-13) is not, for every input
    (so the supremum lies in [R, R (1 + 1e-13)], up to a few units in the last place)."""
    from sklearn_certify.certificates import gaussian_certified_size

    counts, Y = _multilabel_counts(3, n=300, kp=k_prime)
    res = CertificationResult.from_counts(
        counts,
        Y,
        0.0,
        certificate="gaussian",
        k=k,
        method="multiguard",
        n_draws=400,
        alpha=0.01,
        k_prime=k_prime,
        sigma=sigma,
    )
    radius = res.certified_radius()
    rows = np.flatnonzero(np.isfinite(radius) & (radius > 0))
    assert rows.size >= 50

    at = np.array(
        [
            gaussian_certified_size(
                res.lower[[i]],
                res.upper[[i]],
                Y[[i]],
                k=k,
                k_prime=k_prime,
                sigma=sigma,
                radius=[radius[i], radius[i] * (1 + 1.01e-13)],
            )[0]
            for i in rows
        ]
    )
    assert np.all(at[:, 0] >= 1)  # certified at R
    assert np.all(at[:, 1] == 0)  # not at R (1 + 1e-13): the supremum is within that


def test_trivially_certified_inputs_have_infinite_radius():
    counts = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]])
    Y = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    res = CertificationResult.from_counts(
        counts,
        Y,
        0.0,
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=10,
        alpha=0.01,
        k_prime=1,
        sigma=1.0,
    )
    # k - (n_classes - |L|) = 2 - 1 = 1 true label always in the top-2 of input 0
    radius = res.certified_radius()
    assert radius[0] == np.inf
    assert radius[2] == 0.0  # no true label
    assert res.certified_radius(size=2)[0] < np.inf


@pytest.mark.parametrize("attack,touched", [("modification", 2), ("addition", 1)])
@pytest.mark.parametrize("method", ["poisoningguard", "dpa"])
def test_dpa_vote_gap_at_k_one(attack, touched, method):
    """Levine & Feizi: T is certified while n_y - max_{c != y} n_c > 2 T~."""
    rng = np.random.default_rng(2)
    n, c, n_partitions = 400, 6, 300
    y = rng.integers(0, c, n)
    p = rng.dirichlet(np.full(c, 0.5), size=n)
    p[np.arange(n), y] += rng.uniform(0, 4, n)
    p /= p.sum(axis=1, keepdims=True)
    counts = np.array([rng.multinomial(n_partitions, row) for row in p])
    Y = np.eye(c, dtype=int)[y]
    res = CertificationResult.from_counts(
        counts, Y, 0, certificate="dpa", k=1, method=method, k_base=1, attack=attack
    )
    gap = counts[np.arange(n), y] - np.where(Y == 1, -1, counts).max(axis=1)
    # largest integer T with gap > 2 * touched * T
    expected = np.where(gap > 0, -(-gap // (2 * touched)) - 1, 0)
    T = res.certified_radius()
    assert T.max() > 20
    np.testing.assert_array_equal(T, expected)
    assert res.average_certified_radius() == pytest.approx(expected.mean())


@pytest.mark.parametrize("certificate", ["dpa", "bagging"])
@pytest.mark.parametrize("size", [1, 2])
def test_ensemble_T_against_brute_force(certificate, size):
    counts, Y = _multilabel_counts(3, n=40, n_draws=300)
    if certificate == "dpa":
        res = CertificationResult.from_counts(
            counts,
            Y,
            0,
            certificate="dpa",
            k=3,
            method="poisoningguard",
            k_base=1,
            attack="modification",
        )
        grid = np.arange(0, 200)
    else:
        res = CertificationResult.from_counts(
            counts,
            Y,
            0,
            certificate="bagging",
            k=3,
            method="poisoningguard",
            n_draws=300,
            alpha=0.01,
            k_base=1,
            n_train=2000,
            max_samples=20,
            attack="addition",
        )
        grid = np.arange(0, 200)
    certified = res.recertify(radius=grid).sizes >= size
    T = res.certified_radius(size)
    trivial = np.maximum(0, 3 - (Y.shape[1] - Y.sum(axis=1))) >= size
    assert np.all(T[trivial] == np.inf) and np.all(certified[trivial])
    certified, T = certified[~trivial], T[~trivial]
    assert certified[:, -1].sum() == 0  # the grid reaches past every radius
    # monotone: certified on 0 .. T and nowhere else
    largest = np.where(certified.any(axis=1), certified.sum(axis=1) - 1, 0)
    np.testing.assert_array_equal(certified, (grid[None, :] <= largest[:, None]) & certified[:, :1])
    np.testing.assert_array_equal(T, largest)
    assert np.all(T == np.round(T)) and T.max() >= 5


def test_summary_and_errors():
    counts, Y = _multilabel_counts(4, n=20)
    res = CertificationResult.from_counts(
        counts,
        Y,
        [0.0, 0.25],
        certificate="gaussian",
        k=2,
        method="multiguard",
        n_draws=400,
        alpha=0.01,
        k_prime=1,
        sigma=0.5,
    )
    summary = res.summary()
    assert summary["average_certified_radius"] == pytest.approx(res.certified_radius().mean())
    assert summary["mean_draws_used"] == 400.0
    np.testing.assert_array_equal(res.n_draws_used, np.full(20, 400))
    assert res.n_draws_used.dtype == np.int64
    with pytest.raises(ValueError, match="size"):
        res.certified_radius(0)
    bare = CertificationResult(res.sizes, res.radius, 2, res.n_true)
    with pytest.raises(ValueError, match="certified radii cannot be computed"):
        bare.certified_radius()
    assert bare.n_draws_used is None
    assert np.isnan(bare.summary()["average_certified_radius"])
