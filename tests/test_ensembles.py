"""BaggingCertifiedClassifier and DPACertifiedClassifier (PoisoningGuard)."""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from joblib import parallel_backend
from sklearn.base import BaseEstimator, clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import DataConversionWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.bounds import clopper_pearson_bounds
from sklearn_certify.certificates import bagging_certified_size, dpa_certified_size
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.ensembles._base_model import fallback_labels
from sklearn_certify.ensembles._partitions import example_digests, hash_partitions

RADII = np.arange(0, 12)


@pytest.fixture(scope="module")
def digits():
    return make_multidigit(300, 40, random_state=0)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(500, n_features=6, centers=4, cluster_std=3.0, random_state=0)
    return X[:420], X[420:], y[:420], y[420:]


def _counts(clf, X):
    return np.rint(clf.predict_proba(X) * len(clf.estimators_)).astype(np.int64)


def _votes_by_hand(clf, X):
    """Each base model's top-k_base labels, counted directly."""
    counts = np.zeros((len(X), clf.n_classes_), dtype=np.int64)
    for model in clf.estimators_:
        scores = model.decision_function(X)
        top = np.argsort(-scores, axis=1, kind="stable")[:, : clf.k_base]
        np.add.at(counts, (np.arange(len(X))[:, None], top), 1)
    return counts


# --------------------------------------------------------------------- public contract


@pytest.mark.parametrize(
    "cls, expected",
    [
        (
            BaggingCertifiedClassifier,
            dict(
                estimator=None,
                n_estimators=1000,
                max_samples=0.1,
                k_base=1,
                k=3,
                alpha=0.001,
                method="poisoningguard",
                vectorize="auto",
                n_jobs=None,
                memory=None,
                random_state=None,
                verbose=0,
            ),
        ),
        (
            DPACertifiedClassifier,
            dict(
                estimator=None,
                n_partitions=300,
                spread=1,
                k_base=1,
                k=3,
                method="poisoningguard",
                vectorize="auto",
                n_jobs=None,
                memory=None,
                verbose=0,
            ),
        ),
    ],
)
def test_signature_matches_api(cls, expected):
    params = inspect.signature(cls.__init__).parameters
    assert list(params)[1:] == list(expected)
    assert {name: p.default for name, p in params.items() if name != "self"} == expected
    assert params["estimator"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in list(expected)[1:])
    assert clone(cls()).get_params() == expected


def test_lazy_package_exports():
    import sklearn_certify
    from sklearn_certify import ensembles

    assert sklearn_certify.BaggingCertifiedClassifier is ensembles.BaggingCertifiedClassifier
    assert sklearn_certify.DPACertifiedClassifier is ensembles.DPACertifiedClassifier


@pytest.mark.parametrize(
    "make",
    [
        lambda: BaggingCertifiedClassifier(n_estimators=30, max_samples=40, random_state=0),
        lambda: DPACertifiedClassifier(n_partitions=15),
    ],
)
def test_predict_proba_certify_score(digits, make):
    X_train, X_test, Y_train, Y_test = digits
    clf = make().fit(X_train, Y_train)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (40, 10)
    np.testing.assert_allclose(proba.sum(axis=1), clf.k_base)
    pred = clf.predict(X_test)
    assert pred.dtype.kind == "i" and (pred.sum(axis=1) == 3).all()
    np.testing.assert_array_equal(_counts(clf, X_test), _votes_by_hand(clf, X_test))
    result = clf.certify(X_test, Y_test, RADII)
    assert result.sizes.shape == (40, RADII.size)
    assert (np.diff(result.sizes, axis=1) <= 0).all()  # monotone in T
    assert clf.score(X_test, Y_test) == pytest.approx(result.f1()[0])
    assert clf.n_features_in_ == 256 and clf.input_shape_ == (256,)
    with pytest.raises(ValueError, match="X has 10 features, but"):
        clf.predict(X_test[:, :10])


# ------------------------------------------------------------- certificates vs counts


def test_dpa_vote_gap_closed_form(blobs):
    """k = k_base = 1: certified at T iff n_y - max_{c != y} n_c > 2 T~ (T~ = 2T, or T)."""
    X_train, X_test, y_train, y_test = blobs
    clf = DPACertifiedClassifier(n_partitions=25, k=1, k_base=1).fit(X_train, y_train)
    counts = _counts(clf, X_test)
    np.testing.assert_array_equal(counts, _votes_by_hand(clf, X_test))
    assert (counts.sum(axis=1) == 25).all()
    true = np.searchsorted(clf.classes_, y_test)
    rows = np.arange(len(y_test))
    others = counts.copy()
    others[rows, true] = -1
    gap = counts[rows, true] - others.max(axis=1)
    assert gap.max() > 8 and (gap < 0).any()  # a spread of certified radii
    for attack, touched in (("modification", 2 * RADII), ("addition", RADII), ("deletion", RADII)):
        expected = (gap[:, None] > 2 * touched[None, :]).astype(int)
        for method in ("poisoningguard", "dpa"):
            sizes = clf.certify(X_test, y_test, RADII, attack=attack, method=method).sizes
            np.testing.assert_array_equal(sizes, expected)
    # The multi-class prediction is the top-voted class.
    np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[counts.argmax(axis=1)])


def test_bagging_k1_reduces_to_jia_condition(blobs):
    """k = k_b = 1, modification: p_A_lower - p_B_upper > 2 (1 - (1 - T/n)^m), up to rounding."""
    X_train, X_test, y_train, y_test = blobs
    clf = BaggingCertifiedClassifier(
        n_estimators=100, max_samples=20, k=1, k_base=1, alpha=0.01, random_state=0
    ).fit(X_train, y_train)
    result = clf.certify(X_test, y_test, RADII)
    for method in ("poisoningguard", "bagging"):
        np.testing.assert_array_equal(result.recertify(method=method).sizes, result.sizes)
    lower, upper = clopper_pearson_bounds(_counts(clf, X_test), 100, 0.01)
    Y = y_test[:, None] == clf.classes_[None, :]
    p_a = lower[Y]
    p_b = np.where(Y, -1.0, upper).max(axis=1)
    margin = 2 * (1 - (1 - RADII / 420) ** 20)
    lhs = p_a[:, None] - p_b[:, None]
    clear = np.abs(lhs - margin[None, :]) > 1e-9  # away from the rounding boundary
    np.testing.assert_array_equal(result.sizes[clear], (lhs > margin[None, :])[clear])


@pytest.fixture(scope="module")
def fitted_bagging(digits):
    X_train, _, Y_train, _ = digits
    return BaggingCertifiedClassifier(
        n_estimators=60, max_samples=0.2, k_base=2, k=3, alpha=0.01, random_state=1
    ).fit(X_train, Y_train)


@pytest.mark.parametrize("attack", ["modification", "addition", "deletion"])
@pytest.mark.parametrize("method", ["poisoningguard", "bagging"])
def test_bagging_certify_equals_pure_functions(digits, fitted_bagging, attack, method):
    _, X_test, _, Y_test = digits
    clf = fitted_bagging
    assert clf.max_samples_ == 60 and clf.n_train_ == 300
    counts = _counts(clf, X_test)
    lower, upper = clopper_pearson_bounds(counts, 60, 0.01)
    expected = bagging_certified_size(
        lower,
        upper,
        Y_test,
        k=3,
        k_base=2,
        n_train=300,
        max_samples=60,
        radius=RADII,
        attack=attack,
        method=method,
    )
    result = clf.certify(X_test, Y_test, RADII, attack=attack, method=method)
    np.testing.assert_array_equal(result.sizes, expected)
    np.testing.assert_array_equal(result.counts, counts)
    # alpha and k overrides go to the same functions
    lower, upper = clopper_pearson_bounds(counts, 60, 0.1)
    expected = bagging_certified_size(
        lower,
        upper,
        Y_test,
        k=2,
        k_base=2,
        n_train=300,
        max_samples=60,
        radius=3,
        attack=attack,
        method=method,
    )
    result = clf.certify(X_test, Y_test, 3, attack=attack, method=method, alpha=0.1, k=2)
    np.testing.assert_array_equal(result.sizes[:, 0], expected)


@pytest.fixture(scope="module")
def fitted_dpa(digits):
    X_train, _, Y_train, _ = digits
    return DPACertifiedClassifier(n_partitions=30, k_base=2, k=3).fit(X_train, Y_train)


@pytest.mark.parametrize("attack", ["modification", "addition", "deletion"])
@pytest.mark.parametrize("method", ["poisoningguard", "dpa"])
def test_dpa_certify_equals_pure_functions(digits, fitted_dpa, attack, method):
    _, X_test, _, Y_test = digits
    clf = fitted_dpa
    counts = _counts(clf, X_test)
    expected = dpa_certified_size(
        counts, Y_test, k=3, k_base=2, radius=RADII, attack=attack, method=method
    )
    result = clf.certify(X_test, Y_test, RADII, attack=attack, method=method)
    np.testing.assert_array_equal(result.sizes, expected)
    assert result.alpha is None and result.n_draws == 30


def test_certify_option_errors(digits):
    X_train, X_test, Y_train, Y_test = digits
    dpa = DPACertifiedClassifier(n_partitions=5).fit(X_train, Y_train)
    with pytest.raises(TypeError, match="alpha"):  # deterministic: no alpha
        dpa.certify(X_test, Y_test, 1, alpha=0.01)
    with pytest.raises(TypeError, match="deterministic"):
        dpa.certify(X_test, Y_test, 1).recertify(alpha=0.01)
    with pytest.raises(TypeError, match="unexpected"):
        dpa.certify(X_test, Y_test, 1, sigma=0.5)
    with pytest.raises(ValueError, match="method"):
        dpa.certify(X_test, Y_test, 1, method="bagging")
    with pytest.raises(ValueError, match="attack"):
        dpa.certify(X_test, Y_test, 1, attack="flip")
    bag = BaggingCertifiedClassifier(n_estimators=5, random_state=0).fit(X_train, Y_train)
    with pytest.raises(ValueError, match="alpha"):
        bag.certify(X_test, Y_test, 1, alpha=1.5)


# ------------------------------------------------------------------------- hashing


def test_hash_bytes_are_the_documented_ones():
    X = np.array([[1.0, -0.0, 2.5], [3.0, 4.0, 5.0]])
    Y = np.array([[0, 1], [1, 1]])
    expected = [
        hashlib.sha256(
            np.array(row, dtype="<f8").tobytes() + np.array(labels, dtype="<i8").tobytes()
        ).digest()
        for row, labels in (([1.0, 0.0, 2.5], [0, 1]), ([3.0, 4.0, 5.0], [1, 1]))
    ]
    assert example_digests(X, Y) == expected
    parts = [int.from_bytes(d, "big") % 7 for d in expected]
    np.testing.assert_array_equal(hash_partitions(X, Y, 7), parts)
    # dtype, memory order, -0.0 and the label matrix's dtype do not matter
    for X_alt, Y_alt in (
        (X.astype(np.float32), Y.astype(bool)),
        (np.asfortranarray(X), Y.astype(float)),
        (np.abs(X), Y),
    ):
        np.testing.assert_array_equal(hash_partitions(X_alt, Y_alt, 7), parts)
    # 1-D labels are hashed as the label itself: 3 and 3.0 alike, strings as UTF-8
    x = np.array([[1.0, 2.0]])
    three = hashlib.sha256(
        np.array([1.0, 2.0], "<f8").tobytes() + np.array([3], "<i8").tobytes()
    ).digest()
    assert example_digests(x, np.array([3])) == [three]
    assert example_digests(x, np.array([3.0])) == [three]
    cat = hashlib.sha256(np.array([1.0, 2.0], "<f8").tobytes() + b"cat").digest()
    assert example_digests(x, np.array(["cat"])) == [cat]
    assert example_digests(x, np.array([["cat"]])) == [cat]  # a column of labels
    # images: the row is flattened in C order
    img = np.arange(8.0).reshape(1, 2, 2, 2)
    assert example_digests(img, [[1]]) == example_digests(img.reshape(1, -1), [[1]])


def test_hash_stable_under_permutation_and_duplicates(digits):
    X, _, Y, _ = digits
    parts = hash_partitions(X, Y, 50)
    perm = np.random.RandomState(0).permutation(len(X))
    np.testing.assert_array_equal(hash_partitions(X[perm], Y[perm], 50), parts[perm])
    X_dup = np.vstack([X, X[:20], X[:5]])
    Y_dup = np.vstack([Y, Y[:20], Y[:5]])
    parts_dup = hash_partitions(X_dup, Y_dup, 50)
    np.testing.assert_array_equal(parts_dup[:300], parts)
    np.testing.assert_array_equal(parts_dup[300:320], parts[:20])
    np.testing.assert_array_equal(parts_dup[320:], parts[:5])
    # a label change moves the example (the hash covers y too)
    Y_flip = Y.copy()
    Y_flip[:, 0] = 1 - Y_flip[:, 0]
    assert (hash_partitions(X, Y_flip, 50) != parts).mean() > 0.8


def test_dpa_ensemble_invariant_under_row_order_and_dtype(digits):
    X_train, X_test, Y_train, _ = digits
    clf = DPACertifiedClassifier(n_partitions=12, k_base=2).fit(X_train, Y_train)
    perm = np.random.RandomState(1).permutation(len(X_train))
    other = DPACertifiedClassifier(n_partitions=12, k_base=2).fit(
        X_train[perm].astype(np.float64), Y_train[perm].astype(bool)
    )
    np.testing.assert_array_equal(other.partitions_, clf.partitions_[perm])
    np.testing.assert_array_equal(other.partition_sizes_, clf.partition_sizes_)
    np.testing.assert_array_equal(_counts(other, X_test), _counts(clf, X_test))
    np.testing.assert_array_equal(clf.partition_of(X_train, Y_train), clf.partitions_)
    assert (
        DPACertifiedClassifier(n_partitions=12).partition_of(X_train[:3], Y_train[:3]).tolist()
        == clf.partitions_[:3].tolist()
    )  # no fit needed


def test_hash_stable_across_processes(tmp_path, digits):
    X, _, Y, _ = digits
    np.save(tmp_path / "X.npy", X[:50])
    np.save(tmp_path / "Y.npy", Y[:50])
    code = textwrap.dedent(f"""
        import numpy as np
        from sklearn_certify.ensembles._partitions import hash_partitions
        X = np.load({str(tmp_path / "X.npy")!r}); Y = np.load({str(tmp_path / "Y.npy")!r})
        print(",".join(map(str, hash_partitions(X, Y, 300))))
    """)
    # Another interpreter, with a string-hash salt of its own.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    other = [int(v) for v in run.stdout.strip().split(",")]
    assert other == hash_partitions(X[:50], Y[:50], 300).tolist()


# ------------------------------------------------------------------ reproducibility


def test_bagging_reproducible_across_n_jobs_and_backends(digits):
    X_train, X_test, Y_train, Y_test = digits
    params = dict(n_estimators=24, max_samples=30, k_base=2, random_state=42)
    ref = BaggingCertifiedClassifier(n_jobs=1, **params).fit(X_train, Y_train)
    two = BaggingCertifiedClassifier(n_jobs=2, **params).fit(X_train, Y_train)
    with parallel_backend("threading", n_jobs=3):
        threads = BaggingCertifiedClassifier(**params).fit(X_train, Y_train)
    for clf in (two, threads):
        np.testing.assert_array_equal(clf.seeds_, ref.seeds_)
        for a, b in zip(clf.estimators_samples_, ref.estimators_samples_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(clf.predict_proba(X_test), ref.predict_proba(X_test))
        np.testing.assert_array_equal(
            clf.certify(X_test, Y_test, RADII).sizes, ref.certify(X_test, Y_test, RADII).sizes
        )
    other = BaggingCertifiedClassifier(**{**params, "random_state": 7}).fit(X_train, Y_train)
    assert not np.array_equal(other.seeds_, ref.seeds_)


def test_bagging_seeds_do_not_collide_and_are_reproducible():
    from sklearn_certify._utils._random import spawn_seeds

    seeds = spawn_seeds(np.random.RandomState(0), 100_000)
    assert seeds.dtype == np.uint64 and len(np.unique(seeds)) == 100_000
    # 31-bit seeds drawn by randint, the old rule, collide at this size
    old = np.random.RandomState(0).randint(2**31 - 1, size=100_000)
    assert len(np.unique(old)) < 100_000
    np.testing.assert_array_equal(spawn_seeds(np.random.RandomState(0), 100_000), seeds)
    assert (seeds >= 2**32).mean() > 0.99  # all 64 bits used


def test_bagging_seeds_and_samples_reproducible_from_random_state():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    Y = (X[:, :3] > 0).astype(int)
    params = dict(n_estimators=40, max_samples=15, k=2)
    a = BaggingCertifiedClassifier(random_state=3, **params).fit(X, Y)
    b = BaggingCertifiedClassifier(random_state=np.random.RandomState(3), **params).fit(X, Y)
    assert len(np.unique(a.seeds_)) == 40
    np.testing.assert_array_equal(a.seeds_, b.seeds_)
    for rows_a, rows_b in zip(a.estimators_samples_, b.estimators_samples_, strict=True):
        np.testing.assert_array_equal(rows_a, rows_b)
    # the rows are the subsample of each seed's own SeedSequence stream
    expected = np.random.default_rng(np.random.SeedSequence([int(a.seeds_[5]), 1]))
    np.testing.assert_array_equal(a.estimators_samples_[5], expected.integers(0, 60, 15))
    assert len({tuple(rows) for rows in a.estimators_samples_}) == 40
    np.testing.assert_array_equal(a._label_counts(X)[0], b._label_counts(X)[0])


def test_dpa_reproducible_across_n_jobs(digits):
    X_train, X_test, Y_train, _ = digits
    ref = DPACertifiedClassifier(n_partitions=20, n_jobs=1).fit(X_train, Y_train)
    two = DPACertifiedClassifier(n_partitions=20, n_jobs=2).fit(X_train, Y_train)
    np.testing.assert_array_equal(two.partitions_, ref.partitions_)
    np.testing.assert_array_equal(two.predict_proba(X_test), ref.predict_proba(X_test))


class _ScoresZero(BaseEstimator):
    """A base estimator that scores every label 0."""

    def fit(self, X, Y):
        self.n_labels_ = np.asarray(Y).shape[1]
        return self

    def decision_function(self, X):
        return np.zeros((len(X), self.n_labels_))


class _Recorder(_ScoresZero):
    """Remembers which rows (feature 0 holds the row id) it was trained on."""

    def fit(self, X, Y):
        self.seen_ = np.asarray(X)[:, 0].astype(int)
        return super().fit(X, Y)


def test_estimators_samples_are_what_each_model_saw():
    rng = np.random.RandomState(0)
    X = np.column_stack([np.arange(200), rng.randn(200, 3)])
    Y = (rng.rand(200, 4) < 0.5).astype(int)
    clf = BaggingCertifiedClassifier(
        _Recorder(), n_estimators=15, max_samples=0.1, random_state=3
    ).fit(X, Y)
    samples = clf.estimators_samples_
    assert len(samples) == 15 and clf.max_samples_ == 20
    for model, rows in zip(clf.estimators_, samples):
        assert rows.shape == (20,) and rows.min() >= 0 and rows.max() < 200
        np.testing.assert_array_equal(model.estimator_.seen_, rows)
    # drawn with replacement: some subsample repeats a row
    assert any(len(np.unique(rows)) < len(rows) for rows in samples)
    # fraction rounding: half up, at least 1
    assert (
        BaggingCertifiedClassifier(_Recorder(), n_estimators=1, max_samples=0.0001)
        .fit(X, Y)
        .max_samples_
        == 1
    )
    assert (
        BaggingCertifiedClassifier(_Recorder(), n_estimators=1, max_samples=0.0125)
        .fit(X, Y)
        .max_samples_
        == 3
    )  # 2.5 -> 3


def test_dpa_models_see_their_partition_in_digest_order():
    rng = np.random.RandomState(0)
    X = np.column_stack([np.arange(60), rng.randn(60, 2)])
    Y = (rng.rand(60, 3) < 0.5).astype(int)
    clf = DPACertifiedClassifier(_Recorder(), n_partitions=4).fit(X, Y)
    digests = example_digests(X, Y)
    for j, model in enumerate(clf.estimators_):
        rows = np.flatnonzero(clf.partitions_ == j)
        if model.estimator_ is not None:
            expected = sorted(rows, key=lambda i: digests[i])
            np.testing.assert_array_equal(model.estimator_.seen_, expected)


# ----------------------------------------------------------------------- messy data


def _messy_labels(n, rng):
    Y = (rng.rand(n, 5) < 0.3).astype(int)
    Y[:, 1] = 0  # a label nobody has
    Y[:, 4] = 1  # a label everybody has
    return Y


@pytest.mark.parametrize(
    "base", [MultiOutputClassifier(LogisticRegression()), OneVsRestClassifier(LogisticRegression())]
)
def test_constant_columns_with_logistic_regression(base):
    rng = np.random.RandomState(0)
    X = rng.randn(80, 4)
    Y = _messy_labels(80, rng)
    X_test = rng.randn(10, 4)
    with pytest.raises(ValueError):  # what the wrapper protects against
        clone(MultiOutputClassifier(LogisticRegression())).fit(X, Y)
    for clf in (
        BaggingCertifiedClassifier(
            base, n_estimators=8, max_samples=6, k_base=2, k=2, random_state=0
        ),
        DPACertifiedClassifier(base, n_partitions=40, k_base=2, k=2),
    ):
        clf.fit(X, Y)
        counts = _counts(clf, X_test)
        assert (counts.sum(axis=1) == 2 * len(clf.estimators_)).all()
        # The never-present label gets no vote but the fixed ones of empty partitions;
        # a model that saw data scores it -inf and the always-present label +inf.
        empty = [j for j, model in enumerate(clf.estimators_) if model.n_samples_fit_ == 0]
        fixed = sum(
            j in empty and 1 in fallback_labels(j, 2, 5) for j in range(len(clf.estimators_))
        )
        assert (counts[:, 1] == fixed).all()
        for j, model in enumerate(clf.estimators_):
            if j not in empty:
                assert model.constant_scores_[1] == -np.inf
                assert model.constant_scores_[4] == np.inf
        assert clf.certify(X_test, Y[:10], [0, 1]).sizes.shape == (10, 2)


def test_single_example_subsamples_vote_for_their_labels():
    rng = np.random.RandomState(1)
    X = rng.randn(30, 3)
    Y = (rng.rand(30, 4) < 0.4).astype(int)
    Y[0] = 0
    clf = BaggingCertifiedClassifier(
        MultiOutputClassifier(LogisticRegression()),
        n_estimators=25,
        max_samples=1,
        k_base=2,
        k=2,
        random_state=0,
    ).fit(X, Y)
    X_test = rng.randn(5, 3)
    for model, rows in zip(clf.estimators_, clf.estimators_samples_):
        assert model.estimator_ is None
        labels = np.flatnonzero(Y[rows[0]])
        expected = np.zeros(4, dtype=bool)
        # its labels first (lowest index first), then the lowest-index other labels
        order = list(labels) + [j for j in range(4) if j not in labels]
        expected[order[:2]] = True
        assert (model.top_labels(X_test, 2) == expected).all()
    assert (_counts(clf, X_test).sum(axis=1) == 50).all()


def test_empty_partitions_cast_fixed_votes():
    rng = np.random.RandomState(2)
    X = rng.randn(12, 3)
    Y = (rng.rand(12, 5) < 0.5).astype(int)
    clf = DPACertifiedClassifier(
        MultiOutputClassifier(LogisticRegression()), n_partitions=40, k_base=2, k=2
    ).fit(X, Y)
    empty = np.flatnonzero(clf.partition_sizes_ == 0)
    singles = np.flatnonzero(clf.partition_sizes_ == 1)
    assert empty.size >= 28 and singles.size >= 1
    X_test = rng.randn(6, 3)
    for j in empty:
        expected = np.zeros(5, dtype=bool)
        expected[fallback_labels(j, 2, 5)] = True
        assert (clf.estimators_[j].top_labels(X_test, 2) == expected).all()
    counts = _counts(clf, X_test)
    assert (counts.sum(axis=1) == 80).all()
    np.testing.assert_array_equal(counts, _votes_by_hand(clf, X_test))
    sizes = clf.certify(X_test, Y[:6], np.arange(4)).sizes
    np.testing.assert_array_equal(
        sizes, dpa_certified_size(counts, Y[:6], k=2, k_base=2, radius=np.arange(4))
    )


def test_fallback_labels_rotate():
    assert fallback_labels(0, 2, 5).tolist() == [0, 1]
    assert fallback_labels(2, 2, 5).tolist() == [4, 0]
    assert fallback_labels(7, 1, 3).tolist() == [1]


# -------------------------------------------------------------------- multi-class y


@pytest.mark.parametrize(
    "make",
    [
        lambda: BaggingCertifiedClassifier(n_estimators=20, max_samples=50, k=1, random_state=0),
        lambda: DPACertifiedClassifier(n_partitions=10, k=1),
    ],
)
def test_multiclass_string_labels(blobs, make):
    X_train, X_test, y_train, y_test = blobs
    names = np.array(["ant", "bee", "cat", "dog"])
    clf = make().fit(X_train, names[y_train])
    assert clf.multiclass_ and clf.classes_.tolist() == names.tolist()
    pred = clf.predict(X_test)
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert (pred == names[y_test]).mean() > 0.6
    result = clf.certify(X_test, names[y_test], [0, 1])
    assert result.sizes.shape == (len(X_test), 2)
    with pytest.raises(ValueError, match="1-D|2-D|indicator|unknown|not seen"):
        clf.certify(X_test, np.array(["emu"] * len(X_test)), 0)
    with pytest.warns(DataConversionWarning):
        column = clone(clf).fit(X_train, names[y_train][:, None])
    np.testing.assert_array_equal(column.predict_proba(X_test), clf.predict_proba(X_test))


# --------------------------------------------------------------------------- nets


def test_multilabel_net_base_is_reproducible(digits):
    torch = pytest.importorskip("torch")
    from sklearn_certify.nets import MultiLabelNet

    X_train, X_test, Y_train, Y_test = digits
    net = MultiLabelNet(max_epochs=2, batch_size=32)
    state = torch.random.get_rng_state()
    runs = [
        BaggingCertifiedClassifier(
            net, n_estimators=3, max_samples=40, k_base=2, random_state=0
        ).fit(X_train, Y_train)
        for _ in range(2)
    ]
    assert torch.equal(state, torch.random.get_rng_state())  # caller's generator untouched
    with parallel_backend("threading", n_jobs=2):  # seeded trainings must not interleave
        runs.append(
            BaggingCertifiedClassifier(
                net, n_estimators=3, max_samples=40, k_base=2, random_state=0
            ).fit(X_train, Y_train)
        )
    for run in runs[1:]:
        np.testing.assert_array_equal(run.predict_proba(X_test), runs[0].predict_proba(X_test))
    dpa = DPACertifiedClassifier(net, n_partitions=3).fit(X_train, Y_train)
    assert dpa.certify(X_test, Y_test, [0, 1]).sizes.shape == (40, 2)


# ----------------------------------------------------------------------- validation


def test_parameter_validation(digits):
    X_train, _, Y_train, _ = digits
    for bad in (
        dict(n_estimators=0),
        dict(max_samples=1.5),
        dict(max_samples=0),
        dict(method="dpa"),
        dict(alpha=0.0),
        dict(k=0),
        dict(estimator=LinearRegression()),
    ):
        with pytest.raises(InvalidParameterError):
            BaggingCertifiedClassifier(**bad).fit(X_train, Y_train)
    for bad in (dict(n_partitions=0), dict(method="bagging"), dict(k_base=0)):
        with pytest.raises(InvalidParameterError):
            DPACertifiedClassifier(**bad).fit(X_train, Y_train)
    with pytest.raises(ValueError, match="k must be .*at most 10"):
        DPACertifiedClassifier(n_partitions=3, k=11).fit(X_train, Y_train)
    with pytest.raises(ValueError, match="k_base must be .*at most 10"):
        BaggingCertifiedClassifier(n_estimators=2, k_base=11).fit(X_train, Y_train)
    with pytest.raises(ValueError, match="rows"):
        DPACertifiedClassifier(n_partitions=3).fit(X_train[:5], Y_train[:4])
    with pytest.raises(ValueError, match="requires y"):
        DPACertifiedClassifier(n_partitions=3).fit(X_train, None)
    with pytest.raises(ValueError, match="continuous"):
        DPACertifiedClassifier(n_partitions=3).fit(X_train, np.linspace(0, 1, 300))


class _FailsOnFewRows(_ScoresZero):
    """A base estimator that cannot fit fewer than ``min_rows`` examples."""

    def __init__(self, min_rows=5):
        self.min_rows = min_rows

    def fit(self, X, Y):
        if len(X) < self.min_rows:
            raise ValueError("too few rows")
        return super().fit(X, Y)


def test_base_fit_failures_fall_back_to_label_frequencies():
    rng = np.random.RandomState(3)
    X = rng.randn(40, 3)
    Y = (rng.rand(40, 4) < np.array([0.2, 0.9, 0.5, 0.1])).astype(int)
    with pytest.warns(UserWarning, match="could not be fitted.*too few rows"):
        clf = DPACertifiedClassifier(_FailsOnFewRows(5), n_partitions=10, k_base=2).fit(X, Y)
    failed = [j for j, m in enumerate(clf.estimators_) if m.fit_error_ is not None]
    assert failed and all(clf.partition_sizes_[j] < 5 for j in failed)
    for j in failed:
        model = clf.estimators_[j]
        rows = clf.partitions_ == j
        freq = Y[rows].mean(axis=0)
        scores = model.decision_function(X[:3])
        cols = model.columns_
        np.testing.assert_allclose(scores[:, cols], np.tile(freq[cols], (3, 1)))
    assert (_counts(clf, X).sum(axis=1) == 20).all()
    with pytest.raises(ValueError, match="every base model"):
        BaggingCertifiedClassifier(
            _FailsOnFewRows(100), n_estimators=5, max_samples=10, random_state=0
        ).fit(X, Y)


def test_single_fitted_column_of_a_binary_classifier():
    from sklearn.tree import DecisionTreeClassifier

    from sklearn_certify.ensembles._base_model import _ConstantAwareMultiLabel

    rng = np.random.RandomState(4)
    X = rng.randn(30, 2)
    Y = np.zeros((30, 3), dtype=int)
    Y[:, 1] = X[:, 0] > 0  # the only column that varies
    model = _ConstantAwareMultiLabel(DecisionTreeClassifier(max_depth=2)).fit(X, Y)
    scores = model.decision_function(X)
    assert scores.shape == (30, 3) and model.columns_.tolist() == [1]
    np.testing.assert_allclose(scores[:, 1], model.estimator_.predict_proba(X)[:, 1])
    assert model.top_labels(X, 1)[:, 1].all()  # the never-present labels score -inf
