"""An input's ensemble votes do not depend on the other inputs of the call.

Exact ties are made on purpose: the label matrix repeats some columns, so every base
model is trained on identical columns for those labels, and DPA's small partitions
make many more columns identical within a partition. Such labels tie exactly and the
tie goes to the lower label index, whatever the float rounding of a batched product.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.ensembles._base_model import _ConstantAwareMultiLabel, tied_columns
from sklearn_certify.heads import LinearHead
from sklearn_certify.nets import MLPModule, MultiLabelNet

DUPLICATED = [0, 3, 7]  # columns 10, 11, 12 repeat labels 0, 3 and 7
RADII = [0, 1, 2, 4]


@pytest.fixture(scope="module")
def data():
    X, X_test, Y, Y_test = make_multidigit(400, 40, random_state=0)
    return (X, np.hstack([Y, Y[:, DUPLICATED]]), X_test, np.hstack([Y_test, Y_test[:, DUPLICATED]]))


def _net():
    return MultiLabelNet(MLPModule, module__hidden=(8,), max_epochs=3, batch_size=16, lr=0.05)


BASES = {
    "linear-head": lambda: LinearHead(epochs=30, lr=0.05),
    "mlp-head": lambda: LinearHead(hidden=8, epochs=30, lr=0.05),
    "net": _net,
    "ridge": RidgeClassifier,
}


def _ensembles():
    for base in BASES:
        for vectorize in ("auto", False):
            if base == "ridge" and vectorize is False:
                continue  # ridge is never vectorised: "auto" is the one-by-one path
            yield pytest.param("dpa", base, vectorize, id=f"dpa-{base}-{vectorize}")
            yield pytest.param("bagging", base, vectorize, id=f"bagging-{base}-{vectorize}")


_FITTED = {}


def _fitted(kind, base, vectorize, data):
    key = (kind, base, vectorize)
    if key not in _FITTED:
        X, Y, _, _ = data
        if kind == "dpa":
            clf = DPACertifiedClassifier(BASES[base](), n_partitions=50, k=3, vectorize=vectorize)
        else:
            clf = BaggingCertifiedClassifier(
                BASES[base](),
                n_estimators=30,
                max_samples=12,
                k=3,
                random_state=0,
                vectorize=vectorize,
            )
        _FITTED[key] = clf.fit(X, Y)
    return _FITTED[key]


def _counts(clf, X):
    return clf._label_counts(X)[0]


def test_tied_columns():
    Y = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [1, 1, 1, 1, 0]])
    assert tied_columns(Y).tolist() == [0, 1, 0, 1, 4]
    assert tied_columns(Y[:1]).tolist() == [0, 1, 0, 1, 0]
    assert tied_columns(Y[:0]).tolist() == [0, 1, 2, 3, 4]  # no rows: no ties


def test_wrapper_scores_identical_columns_identically(data):
    X, Y, X_test, _ = data
    model = _ConstantAwareMultiLabel(RidgeClassifier()).fit(X[:50], Y[:50])
    scores = model.decision_function(X_test)
    assert model.tied_to_[10:].tolist() == DUPLICATED
    np.testing.assert_array_equal(scores[:, 10:], scores[:, DUPLICATED])
    # the lower label wins the tie: a duplicate is never voted for without its first copy
    top = model.top_labels(X_test, 2)
    assert not (top[:, 10:] & ~top[:, DUPLICATED]).any()


@pytest.mark.parametrize("kind, base, vectorize", list(_ensembles()))
def test_votes_do_not_depend_on_the_batch(kind, base, vectorize, data):
    _, _, X_test, Y_test = data
    clf = _fitted(kind, base, vectorize, data)
    n = len(X_test)
    counts = _counts(clf, X_test)
    assert (counts.sum(axis=1) == len(clf.estimators_) * clf.k_base).all()
    alone = np.stack([_counts(clf, X_test[i : i + 1])[0] for i in range(n)])
    np.testing.assert_array_equal(alone, counts)
    # k_base = 1 and ties to the lower label: a duplicated column never gets a vote
    assert not counts[:, 10:].any()

    rng = np.random.default_rng(0)
    for _ in range(2):
        order = rng.permutation(n)
        np.testing.assert_array_equal(_counts(clf, X_test[order]), counts[order])
        picked = rng.choice(n, size=int(rng.integers(2, n)), replace=False)
        np.testing.assert_array_equal(_counts(clf, X_test[picked]), counts[picked])
    # chunked: in pieces of random sizes, and through the stacked heads' batch_size
    cuts = np.sort(rng.choice(np.arange(1, n), size=5, replace=False))
    chunked = np.concatenate([_counts(clf, part) for part in np.split(X_test, cuts)])
    np.testing.assert_array_equal(chunked, counts)
    if clf.stacked_models_ is not None:
        for batch_size in (1, 7, 33):
            np.testing.assert_array_equal(
                clf.stacked_models_.vote_counts(X_test, clf.k_base, batch_size=batch_size), counts
            )

    predicted = clf.predict(X_test)
    sizes = clf.certify(X_test, Y_test, RADII).sizes
    for i in rng.choice(n, size=8, replace=False):
        np.testing.assert_array_equal(clf.predict(X_test[i : i + 1])[0], predicted[i])
        np.testing.assert_array_equal(
            clf.certify(X_test[i : i + 1], Y_test[i : i + 1], RADII).sizes[0], sizes[i]
        )
    # a certificate at T = 0 never claims more true labels than predict(x) holds
    hits = (predicted.astype(bool) & Y_test.astype(bool)).sum(axis=1)
    assert (sizes[:, 0] <= hits).all()


@pytest.mark.parametrize(
    "kind, base",
    [("dpa", "linear-head"), ("dpa", "net"), ("bagging", "linear-head"), ("bagging", "mlp-head")],
)
def test_stacked_votes_equal_the_base_models_votes(kind, base, data):
    """The stacked heads and the per-model view break ties the same way."""
    _, _, X_test, _ = data
    clf = _fitted(kind, base, "auto", data)
    assert clf.stacked_models_ is not None
    by_model = sum(
        model.top_labels(X_test, clf.k_base).astype(np.int64) for model in clf.estimators_
    )
    np.testing.assert_array_equal(by_model, _counts(clf, X_test))


@pytest.mark.parametrize("base", ["linear-head", "mlp-head", "net"])
def test_dpa_auto_and_one_by_one_agree(base, data):
    """DPA trains the same models either way; the votes are the same, ties included."""
    _, _, X_test, _ = data
    np.testing.assert_array_equal(
        _counts(_fitted("dpa", base, "auto", data), X_test),
        _counts(_fitted("dpa", base, False, data), X_test),
    )


@pytest.mark.parametrize(
    "kind, base",
    [("dpa", "linear-head"), ("dpa", "mlp-head"), ("bagging", "linear-head"), ("bagging", "net")],
)
def test_stacked_scores_are_the_same_bits_in_any_batch(kind, base, data):
    """Not only exact ties: every score of an input is the same float alone and in a
    batch (fixed-shape products), so near ties cannot flip with the batch either."""
    _, _, X_test, _ = data
    heads = _fitted(kind, base, "auto", data).stacked_models_
    batch = heads.decision_function(X_test, as_tensor=True)
    for i in (0, 17, len(X_test) - 1):
        alone = heads.decision_function(X_test[i : i + 1], as_tensor=True)[:, 0]
        assert bool((alone == batch[:, i]).all())
    order = np.random.default_rng(1).permutation(len(X_test))
    assert bool((heads.decision_function(X_test[order], as_tensor=True) == batch[:, order]).all())


def test_linear_head_scores_are_the_same_bits_in_any_batch(data):
    X, Y, X_test, _ = data
    head = LinearHead(hidden=8, epochs=5, random_state=0).fit(X[:100], Y[:100])
    batch = head.decision_function(X_test)
    alone = np.concatenate([head.decision_function(X_test[i : i + 1]) for i in range(len(X_test))])
    np.testing.assert_array_equal(alone, batch)
