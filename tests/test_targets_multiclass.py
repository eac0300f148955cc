"""1-D multi-class targets on all three estimators, and the k = k' = 1 closed forms.

With one true label per input and k = k' = 1 (k_base = 1) the certificates reduce to the
classic single-label ones: Cohen et al.'s l2 radius for smoothing, DPA's vote gap and the
bagging condition of Jia et al. (2021) for the ensembles. Each is recomputed here from
the quantities the result stores (bounds or counts).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import (
    BaggingCertifiedClassifier,
    CertificationResult,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.datasets import make_multidigit

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(scope="module")
def digits():
    """Single-digit images (a 1x1 grid, never empty): exactly one label each."""
    X, X_test, Y, Y_test = make_multidigit(150, 40, grid=1, empty_prob=0.0, random_state=0)
    assert (Y.sum(axis=1) == 1).all() and (Y_test.sum(axis=1) == 1).all()
    return X, Y.argmax(axis=1), X_test, Y_test.argmax(axis=1)


def smoothed(**params):
    settings = dict(sigma=0.25, k=1, n_draws=100, alpha=0.01, random_state=0)
    settings.update(params)
    return SmoothedMultiLabelClassifier(RidgeClassifier(), **settings)


def bagging(**params):
    settings = dict(n_estimators=30, max_samples=20, k=1, alpha=0.05, random_state=0)
    settings.update(params)
    return BaggingCertifiedClassifier(RidgeClassifier(), **settings)


def dpa(**params):
    settings = dict(n_partitions=15, k=1)
    settings.update(params)
    return DPACertifiedClassifier(RidgeClassifier(), **settings)


MAKERS = [smoothed, bagging, dpa]
RADII = {smoothed: np.linspace(0.0, 1.0, 21), bagging: np.arange(8), dpa: np.arange(8)}


def _beyond_reach(make, k=1):
    """smoothed's grid runs to 1.0, past what its 100 draws certify with k < 10 labels
    (about 0.38 at k = 1): certify warns. Every radius certifies k = 10 of 10 labels."""
    if make is smoothed and k < 10:
        return pytest.warns(UserWarning, match="lies at or beyond")
    return contextlib.nullcontext()


@pytest.fixture(scope="module", params=MAKERS, ids=lambda m: m.__name__)
def fitted(request, digits):
    """Each estimator fitted on integer labels and on string labels."""
    X, y, _, _ = digits
    make = request.param
    return make, make().fit(X, y), make().fit(X, NAMES[y])


def _gap_inputs(counts, y):
    """Votes of the true label minus the most votes of any other label."""
    rows = np.arange(len(y))
    others = counts.astype(float).copy()
    others[rows, y] = -np.inf
    return counts[rows, y] - others.max(axis=1)


# ---------------------------------------------------------------- encoding and predict


def test_classes_kept_and_predict_returns_labels(fitted, digits):
    _, est, est_str = fitted
    _, _, X_test, y_test = digits
    np.testing.assert_array_equal(est.classes_, np.arange(10))
    np.testing.assert_array_equal(est_str.classes_, np.sort(NAMES))
    assert est.multiclass_ and est_str.multiclass_ and est.n_classes_ == 10
    pred, pred_str = est.predict(X_test), est_str.predict(X_test)
    assert pred.shape == (40,) and pred_str.shape == (40,)
    assert set(pred) <= set(est.classes_) and set(pred_str) <= set(NAMES)
    assert pred_str.dtype.kind == "U"
    # the top-1 label of the label frequencies
    proba = est.predict_proba(X_test)
    assert proba.shape == (40, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(pred, est.classes_[proba.argmax(axis=1)])
    np.testing.assert_array_equal(
        pred_str, est_str.classes_[est_str.predict_proba(X_test).argmax(axis=1)]
    )
    # it learned something, with either kind of labels (DPA's partitions hash the label
    # values themselves, so its two models differ; the others differ at most by ties)
    assert (pred == y_test).mean() > 0.5 and (pred_str == NAMES[y_test]).mean() > 0.5


def test_certify_one_hot_encodes_like_fit(fitted, digits):
    make, est, est_str = fitted
    _, _, X_test, y_test = digits
    with _beyond_reach(make):
        res = est.certify(X_test, y_test, RADII[make])
    with _beyond_reach(make):
        res_str = est_str.certify(X_test, NAMES[y_test], RADII[make])
    with _beyond_reach(make):
        res_hot = est.certify(X_test, np.eye(10, dtype=int)[y_test], RADII[make])
    assert isinstance(res, CertificationResult)
    np.testing.assert_array_equal(res.Y, np.eye(10, dtype=int)[y_test])
    np.testing.assert_array_equal(res.n_true, np.ones(40))
    np.testing.assert_array_equal(res.sizes, res_hot.sizes)
    hot_str = (NAMES[y_test][:, None] == est_str.classes_[None, :]).astype(int)
    np.testing.assert_array_equal(res_str.Y, hot_str)
    with _beyond_reach(make):
        res_hot_str = est_str.certify(X_test, hot_str, RADII[make])
    np.testing.assert_array_equal(res_str.sizes, res_hot_str.sizes)
    assert est.score(X_test, y_test) == res.f1()[0]
    with pytest.raises(ValueError, match="not seen during fit"):
        est_str.certify(X_test, np.full(40, "eleven"), 0)


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_certify_any_k(fitted, digits, k):
    make, est, _ = fitted
    _, _, X_test, y_test = digits
    with _beyond_reach(make, k):
        res = est.certify(X_test, y_test, RADII[make], k=k)
    assert res.k == k and res.sizes.shape == (40, RADII[make].size)
    assert set(np.unique(res.sizes)) <= {0, 1}  # one true label
    assert np.all(np.diff(res.sizes, axis=1) <= 0)
    if k == 10:  # every label is predicted: trivially certified at any radius
        assert (res.sizes == 1).all()
    # at radius 0 a larger k certifies at least as many inputs in practice
    assert res.sizes[:, 0].sum() >= est.certify(X_test, y_test, 0, k=1).sizes.sum()


def test_predict_with_k_above_one_still_top1(digits):
    X, y, X_test, _ = digits
    for make in MAKERS:
        est = make(k=3).fit(X, y)
        np.testing.assert_array_equal(
            est.predict(X_test), est.classes_[est.predict_proba(X_test).argmax(axis=1)]
        )


# ---------------------------------------------------------------- closed forms, k = k' = 1


@pytest.mark.parametrize("method", ["multiguard", "jia"])
@pytest.mark.parametrize("labels", ["int", "str"])
def test_smoothing_k1_is_cohen(digits, method, labels):
    """R < sigma/2 (Phi^-1(p_A) - Phi^-1(p_B)), p_B capped at 1 - p_A (Cohen et al.)."""
    X, y, X_test, y_test = digits
    to = (lambda v: NAMES[v]) if labels == "str" else (lambda v: v)
    sigma = 0.25
    est = smoothed(sigma=sigma, k_prime=1, k=1).fit(X, to(y))
    radii = RADII[smoothed]
    with _beyond_reach(smoothed):
        res = est.certify(X_test, to(y_test), radii, method=method)
    rows = np.arange(40)
    col = np.searchsorted(est.classes_, to(y_test))
    p_a = res.lower[rows, col]
    upper = res.upper.copy()
    upper[rows, col] = -np.inf
    p_b = np.minimum(upper.max(axis=1), 1.0 - p_a)
    with np.errstate(divide="ignore", invalid="ignore"):
        cohen = sigma / 2 * (norm.ppf(p_a) - norm.ppf(p_b))
    cohen = np.nan_to_num(cohen, nan=-np.inf)
    expected = (radii[None, :] < cohen[:, None]).astype(int)
    clear = np.abs(radii[None, :] - cohen[:, None]) > 1e-9  # skip exact boundary ties
    np.testing.assert_array_equal(res.sizes[clear], expected[clear])
    assert res.sizes[:, 0].sum() > 5 and (res.sizes[:, 0] > res.sizes[:, -1]).any()
    # the certified inputs at radius 0 are predicted correctly
    assert (est.predict(X_test)[res.sizes[:, 0] == 1] == to(y_test)[res.sizes[:, 0] == 1]).all()


@pytest.mark.parametrize("attack, factor", [("modification", 2), ("addition", 1), ("deletion", 1)])
@pytest.mark.parametrize("method", ["poisoningguard", "dpa"])
def test_dpa_k1_is_vote_gap(digits, attack, factor, method):
    """Certified at T exactly when n_y - max_{c != y} n_c > 2 T~ (T~ = 2T, modification)."""
    X, y, X_test, y_test = digits
    est = dpa(k_base=1, k=1).fit(X, NAMES[y])
    T = RADII[dpa]
    res = est.certify(X_test, NAMES[y_test], T, attack=attack, method=method)
    gap = _gap_inputs(res.counts, np.searchsorted(est.classes_, NAMES[y_test]))
    np.testing.assert_array_equal(res.sizes, (gap[:, None] > 2 * factor * T).astype(int))
    assert res.counts.sum(axis=1).tolist() == [15] * 40  # one vote per partition
    assert res.sizes[:, 0].sum() > 5 and res.sizes[:, 1].sum() > 0


@pytest.mark.parametrize("method", ["poisoningguard", "bagging"])
def test_bagging_k1_is_jia(digits, method):
    """Certified at T (modification) exactly when p_A - p_B > 2 (1 - ((n - T)/n)^m)."""
    X, y, X_test, y_test = digits
    est = bagging(k_base=1, k=1).fit(X, y)
    T = RADII[bagging]
    res = est.certify(X_test, y_test, T, method=method)
    n, m = est.n_train_, est.max_samples_
    assert (n, m) == (150, 20)
    rows = np.arange(40)
    p_a = res.lower[rows, y_test]
    upper = res.upper.copy()
    upper[rows, y_test] = -np.inf
    p_b = upper.max(axis=1)
    bound = 2 * (1 - ((n - T) / n) ** m)
    margin = (p_a - p_b)[:, None] - bound[None, :]
    clear = np.abs(margin) > 1e-9
    np.testing.assert_array_equal(res.sizes[clear], (margin > 0).astype(int)[clear])
    assert res.sizes[:, 0].sum() > 5 and res.sizes[:, 1].sum() > 0
