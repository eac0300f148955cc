"""scikit-learn compliance: estimator checks, tags, clone, nested params, pipelines.

The estimator checks run with tiny settings and fast closed-form or shallow base models
(no nets). Each expected failure is listed below with a one-line reason; all of them
follow from what a certified classifier is.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import certified_scorer

CV = KFold(3, shuffle=True, random_state=0)
# Two radii each estimator can certify: smoothed's 20 draws reach about 0.17 (k=2), an
# ensemble's radius is a number of training examples.
TWO_RADII = {"smoothed": [0.0, 0.1], "bagging": [0, 1], "dpa": [0, 1]}


def smoothed(**params):
    settings = dict(k=1, n_draws=20, random_state=0)
    settings.update(params)
    return SmoothedMultiLabelClassifier(RidgeClassifier(), **settings)


def bagging(**params):
    settings = dict(n_estimators=5, max_samples=0.5, k=1, random_state=0)
    settings.update(params)
    return BaggingCertifiedClassifier(DecisionTreeClassifier(max_depth=3), **settings)


def dpa(**params):
    settings = dict(n_partitions=3, k=1)
    settings.update(params)
    return DPACertifiedClassifier(MultiOutputClassifier(LogisticRegression()), **settings)


MAKERS = [smoothed, bagging, dpa]

# ------------------------------------------------------------------ expected failures
# Inherent: the certified classifiers predict the top-k labels of vote counts, and the
# smoothed classifier samples Monte-Carlo noise; no fix is wanted.
_TOPK = (
    "predict is the top-k of the vote counts, not predict_proba > 0.5 "
    "(predict_proba rows sum to k', not per-label probabilities of a threshold rule)"
)
_FREQ = (
    "predict_proba holds vote frequencies counts / n_draws, which are exactly 0 "
    "(or 1) for labels never (always) voted for; the check wants values in (0, 1)"
)
INHERENT = {
    "SmoothedMultiLabelClassifier": {
        "check_classifier_multioutput": _TOPK,
        "check_classifiers_multilabel_output_format_predict_proba": _FREQ,
    },
    "BaggingCertifiedClassifier": {
        "check_classifier_multioutput": _TOPK,
        "check_classifiers_multilabel_output_format_predict_proba": _FREQ,
    },
    "DPACertifiedClassifier": {
        "check_classifier_multioutput": _TOPK,
        "check_classifiers_multilabel_output_format_predict_proba": _FREQ,
    },
}


def expected_failed_checks(estimator) -> dict:
    name = type(estimator).__name__
    return INHERENT[name]


# Strict: a check that starts passing must have its entry removed.
@parametrize_with_checks(
    [make() for make in MAKERS], expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ tags, clone, params


@pytest.fixture(scope="module")
def data():
    X, X_test, Y, Y_test = make_multidigit(120, 30, random_state=0)
    return X, Y, X_test, Y_test


@pytest.mark.parametrize("make", MAKERS)
def test_tags(make):
    est = make()
    tags = get_tags(est)
    assert is_classifier(est) and tags.estimator_type == "classifier"
    assert tags.classifier_tags.multi_label is True
    assert tags.target_tags.multi_output is True
    assert tags.target_tags.required is True
    assert tags.input_tags.sparse is False


@pytest.mark.parametrize("make", MAKERS)
def test_clone_unfitted_and_fitted(make, data):
    X, Y, _, _ = data
    est = make(k=2)
    fitted = clone(est).fit(X, Y)
    for source in (est, fitted):
        copy = clone(source)
        assert type(copy) is type(est)
        assert copy.get_params(deep=False).keys() == est.get_params(deep=False).keys()
        assert copy.k == 2
        assert copy.estimator is not source.estimator  # base estimator cloned too
        assert not hasattr(copy, "classes_") and not hasattr(copy, "n_classes_")
    assert fitted.n_classes_ == 10


@pytest.mark.parametrize(
    "make, nested, value",
    [
        (smoothed, "estimator__alpha", 3.0),
        (bagging, "estimator__max_depth", 2),
        (dpa, "estimator__estimator__C", 0.5),
    ],
)
def test_nested_estimator_params(make, nested, value, data):
    X, Y, _, _ = data
    est = make()
    params = est.get_params(deep=True)
    assert nested in params and "estimator" in params and "k" in params
    assert est.set_params(**{nested: value, "k": 2}) is est
    assert est.get_params()[nested] == value and est.k == 2
    # the fitted base models were built from the updated base estimator
    est.fit(X, Y)
    fitted = est.estimator_ if hasattr(est, "estimator_") else est.estimators_[0].estimator_
    assert fitted.get_params()[nested.split("__", 1)[1]] == value
    assert est.predict(X[:4]).sum(axis=1).tolist() == [2] * 4


@pytest.mark.parametrize(
    "make, grid",
    [
        (smoothed, {"estimator__alpha": [0.1, 10.0], "sigma": [0.1, 0.5]}),
        (bagging, {"estimator__max_depth": [1, 3], "max_samples": [0.3, 0.6]}),
        (dpa, {"estimator__estimator__C": [0.1, 1.0], "n_partitions": [3]}),
    ],
)
def test_grid_search_over_nested_params(make, grid, data):
    X, Y, _, _ = data
    search = GridSearchCV(make(k=2), grid, scoring=certified_scorer("f1", 0), cv=CV)
    search.fit(X, Y)
    assert len(search.cv_results_["params"]) == np.prod([len(v) for v in grid.values()])
    assert set(search.best_params_) == set(grid)
    best = search.best_estimator_.get_params()
    assert all(best[key] == value for key, value in search.best_params_.items())


# ------------------------------------------------------------------ pipelines


@pytest.mark.parametrize("make", MAKERS)
def test_inside_a_pipeline(make, data):
    X, Y, X_test, Y_test = data
    pipe = make_pipeline(StandardScaler(), make(k=2)).fit(X, Y)
    pred = pipe.predict(X_test)
    assert pred.shape == Y_test.shape and (pred.sum(axis=1) == 2).all()
    assert pipe.predict_proba(X_test).shape == Y_test.shape
    # Pipeline.score is the last step's score (certified f1 at radius 0) on scaled X
    scaled = pipe[:-1].transform(X_test)
    assert pipe.score(X_test, Y_test) == pipe[-1].score(scaled, Y_test)
    assert pipe.score(X_test, Y_test) == pipe[-1].certify(scaled, Y_test, 0).f1()[0]
    # a Pipeline has no certify: certify its last step on the transformed inputs
    assert not hasattr(pipe, "certify")
    result = pipe[-1].certify(scaled, Y_test, TWO_RADII[make.__name__])
    assert result.sizes.shape == (len(X_test), 2)
    # a grid search over the pipeline with the default scoring (its score)
    search = GridSearchCV(pipe, {f"{pipe.steps[-1][0]}__k": [1, 3]}, cv=CV).fit(X, Y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize("make", MAKERS)
def test_preprocessing_inside_the_base_estimator(make, data):
    """The supported way to preprocess *and* certify: the pipeline is the base model.

    Then the certificate covers the preprocessing: smoothing adds noise to the raw
    inputs (the radius is in input space), and every ensemble member fits its own
    scaler on its own subsample / partition (a scaler fitted on the whole training set
    would let one poisoned example move every base model).
    """
    X, Y, X_test, Y_test = data
    base = make_pipeline(StandardScaler(), make().estimator)
    est = make(k=2).set_params(estimator=base)
    search = GridSearchCV(est, {"k": [1, 2]}, scoring=certified_scorer("f1", radius=0), cv=CV)
    search.fit(X, Y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert "estimator__standardscaler__with_mean" in est.get_params()
    radii = TWO_RADII[make.__name__]
    assert search.best_estimator_.certify(X_test, Y_test, radii).sizes.shape == (30, 2)


def test_certified_scorer_on_a_pipeline_explains_the_supported_way(data):
    """A Pipeline cannot be certified as a whole (preprocessing fitted outside the
    certified estimator is not covered); the scorer says so and names the fix."""
    X, Y, _, _ = data
    pipe = Pipeline([("scale", StandardScaler()), ("clf", smoothed(k=2))])
    search = GridSearchCV(
        pipe, {"clf__k": [1, 2]}, scoring=certified_scorer("f1", 0.1), cv=CV, error_score="raise"
    )
    with pytest.raises(TypeError, match="inside the certified estimator"):
        search.fit(X, Y)
