"""Pretrained base models: ``sklearn.frozen.FrozenEstimator`` and torch modules, used as is."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import MultiLabelNet

RADII = [0.0, 0.25, 0.5]


@pytest.fixture(scope="module")
def data():
    X_train, X_test, Y_train, Y_test = make_multidigit(240, 20, random_state=0)
    return (X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1), Y_train, Y_test)


@pytest.fixture(scope="module")
def ridge(data):
    X_train, _, Y_train, _ = data
    return RidgeClassifier().fit(X_train, Y_train)


@pytest.fixture(scope="module")
def net(data):
    X_train, _, Y_train, _ = data
    torch.manual_seed(0)
    return MultiLabelNet(module__hidden=(16,), max_epochs=2, batch_size=64).fit(
        X_train.astype(np.float32), Y_train.astype(np.float32)
    )


def _no_warning_fit(estimator, X, Y):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return estimator.fit(X, Y)


def test_smoothing_frozen_sklearn_estimator_is_used_as_is(data, ridge):
    X_train, X_test, Y_train, Y_test = data
    coef = ridge.coef_.copy()
    frozen = FrozenEstimator(ridge)
    clf = _no_warning_fit(
        SmoothedMultiLabelClassifier(frozen, n_draws=40, train_noise=False, random_state=0),
        X_train,
        Y_train,
    )
    assert clf.estimator_ is frozen
    np.testing.assert_array_equal(ridge.coef_, coef)  # not refitted
    # The same counts as a clone of the base trained on the same clean data (Ridge is
    # deterministic), sampled with the same seed.
    refit = SmoothedMultiLabelClassifier(
        clone(ridge), n_draws=40, train_noise=False, random_state=0
    ).fit(X_train, Y_train)
    np.testing.assert_array_equal(
        clf.certify(X_test, Y_test, RADII).counts, refit.certify(X_test, Y_test, RADII).counts
    )


def test_smoothing_warns_when_train_noise_cannot_apply(data, ridge, net):
    X_train, X_test, Y_train, _ = data
    for base in (FrozenEstimator(ridge), FrozenEstimator(net), net.module_):
        clf = SmoothedMultiLabelClassifier(base, n_draws=20, random_state=0)
        with pytest.warns(UserWarning, match="train_noise=True has no effect"):
            clf.fit(X_train, Y_train)
        _no_warning_fit(clf.set_params(train_noise=False), X_train, Y_train)
    # train_noise=True with a frozen base changes nothing: the same predictions.
    with pytest.warns(UserWarning, match="train_noise"):
        noisy = SmoothedMultiLabelClassifier(
            FrozenEstimator(ridge), n_draws=20, random_state=0
        ).fit(X_train, Y_train)
    np.testing.assert_array_equal(
        noisy.predict_proba(X_test),
        clf.set_params(estimator=FrozenEstimator(ridge))
        .fit(X_train, Y_train)
        .predict_proba(X_test),
    )


def test_smoothing_frozen_skorch_net_samples_on_the_torch_path(data, net):
    X_train, X_test, Y_train, Y_test = data
    weights = [p.detach().clone() for p in net.module_.parameters()]
    frozen = _no_warning_fit(
        SmoothedMultiLabelClassifier(
            FrozenEstimator(net), n_draws=40, train_noise=False, random_state=0
        ),
        X_train,
        Y_train,
    )
    assert all(torch.equal(a, b) for a, b in zip(weights, net.module_.parameters()))
    # Identical counts to the bare module: the frozen net is sampled as a torch model.
    bare = SmoothedMultiLabelClassifier(
        net.module_, n_draws=40, train_noise=False, random_state=0
    ).fit(X_train, Y_train)
    np.testing.assert_array_equal(
        frozen.certify(X_test, Y_test, RADII).counts, bare.certify(X_test, Y_test, RADII).counts
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda base: BaggingCertifiedClassifier(
            base, n_estimators=15, max_samples=40, random_state=0
        ),
        lambda base: DPACertifiedClassifier(base, n_partitions=12),
    ],
    ids=["bagging", "dpa"],
)
def test_ensembles_with_a_frozen_base_vote_unanimously(data, ridge, make):
    # A frozen base ignores its training data, so every base model is the same
    # pretrained model and the votes are unanimous. (The certificates do not know that:
    # they hold for any base learner.)
    X_train, X_test, Y_train, Y_test = data
    clf = _no_warning_fit(make(FrozenEstimator(ridge)), X_train, Y_train)
    top = np.argsort(-ridge.decision_function(X_test), axis=1, kind="stable")[:, 0]
    n_models = len(clf.estimators_)
    expected = np.zeros((len(X_test), Y_train.shape[1]), dtype=np.int64)
    expected[np.arange(len(X_test)), top] = n_models
    result = clf.certify(X_test, Y_test, [0, 1, 5])
    np.testing.assert_array_equal(result.counts, expected)
    if isinstance(clf, DPACertifiedClassifier):  # 12 votes to 0 outlast T~ = 2T = 2
        np.testing.assert_array_equal(result.sizes[:, 0], result.sizes[:, 1])
