"""Sequential certification: soundness of the staged bounds, the prefix property, the API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import ndtr
from scipy.stats import beta

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.certificates import gaussian_certified_size
from sklearn_certify.certificates._gaussian_sequential import (
    sequential_gaussian_certify,
    stage_schedule,
    staged_bounds,
)
from sklearn_certify.results import CertificationResult
from sklearn_certify.smoothing import _certify_sequential

SIGMA = 0.5


class _HalfPlane(torch.nn.Module):
    """Two labels; label 1 wins exactly where x_0 > 0. Under N(0, sigma^2 I) noise the
    smoothed probabilities are p_1 = Phi(x_0 / sigma), p_0 = 1 - p_1."""

    def forward(self, x):
        return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], dim=1)


def _half_plane_classifier(n_draws, alpha, random_state=0):
    X = np.zeros((2, 2), dtype=np.float32)
    return SmoothedMultiLabelClassifier(
        _HalfPlane(),
        sigma=SIGMA,
        k=1,
        n_draws=n_draws,
        alpha=alpha,
        train_noise=False,
        random_state=random_state,
    ).fit(X, np.array([[1, 0], [0, 1]]))


def test_schedule_shares_sum_to_one_and_end_at_the_maximum():
    for n_draws, max_draws in [(1, None), (50, None), (1000, None), (1000, 3000), (64, 65)]:
        stops, shares = stage_schedule(n_draws, max_draws)
        assert stops[-1] == (max_draws or n_draws) and n_draws in stops
        assert np.all(np.diff(stops) > 0) and shares.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(shares > 0)
    with pytest.raises(ValueError, match="max_draws"):
        stage_schedule(100, 50)


def test_no_false_certificates_on_the_exact_half_plane_model():
    """Every reported certificate is one the exact smoothed probabilities also certify,
    except with probability at most alpha per input."""
    alpha, radius = 0.1, 0.25
    rng = np.random.default_rng(0)
    # inputs around the distance at which radius 0.25 is just certifiable
    x0 = rng.uniform(0.05, 0.6, 600) * rng.choice([-1, 1], 600)
    X = np.column_stack([x0, rng.normal(size=600)]).astype(np.float32)
    Y = np.where(rng.random(600) < 0.8, (x0 > 0), (x0 <= 0)).astype(int)
    Y = np.column_stack([1 - Y, Y])
    clf = _half_plane_classifier(n_draws=400, alpha=alpha)
    result = clf.certify(X, Y, radius=[0.0, radius], sequential=True)
    assert result.n_draws_used.mean() < 400 and result.n_draws_used.min() < 400

    p1 = ndtr(X[:, 0].astype(np.float64) / SIGMA)
    exact = np.column_stack([1 - p1, p1])
    exact_sizes = gaussian_certified_size(
        exact, exact, Y, k=1, k_prime=1, sigma=SIGMA, radius=[0.0, radius]
    )
    false = np.any(result.sizes > exact_sizes, axis=1)
    bounds_fail = np.any((result.lower > exact) | (result.upper < exact), axis=1)
    assert not np.any(false & ~bounds_fail)  # a false certificate needs a failed bound
    n = len(X)
    assert bounds_fail.mean() <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / n)
    assert result.sizes[:, 1].sum() > 50  # the test certifies something


def _stream_lower_bounds(p, stops, level, n_rep, rng):
    """Lower Clopper-Pearson bounds of one Bernoulli(p) stream at each stage end."""
    steps = np.diff(np.r_[0, stops])
    hits = np.cumsum(rng.binomial(steps[None, :], p, size=(n_rep, stops.size)), axis=1)
    with np.errstate(invalid="ignore"):
        lower = beta.ppf(level, hits, stops - hits + 1)
    return np.where(hits == 0, 0.0, lower)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.99])
def test_staged_bounds_cover_under_any_stopping_rule(p):
    """Coverage of the staged bounds when the stopping stage is picked after the fact
    (the worst rule: the stage whose lower bound is highest). Allocated shares keep
    the failure rate below alpha; reusing the full alpha at every stage does not."""
    alpha, n_rep = 0.05, 40_000
    stops, shares = stage_schedule(1000)
    rng = np.random.default_rng(1)
    staged = _stream_lower_bounds(p, stops, alpha * shares[None, :], n_rep, rng)
    fail = np.any(staged > p, axis=1).mean()
    assert fail <= alpha + 3 * np.sqrt(alpha / n_rep)
    naive = _stream_lower_bounds(p, stops, np.full(stops.size, alpha)[None, :], n_rep, rng)
    assert np.any(naive > p, axis=1).mean() > 1.5 * alpha


def test_sequential_certificates_hold_in_a_count_level_simulation():
    """The whole procedure on multinomial streams with known label probabilities:
    the rate of inputs whose bounds fail stays below alpha."""
    alpha, c, n_inputs = 0.1, 4, 3000
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(c, 0.4), size=n_inputs)
    Y = (p >= np.sort(p, axis=1)[:, [-2]]).astype(int)  # the two most likely labels
    draws = np.stack([rng.choice(c, size=500, p=row) for row in p])

    def sample(rows, start, stop):
        block = draws[rows, start:stop]
        return (block[:, :, None] == np.arange(c)).sum(axis=1)

    outcome = sequential_gaussian_certify(
        sample,
        Y,
        np.array([0.0, 0.3]),
        k=2,
        k_prime=1,
        sigma=SIGMA,
        alpha=alpha,
        method="multiguard",
        n_draws=500,
    )
    fail = np.any((outcome.lower > p) | (outcome.upper < p), axis=1)
    assert fail.mean() <= alpha + 3 * np.sqrt(alpha / n_inputs)
    assert outcome.n_draws_used.mean() < 450
    exact = gaussian_certified_size(p, p, Y, k=2, k_prime=1, sigma=SIGMA, radius=[0.0, 0.3])
    assert np.all((outcome.sizes <= exact) | fail[:, None])


@pytest.fixture(scope="module")
def fitted():
    from sklearn.linear_model import LogisticRegression
    from sklearn.multioutput import MultiOutputClassifier

    from sklearn_certify.datasets import make_multidigit

    X, X_test, Y, Y_test = make_multidigit(200, 30, random_state=0)
    clf = SmoothedMultiLabelClassifier(
        MultiOutputClassifier(LogisticRegression()),
        sigma=0.25,
        k=2,
        n_draws=300,
        alpha=0.01,
        random_state=3,
    ).fit(X, Y)
    return clf, X_test, Y_test


def test_first_m_draws_equal_a_fixed_run_of_m(fitted):
    clf, X, Y = fitted
    result = clf.certify(X, Y, [0.0, 0.25], sequential=True)
    used = result.n_draws_used
    assert used.dtype == np.int64 and len(np.unique(used)) >= 2
    for m in np.unique(used):
        rows = np.flatnonzero(used == m)
        fixed = clf.set_params(n_draws=int(m)).certify(X[rows], Y[rows], 0.0)
        np.testing.assert_array_equal(result.counts[rows], fixed.counts)
    clf.set_params(n_draws=300)
    np.testing.assert_array_equal(clf.certify(X, Y, 0.0).n_draws_used, np.full(len(X), 300))


def test_sequential_takes_a_numpy_bool(fitted):
    clf, X, Y = fitted
    np.testing.assert_array_equal(
        clf.certify(X, Y, 0.25, sequential=np.bool_(True)).n_draws_used,
        clf.certify(X, Y, 0.25, sequential=True).n_draws_used,
    )
    assert clf.certify(X, Y, 0.25, sequential=np.bool_(False)).n_draws_used.min() == 300


def test_result_is_certified_from_its_own_staged_bounds(fitted):
    clf, X, Y = fitted
    result = clf.certify(X, Y, [0.0, 0.1, 0.25], sequential=True, label="seq")
    _, shares = stage_schedule(300)
    assert set(np.unique(result.alpha_share)) <= set(shares)
    lower, upper = staged_bounds(result.counts, result.n_draws_used, 0.01, result.alpha_share)
    np.testing.assert_array_equal(lower, result.lower)
    np.testing.assert_array_equal(upper, result.upper)
    sizes = gaussian_certified_size(
        lower, upper, Y, k=2, k_prime=1, sigma=0.25, radius=[0.0, 0.1, 0.25]
    )
    np.testing.assert_array_equal(sizes, result.sizes)
    again = result.recertify()
    np.testing.assert_array_equal(again.sizes, result.sizes)
    np.testing.assert_array_equal(again.n_draws_used, result.n_draws_used)
    looser = result.recertify(alpha=0.1, k=3)
    assert looser.alpha_share is not None and looser.sizes.shape == result.sizes.shape
    # decided inputs stopped: at the cap, or their certificate could not grow
    assert np.all(result.sizes[result.n_draws_used < 300].min(axis=1) >= 0)
    frame = result.summary()
    assert frame["mean_draws_used"] == pytest.approx(result.n_draws_used.mean())


def test_mean_budget_variant(fitted):
    clf, X, Y = fitted
    clf.set_params(n_draws=150)
    result = clf.certify(X, Y, 0.1, sequential=True, max_draws=600)
    clf.set_params(n_draws=300)
    assert result.n_draws_used.sum() <= 150 * len(X)
    assert result.n_draws_used.max() <= 600 and result.n_draws == 600
    with pytest.raises(TypeError, match="max_draws"):
        clf.certify(X, Y, 0.1, max_draws=600)
    with pytest.raises(ValueError, match="max_draws"):
        clf.certify(X, Y, 0.1, sequential=True, max_draws=10)


def test_trivially_decided_inputs_draw_nothing():
    counts_calls = []

    def sample(rows, start, stop):
        counts_calls.append(rows)
        return np.tile([stop - start, 0, 0], (len(rows), 1))

    Y = np.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    outcome = sequential_gaussian_certify(
        sample,
        Y,
        np.array([0.1]),
        k=2,
        k_prime=1,
        sigma=1.0,
        alpha=0.01,
        method="multiguard",
        n_draws=200,
    )
    # all labels true (certified 2 whatever happens) and no label: no draws
    np.testing.assert_array_equal(outcome.n_draws_used[[0, 2]], [0, 0])
    assert outcome.sizes[0, 0] == 2 and outcome.sizes[2, 0] == 0
    assert all(set(rows.tolist()) == {1} for rows in counts_calls)
    result = CertificationResult(
        outcome.sizes, [0.1], 2, Y.sum(axis=1), n_draws_used=outcome.n_draws_used
    )
    assert result.n_draws_used.tolist()[0] == 0


def test_sequential_shards_like_a_fixed_run(fitted):
    from joblib import parallel_backend

    clf, X, Y = fitted
    alone = clf.certify(X, Y, [0.0, 0.25], sequential=True)
    with parallel_backend("threading"):
        sharded = clf.set_params(n_jobs=2).certify(X, Y, [0.0, 0.25], sequential=True)
    clf.set_params(n_jobs=None)
    np.testing.assert_array_equal(sharded.counts, alone.counts)
    np.testing.assert_array_equal(sharded.n_draws_used, alone.n_draws_used)
    np.testing.assert_array_equal(sharded.sizes, alone.sizes)


def test_jia_sequential_bounds_are_taken_at_half_alpha(fitted):
    clf, X, Y = fitted
    result = clf.certify(X, Y, [0.0, 0.1], sequential=True, method="jia")
    lower, upper = staged_bounds(result.counts, result.n_draws_used, 0.01 / 2, result.alpha_share)
    np.testing.assert_array_equal(lower, result.lower)
    np.testing.assert_array_equal(result.recertify(method="jia").sizes, result.sizes)
    multiguard = result.recertify(method="multiguard")
    assert np.all(multiguard.lower >= result.lower)  # alpha, not alpha / 2, for Eq. 8


def test_an_alpha_too_small_for_the_first_stage_fails_before_sampling(monkeypatch):
    """The first stage's bounds hold at a small share of alpha: an alpha that leaves it
    below the smallest valid level is refused, naming alpha, before any draw."""
    clf = _half_plane_classifier(n_draws=1000, alpha=1e-297)
    X, Y = np.zeros((2, 2), dtype=np.float32), np.array([[1, 0], [0, 1]])
    assert clf.certify(X, Y, 0.0).sizes.shape == (2, 1)  # fixed n: the level is valid

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before refusing alpha")

    monkeypatch.setattr(_certify_sequential, "stage_sampler", no_sampling)
    with pytest.raises(ValueError, match="alpha"):
        clf.certify(X, Y, 0.0, sequential=True)
