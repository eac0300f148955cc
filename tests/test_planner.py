"""The sample-size planner: max_certifiable_radius, draws_for_radius and certify's warning."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier

from sklearn_certify.bounds import clopper_pearson_bounds, draws_for_radius, max_certifiable_radius
from sklearn_certify.certificates import gaussian_certified_size


@pytest.mark.parametrize("n_draws", [1, 10, 100, 1000, 100_000])
@pytest.mark.parametrize("n_classes", [2, 10, 80])
def test_closed_form_at_k_one(n_draws, n_classes):
    alpha, sigma = 0.001, 0.5
    # 0, not negative, where p_A <= 1/2 (n_draws 1 and 10 here)
    expected = max(0.0, sigma * norm.ppf((alpha / n_classes) ** (1 / n_draws)))
    assert max_certifiable_radius(n_draws, alpha, sigma, n_classes) == pytest.approx(
        expected, rel=1e-12, abs=1e-12
    )


def test_too_few_draws_certify_nothing_and_give_radius_zero():
    """alpha = 0.001, 10 labels: p_A = (1e-4) ** (1 / n) exceeds 1/2 from n = 14 on
    (log(1e-4) / log(0.5) = 13.29). Below, the closed form sigma * Phi^-1(p_A) is
    negative (-1.8595 at n = 1, sigma = 0.5), but nothing is certified, radius 0
    included: the planner says 0, as the certificate of the best-case counts does."""
    alpha, sigma, c = 0.001, 0.5, 10
    assert sigma * norm.ppf(1e-4) == pytest.approx(-1.8595082, abs=1e-6)
    n = np.array([1, 2, 13, 14])
    reach = max_certifiable_radius(n, alpha, sigma, c)
    assert reach[:3].tolist() == [0.0, 0.0, 0.0]
    assert reach[3] == pytest.approx(sigma * norm.ppf(1e-4 ** (1 / 14)), rel=1e-12)
    assert reach[3] == pytest.approx(0.0225, abs=1e-4)
    assert max_certifiable_radius(1, alpha, sigma, c) == 0.0
    assert max_certifiable_radius(2, 0.5, sigma, 2) == 0.0  # p_A = 0.25 ** 0.5 = 0.5
    # the certificate agrees: the best-case input (every draw on label 0) is certified
    # at radius 0 from 14 draws on, not with 13
    Y = np.eye(1, c, dtype=int)
    for draws, certified in ((13, 0), (14, 1)):
        counts = np.zeros((1, c), dtype=np.int64)
        counts[0, 0] = draws
        lower, upper = clopper_pearson_bounds(counts, draws, alpha)
        assert gaussian_certified_size(
            lower, upper, Y, k=1, k_prime=1, sigma=sigma, radius=0.0
        ).tolist() == [certified]
    # draws_for_radius is unchanged: the fewest draws certifying radius 0 is 14
    assert draws_for_radius(0.0, alpha, sigma, c) == 14


def test_known_value_and_vectorised():
    # n = 100, alpha = 0.001, 10 labels: nothing beyond about 1.35 sigma
    assert max_certifiable_radius(100, 0.001, 1.0, 10) == pytest.approx(1.3532, abs=1e-4)
    radii = max_certifiable_radius(np.array([10, 100, 1000]), 0.001, 1.0, 10)
    assert radii.shape == (3,) and np.all(np.diff(radii) > 0)


@pytest.mark.parametrize("k,k_prime", [(1, 1), (3, 1), (3, 2), (2, 3)])
def test_general_k_is_the_edge_of_the_best_case_certificate(k, k_prime):
    """At the planner's radius the best-case input stops being certified, and no
    other count vector is certified beyond it."""
    n, alpha, sigma, c = 200, 0.01, 0.5, 8
    reach = max_certifiable_radius(n, alpha, sigma, c, k=k, k_prime=k_prime)
    assert np.isfinite(reach) and reach > 0
    counts = np.zeros((1, c), dtype=int)
    counts[0, :k_prime] = n
    Y = (np.arange(c) < k_prime)[None, :].astype(int)
    lower, upper = clopper_pearson_bounds(counts, n, alpha)
    # (the Clopper-Pearson bounds are nudged to the safe side by about 1e-9, so the
    # closed form at k = k' = 1 sits that much above the computed certificate's edge)
    sizes = gaussian_certified_size(
        lower,
        upper,
        Y,
        k=k,
        k_prime=k_prime,
        sigma=sigma,
        radius=[reach * (1 - 1e-6), reach * (1 + 1e-9)],
    )
    assert sizes[0, 0] >= 1 and sizes[0, 1] == 0
    # random inputs with fewer agreeing draws are never certified beyond it
    rng = np.random.default_rng(0)
    many = np.zeros((300, c), dtype=int)
    for i in range(300):
        w = rng.dirichlet(np.full(c, 0.2))
        draws = np.argsort(-(np.log(w + 1e-12) + rng.gumbel(size=(n, c))), axis=1)
        many[i] = np.bincount(draws[:, :k_prime].ravel(), minlength=c)
    Y_many = np.zeros((300, c), dtype=int)
    Y_many[np.arange(300)[:, None], np.argsort(-many, axis=1)[:, :k_prime]] = 1
    lower, upper = clopper_pearson_bounds(many, n, alpha)
    beyond = gaussian_certified_size(
        lower, upper, Y_many, k=k, k_prime=k_prime, sigma=sigma, radius=reach * (1 + 1e-9)
    )
    assert beyond.max() == 0


def test_trivial_top_k_is_infinite():
    assert max_certifiable_radius(10, 0.01, 1.0, 4, k=3, k_prime=2) == np.inf
    assert draws_for_radius(5.0, 0.01, 1.0, 4, k=3, k_prime=2) == 1


@pytest.mark.parametrize("k,k_prime", [(1, 1), (3, 1), (3, 2)])
@pytest.mark.parametrize("radius", [0.0, 0.25, 1.0])
def test_draws_for_radius_is_the_smallest_n(k, k_prime, radius):
    alpha, sigma, c = 0.001, 0.5, 10
    n = draws_for_radius(radius, alpha, sigma, c, k=k, k_prime=k_prime)
    assert max_certifiable_radius(n, alpha, sigma, c, k=k, k_prime=k_prime) > radius
    if n > 1:
        assert max_certifiable_radius(n - 1, alpha, sigma, c, k=k, k_prime=k_prime) <= radius
    if k == k_prime == 1:
        closed = int(np.floor(np.log(alpha / c) / np.log(norm.cdf(radius / sigma)))) + 1
        assert n == closed


def test_planner_arguments_are_checked():
    with pytest.raises(ValueError, match="n_draws"):
        max_certifiable_radius(0, 0.01, 1.0, 5)
    with pytest.raises(ValueError, match="alpha"):
        max_certifiable_radius(10, 1.5, 1.0, 5)
    with pytest.raises(ValueError, match="k"):
        max_certifiable_radius(10, 0.01, 1.0, 5, k=6)
    with pytest.raises(ValueError, match="radius"):
        draws_for_radius(-1.0, 0.01, 1.0, 5)
    for k in (1, 2):
        with pytest.raises(ValueError, match="practical number of draws"):
            draws_for_radius(40.0, 0.01, 1.0, 5, k=k)


def test_planner_does_not_import_torch():
    code = (
        "import sys; import sklearn_certify.bounds as b; "
        "b.max_certifiable_radius(50, 0.01, 1.0, 5, k=2); "
        "print(any(m in sys.modules for m in ('torch', 'skorch', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_certify_warns_once_beyond_the_reach():
    from sklearn_certify import SmoothedMultiLabelClassifier
    from sklearn_certify.datasets import make_multidigit

    X, X_test, Y, Y_test = make_multidigit(120, 6, random_state=0)
    clf = SmoothedMultiLabelClassifier(
        MultiOutputClassifier(LogisticRegression()), sigma=0.25, n_draws=50, random_state=0
    ).fit(X, Y)
    reach = max_certifiable_radius(50, 0.001, 0.25, clf.n_classes_, k=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.certify(X_test, Y_test, radius=[0.0, 0.1])
        assert not caught
        result = clf.certify(X_test, Y_test, radius=[0.0, reach, reach + 1, reach + 2])
        assert len(caught) == 1
        clf.certify(X_test, Y_test, radius=[0.0, 50.0])  # out of any reach: still a warning
    assert len(caught) == 2 and "No practical n_draws" in str(caught[1].message)
    message = str(caught[0].message)
    assert "n_draws=50" in message and "alpha=0.001" in message
    assert np.all(result.sizes[:, 1:] == 0)


def test_one_label_is_certified_at_every_radius():
    """n_classes = 1: the top-1 always holds the only label, so certify reports it at
    every radius (trivial bound) and the planner says so: inf, and 1 draw."""
    assert max_certifiable_radius(100, 0.001, 0.5, n_classes=1) == np.inf
    np.testing.assert_array_equal(
        max_certifiable_radius(np.array([1, 100]), 0.001, 0.5, 1), [np.inf, np.inf]
    )
    assert draws_for_radius(2.0, 0.001, 0.5, n_classes=1) == 1
    # what certify reports: certified at any radius, even from counts of 0
    lower, upper = clopper_pearson_bounds(np.array([[100], [0]]), 100, 0.001)
    sizes = gaussian_certified_size(
        lower, upper, [[1], [1]], k=1, k_prime=1, sigma=0.5, radius=[0.0, 2.0, 1e6]
    )
    np.testing.assert_array_equal(sizes, [[1, 1, 1], [1, 1, 1]])
    # and two labels at k = k' = 1 are not trivial
    assert np.isfinite(max_certifiable_radius(100, 0.001, 0.5, n_classes=2))


@pytest.mark.parametrize("k, k_prime, n_classes", [(3, 1, 10), (2, 2, 6), (5, 3, 20), (1, 1, 10)])
@pytest.mark.parametrize("n_draws", [20, 100, 1000])
def test_unreachable_radii_agrees_with_the_reach_even_at_its_edge(k, k_prime, n_classes, n_draws):
    """The quick check used by certify's warning gives ``radii >= max_certifiable_radius``
    exactly, also within a few units in the last place of the reach."""
    from sklearn_certify.certificates._gaussian_planner import unreachable_radii

    reach = max_certifiable_radius(n_draws, 0.001, 0.5, n_classes, k=k, k_prime=k_prime)
    edges = reach * (1 + np.array([-1e-9, -1e-13, -2e-16, 0.0, 2e-16, 1e-13, 1e-9]))
    radii = np.r_[0.0, 0.1 * reach, edges, 2 * reach, 50.0]
    beyond, got = unreachable_radii(radii, n_draws, 0.001, 0.5, n_classes, k=k, k_prime=k_prime)
    np.testing.assert_array_equal(beyond, radii >= reach)
    assert got == reach  # some radius is beyond, so the reach is computed
    below = radii[radii < reach]
    beyond, got = unreachable_radii(below, n_draws, 0.001, 0.5, n_classes, k=k, k_prime=k_prime)
    assert not beyond.any() and got is None
