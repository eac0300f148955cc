"""Certified metrics and scorers: hand numbers, model selection, option pass-through."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import (
    GridSearchCV,
    KFold,
    RandomizedSearchCV,
    cross_val_score,
    cross_validate,
)

from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import (
    CertifiedScorer,
    certified_f1_score,
    certified_precision_score,
    certified_recall_score,
    certified_scorer,
)
from sklearn_certify.results import CertificationResult
from sklearn_certify.smoothing import SmoothedMultiLabelClassifier

CV = KFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def data():
    X, X_test, Y, Y_test = make_multidigit(150, 40, random_state=0)
    return X, Y, X_test, Y_test


def smoothed(**params):
    """A fast, reproducible certified estimator: closed-form ridge base, few draws."""
    settings = dict(sigma=0.25, k=3, n_draws=50, alpha=0.01, random_state=0)
    settings.update(params)
    return SmoothedMultiLabelClassifier(RidgeClassifier(), **settings)


def ensembles():
    """The poisoning ensembles with tiny settings (imported lazily: written in parallel)."""
    from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier

    return [
        BaggingCertifiedClassifier(
            RidgeClassifier(), n_estimators=15, max_samples=40, alpha=0.05, random_state=0
        ),
        DPACertifiedClassifier(RidgeClassifier(), n_partitions=9),
    ]


# ---------------------------------------------------------------- *_score functions

Y_TRUE = np.array(
    [
        [1, 1, 1, 0],  # |L| = 3
        [0, 1, 0, 0],  # |L| = 1
        [1, 0, 0, 1],  # |L| = 2
        [0, 0, 0, 0],
    ]
)  # no label: excluded from every mean


def test_scores_1d_sizes_hand_numbers():
    sizes = np.array([2, 1, 1, 0])
    assert certified_precision_score(Y_TRUE, sizes, k=2) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert certified_recall_score(Y_TRUE, sizes, k=2) == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert certified_f1_score(Y_TRUE, sizes, k=2) == pytest.approx((4 / 5 + 2 / 3 + 2 / 4) / 3)
    assert isinstance(certified_f1_score(Y_TRUE, sizes, k=2), float)


def test_scores_2d_sizes_one_value_per_radius():
    sizes = np.array([[3, 1, 0], [1, 1, 0], [2, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(
        certified_precision_score(Y_TRUE, sizes, k=3),
        [(1 + 1 / 3 + 2 / 3) / 3, (1 / 3 + 1 / 3) / 3, 0],
    )
    np.testing.assert_allclose(
        certified_recall_score(Y_TRUE, sizes, k=3), [(1 + 1 + 1) / 3, (1 / 3 + 1) / 3, 0]
    )
    np.testing.assert_allclose(
        certified_f1_score(Y_TRUE, sizes, k=3), [(1 + 2 / 4 + 4 / 5) / 3, (2 / 6 + 2 / 4) / 3, 0]
    )


def test_scores_k1_single_label_is_accuracy():
    Y = np.eye(3, dtype=int)[[0, 1, 2, 1]]
    sizes = np.array([1, 0, 1, 1])
    for score in (certified_precision_score, certified_recall_score, certified_f1_score):
        assert score(Y, sizes, k=1) == 0.75


def test_scores_agree_with_result_methods():
    sizes = np.array([[2, 1], [1, 0], [1, 1], [0, 0]])
    res = CertificationResult(sizes, [0.0, 0.5], k=2, n_true=Y_TRUE.sum(axis=1))
    np.testing.assert_allclose(certified_precision_score(Y_TRUE, sizes, 2), res.precision())
    np.testing.assert_allclose(certified_recall_score(Y_TRUE, sizes, 2), res.recall())
    np.testing.assert_allclose(certified_f1_score(Y_TRUE, sizes, 2), res.f1())


def test_scores_nan_without_labels_and_errors():
    assert np.isnan(certified_f1_score(np.zeros((2, 3)), [0, 0], k=1))
    with pytest.raises(ValueError, match="2-D"):
        certified_f1_score([1, 0, 1], [1, 0, 1], k=1)
    with pytest.raises(ValueError, match="0 and 1"):
        certified_f1_score([[2, 0]], [1], k=1)
    with pytest.raises(ValueError, match="k must be at least 1"):
        certified_precision_score(Y_TRUE, [1, 1, 1, 0], k=0)
    with pytest.raises(ValueError, match="n_inputs"):
        certified_recall_score(Y_TRUE, [1, 1], k=1)


# ---------------------------------------------------------------- the scorer object


def test_certified_scorer_validation_and_repr():
    scorer = certified_scorer("recall", radius=0.5, method="first-term")
    assert isinstance(scorer, CertifiedScorer)
    assert repr(scorer) == "certified_scorer('recall', radius=0.5, method='first-term')"
    assert certified_scorer().metric == "f1" and certified_scorer().radius == 0.0
    with pytest.raises(ValueError, match="metric"):
        certified_scorer("accuracy")
    with pytest.raises(ValueError, match="radius"):
        certified_scorer("f1", radius=-1)
    with pytest.raises(TypeError, match="radius"):
        certified_scorer("f1", radius=[0.1, 0.2])


class SpyCertified(ClassifierMixin, BaseEstimator):
    """Records the arguments of certify; certified size = number of true labels, capped."""

    def __init__(self, k=2):
        self.k = k

    def fit(self, X, Y):
        self.classes_ = np.arange(np.asarray(Y).shape[1])
        return self

    def certify(self, X, Y, radius=0.0, **options):
        self.calls_ = getattr(self, "calls_", []) + [(radius, options)]
        Y = np.asarray(Y)
        sizes = np.minimum(Y.sum(axis=1), self.k)
        return CertificationResult(sizes, radius, self.k, Y.sum(axis=1))


def test_scorer_passes_radius_and_options_to_certify():
    spy = SpyCertified().fit(None, Y_TRUE)
    scorer = certified_scorer("precision", radius=3, attack="deletion", method="dpa")
    value = scorer(spy, None, Y_TRUE)
    assert spy.calls_ == [(3, {"attack": "deletion", "method": "dpa"})]
    assert value == pytest.approx((1 + 0.5 + 1) / 3)  # min(|L|, 2) / 2, unlabelled excluded
    assert isinstance(value, float)
    with pytest.raises(ValueError, match="sample_weight"):
        scorer(spy, None, Y_TRUE, sample_weight=np.ones(4))


def test_scorer_pickles():
    scorer = certified_scorer("recall", radius=2, attack="addition")
    for loaded in (
        pickle.loads(pickle.dumps(scorer)),
        pickle.loads(pickle.dumps({"r": scorer}))["r"],
    ):
        assert isinstance(loaded, CertifiedScorer)
        assert (loaded.metric, loaded.radius, loaded.certify_options) == (
            "recall",
            2,
            {"attack": "addition"},
        )
        spy = SpyCertified().fit(None, Y_TRUE)
        assert loaded(spy, None, Y_TRUE) == scorer(spy, None, Y_TRUE)


def test_scorer_equals_certify_on_a_real_estimator(data):
    X, Y, X_test, Y_test = data
    clf = smoothed().fit(X, Y)
    for metric in ("precision", "recall", "f1"):
        expected = getattr(clf.certify(X_test, Y_test, 0.1), metric)()[0]
        assert certified_scorer(metric, radius=0.1)(clf, X_test, Y_test) == expected
    first = clf.certify(X_test, Y_test, 0.1, method="first-term").f1()[0]
    assert certified_scorer("f1", 0.1, method="first-term")(clf, X_test, Y_test) == first
    loose = clf.certify(X_test, Y_test, 0.1, alpha=0.3).f1()[0]
    assert certified_scorer("f1", 0.1, alpha=0.3)(clf, X_test, Y_test) == loose
    assert clf.score(X_test, Y_test) == certified_scorer()(clf, X_test, Y_test)
    with pytest.raises(TypeError, match="attack"):  # smoothing has no attack option
        certified_scorer("f1", 0.1, attack="deletion")(clf, X_test, Y_test)


def test_scorer_options_pass_through_to_ensembles(data):
    X, Y, X_test, Y_test = data
    for est in ensembles():
        est.fit(X, Y)
        for options in (
            {},
            {"attack": "deletion"},
            {"attack": "addition"},
            {"method": type(est)().get_params()["method"]},
        ):
            expected = est.certify(X_test, Y_test, 1, **options).recall()[0]
            assert certified_scorer("recall", 1, **options)(est, X_test, Y_test) == expected
        # the alternative method (t fixed to 1) never certifies more
        alt = "bagging" if "Bagging" in type(est).__name__ else "dpa"
        assert certified_scorer("f1", 1, method=alt)(est, X_test, Y_test) <= certified_scorer(
            "f1", 1
        )(est, X_test, Y_test)


# ---------------------------------------------------------------- model selection


def test_grid_search_single_scorer(data):
    X, Y, _, _ = data
    search = GridSearchCV(
        smoothed(),
        {"sigma": [0.1, 0.5], "k": [1, 3]},
        scoring=certified_scorer("f1", radius=0.1),
        cv=CV,
    )
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 4
    scores = search.cv_results_["mean_test_score"]
    assert np.all((scores >= 0) & (scores <= 1))
    assert search.best_params_ == search.cv_results_["params"][np.argmax(scores)]
    assert search.best_estimator_.get_params()["sigma"] == search.best_params_["sigma"]
    # the scores are exactly those of fitting and certifying each fold by hand
    params = search.cv_results_["params"][0]
    train, test = next(CV.split(X))
    clf = smoothed(**params).fit(X[train], Y[train])
    by_hand = clf.certify(X[test], Y[test], 0.1).f1()[0]
    assert search.cv_results_["split0_test_score"][0] == pytest.approx(by_hand)


@pytest.mark.parametrize("refit", ["f1", "precision", "recall"])
def test_grid_search_multi_metric_refit_by_any(data, refit):
    X, Y, X_test, Y_test = data
    scoring = {m: certified_scorer(m, radius=0.1) for m in ("f1", "precision", "recall")}
    search = GridSearchCV(smoothed(), {"k": [1, 2, 4]}, scoring=scoring, refit=refit, cv=CV)
    search.fit(X, Y)
    for m in scoring:
        assert f"mean_test_{m}" in search.cv_results_ and f"rank_test_{m}" in search.cv_results_
    best = int(np.argmax(search.cv_results_[f"mean_test_{refit}"]))
    assert search.best_index_ == best
    assert search.best_params_ == search.cv_results_["params"][best]
    assert search.best_score_ == search.cv_results_[f"mean_test_{refit}"][best]
    # the search's score uses the refit scorer
    expected = scoring[refit](search.best_estimator_, X_test, Y_test)
    assert search.score(X_test, Y_test) == pytest.approx(expected)


def test_precision_and_recall_refits_differ(data):
    """Certified precision e/k prefers small k, recall e/|L| large k: refit follows."""
    X, Y, _, _ = data
    scoring = {m: certified_scorer(m, radius=0.0) for m in ("precision", "recall")}
    chosen = {}
    for refit in scoring:
        search = GridSearchCV(smoothed(), {"k": [1, 5]}, scoring=scoring, refit=refit, cv=CV)
        chosen[refit] = search.fit(X, Y).best_params_["k"]
    assert chosen == {"precision": 1, "recall": 5}


def test_randomized_search(data):
    X, Y, _, _ = data
    scoring = {"f1": certified_scorer("f1", 0.1), "recall": certified_scorer("recall", 0.1)}
    search = RandomizedSearchCV(
        smoothed(),
        {"sigma": [0.1, 0.25, 0.5], "k": [1, 2, 3]},
        n_iter=3,
        scoring=scoring,
        refit="recall",
        cv=CV,
        random_state=0,
    )
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == 3
    assert search.best_index_ == int(np.argmax(search.cv_results_["mean_test_recall"]))
    assert search.predict(X[:5]).shape == (5, 10)


def test_cross_validate_multi_metric(data):
    X, Y, _, _ = data
    scoring = {m: certified_scorer(m, radius=0.1) for m in ("f1", "precision", "recall")}
    out = cross_validate(smoothed(), X, Y, scoring=scoring, cv=CV)
    for m in scoring:
        assert out[f"test_{m}"].shape == (3,)
        assert np.all((out[f"test_{m}"] >= 0) & (out[f"test_{m}"] <= 1))
    single = cross_val_score(smoothed(), X, Y, scoring=scoring["f1"], cv=CV)
    np.testing.assert_allclose(single, out["test_f1"])


def test_default_scoring_is_certified_f1_at_radius_0(data):
    X, Y, _, _ = data
    default = cross_val_score(smoothed(), X, Y, cv=CV)
    explicit = cross_val_score(smoothed(), X, Y, cv=CV, scoring=certified_scorer("f1", 0.0))
    np.testing.assert_allclose(default, explicit)


def test_grid_search_ensembles_with_attack(data):
    X, Y, _, _ = data
    for est in ensembles():
        scoring = {
            "mod": certified_scorer("f1", radius=1),
            "del": certified_scorer("f1", radius=1, attack="deletion"),
        }
        search = GridSearchCV(est, {"k": [1, 3]}, scoring=scoring, refit="del", cv=CV)
        search.fit(X, Y)
        # T~ = 2T for modification vs T for deletion: deletion certifies at least as much
        assert np.all(
            search.cv_results_["mean_test_del"] >= search.cv_results_["mean_test_mod"] - 1e-12
        )
        assert search.best_index_ == int(np.argmax(search.cv_results_["mean_test_del"]))
