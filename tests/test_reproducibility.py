"""Reproducibility, empty inputs and bounded sampling memory.

Complements (does not repeat) tests/test_sampling.py (same seed -> same counts at the
engine level), tests/test_smoothing.py and tests/test_ensembles.py (bagging across
n_jobs and the threading backend with the deterministic default base; DPA across
n_jobs). Here:

* end-to-end smoothing: two estimators built and fitted independently with the same
  ``random_state`` (a base model trained on noise) give the same model, counts,
  predictions and certificates, and predict agrees with certify;
* ensembles whose base models are themselves random (trees with ``max_features``):
  identical across n_jobs, and across the loky, threading and sequential backends;
* 0-row inputs for all three estimators;
* peak memory of smoothing certify does not grow with ``n_draws`` at a fixed
  ``batch_size`` (numpy path under tracemalloc; torch path by the forward batch sizes).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from joblib import parallel_backend
from sklearn.base import clone
from sklearn.linear_model import RidgeClassifier
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from sklearn_certify import (
    BaggingCertifiedClassifier,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)

C = 5
RADII = [0.0, 0.25, 0.5]
T_RADII = [0, 1, 2]


def _data(n, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, C))
    Y = (X @ W + rng.normal(size=(n, C)) > 0.5).astype(np.int64)
    Y[:C] = np.eye(C, dtype=np.int64)  # no constant column
    Y[C : 2 * C] = 1 - np.eye(C, dtype=np.int64)
    return X, Y


X_TRAIN, Y_TRAIN = _data(150)
X_TEST, Y_TEST = _data(12, seed=1)


# -------------------------------------------------------------------- smoothing
def _smoothing(random_state=0, **params):
    return SmoothedMultiLabelClassifier(
        RidgeClassifier(),
        **{
            "sigma": 0.5,
            "k": 2,
            "n_draws": 300,
            "batch_size": 128,
            "random_state": random_state,
            **params,
        },
    )


def test_smoothing_same_random_state_same_everything():
    a = _smoothing().fit(X_TRAIN, Y_TRAIN)
    b = _smoothing().fit(X_TRAIN, Y_TRAIN)
    # fit: the noisy training copy is drawn from random_state
    np.testing.assert_array_equal(a.estimator_.coef_, b.estimator_.coef_)
    res_a = a.certify(X_TEST, Y_TEST, RADII)
    res_b = b.certify(X_TEST, Y_TEST, RADII)
    np.testing.assert_array_equal(res_a.counts, res_b.counts)
    np.testing.assert_array_equal(res_a.sizes, res_b.sizes)
    np.testing.assert_array_equal(res_a.lower, res_b.lower)
    np.testing.assert_array_equal(a.predict(X_TEST), b.predict(X_TEST))
    np.testing.assert_array_equal(a.predict_proba(X_TEST), b.predict_proba(X_TEST))
    assert a.score(X_TEST, Y_TEST) == b.score(X_TEST, Y_TEST)
    # repeated calls on one estimator, and a clone fitted again, agree too
    np.testing.assert_array_equal(a.certify(X_TEST, Y_TEST, RADII).counts, res_a.counts)
    c = clone(a).fit(X_TRAIN, Y_TRAIN)
    np.testing.assert_array_equal(c.certify(X_TEST, Y_TEST, RADII).sizes, res_a.sizes)
    # predict is the top-k of the very counts certify used
    top = np.argsort(-res_a.counts, axis=1, kind="stable")[:, :2]
    expected = np.zeros_like(Y_TEST)
    np.put_along_axis(expected, top, 1, axis=1)
    np.testing.assert_array_equal(a.predict(X_TEST), expected)


def test_smoothing_other_random_state_other_draws():
    a = _smoothing(0).fit(X_TRAIN, Y_TRAIN)
    b = _smoothing(1).fit(X_TRAIN, Y_TRAIN)
    assert not np.array_equal(a.estimator_.coef_, b.estimator_.coef_)
    assert not np.array_equal(a.predict_proba(X_TEST), b.predict_proba(X_TEST))


def test_smoothing_torch_module_reproducible():
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, C))
    make = dict(sigma=0.5, k=2, n_draws=500, batch_size=96, train_noise=False, random_state=3)
    a = SmoothedMultiLabelClassifier(module, **make).fit(X_TRAIN, Y_TRAIN)
    b = SmoothedMultiLabelClassifier(module, **make).fit(X_TRAIN, Y_TRAIN)
    torch.manual_seed(123)  # the global torch RNG does not enter the sampling
    np.testing.assert_array_equal(
        a.certify(X_TEST, Y_TEST, RADII).counts, b.certify(X_TEST, Y_TEST, RADII).counts
    )
    np.testing.assert_array_equal(a.predict(X_TEST), b.predict(X_TEST))


# -------------------------------------------------------------------- ensembles
def _bagging(**params):
    # A random base model: its random_state comes from the per-model seed.
    base = DecisionTreeClassifier(max_features=0.5, max_depth=3)
    return BaggingCertifiedClassifier(
        base, **{"n_estimators": 24, "max_samples": 40, "k": 2, "random_state": 0, **params}
    )


def _dpa(**params):
    base = ExtraTreeClassifier(max_depth=3)
    return DPACertifiedClassifier(base, **{"n_partitions": 12, "k": 2, **params})


def _fingerprint(clf):
    return (
        clf.predict_proba(X_TEST),
        clf.predict(X_TEST),
        clf.certify(X_TEST, Y_TEST, T_RADII).sizes,
        clf.certify(X_TEST, Y_TEST, T_RADII, attack="deletion").sizes,
    )


@pytest.mark.parametrize("make", [_bagging, _dpa], ids=["bagging", "dpa"])
def test_ensembles_independent_of_n_jobs_and_backend(make):
    ref = _fingerprint(make(n_jobs=1).fit(X_TRAIN, Y_TRAIN))
    runs = {"n_jobs=2 (loky)": make(n_jobs=2).fit(X_TRAIN, Y_TRAIN)}
    with parallel_backend("threading", n_jobs=2):
        runs["threading"] = make().fit(X_TRAIN, Y_TRAIN)
        threading_fp = _fingerprint(runs["threading"])  # counting on threads as well
    with parallel_backend("loky", n_jobs=2):
        runs["loky"] = make().fit(X_TRAIN, Y_TRAIN)
    fitted_seq = runs["loky"]
    for name, clf in runs.items():
        for got, want in zip(_fingerprint(clf), ref):
            np.testing.assert_array_equal(got, want, err_msg=name)
    for got, want in zip(threading_fp, ref):
        np.testing.assert_array_equal(got, want)
    # models fitted in parallel count the same sequentially
    with parallel_backend("sequential"):
        for got, want in zip(_fingerprint(fitted_seq), ref):
            np.testing.assert_array_equal(got, want)


def test_bagging_same_random_state_same_certificates_and_other_differs():
    a = _fingerprint(_bagging().fit(X_TRAIN, Y_TRAIN))
    b = _fingerprint(_bagging().fit(X_TRAIN, Y_TRAIN))
    for got, want in zip(a, b):
        np.testing.assert_array_equal(got, want)
    c = _fingerprint(_bagging(random_state=1).fit(X_TRAIN, Y_TRAIN))
    assert not np.array_equal(a[0], c[0])


# ------------------------------------------------------------------ empty inputs
FITTED = {
    "smoothing": lambda: _smoothing(n_draws=30).fit(X_TRAIN, Y_TRAIN),  # certifies 0.5
    "bagging": lambda: _bagging(n_estimators=4).fit(X_TRAIN, Y_TRAIN),
    "dpa": lambda: _dpa(n_partitions=4).fit(X_TRAIN, Y_TRAIN),
}


@pytest.mark.parametrize("name", list(FITTED))
def test_predict_on_zero_rows(name):
    clf = FITTED[name]()
    X0 = X_TEST[:0]
    assert clf.predict(X0).shape == (0, C)
    assert clf.predict_proba(X0).shape == (0, C)


@pytest.mark.parametrize("name", list(FITTED))
def test_predict_on_zero_rows_multiclass(name):
    y = np.arange(len(X_TRAIN)) % 3 + 10
    params = {"smoothing": {}, "bagging": {"k": 1}, "dpa": {"k": 1}}[name]
    clf = clone(FITTED[name]()).set_params(**params)
    if name == "smoothing":
        clf.set_params(k=1)
    clf.fit(X_TRAIN, y)
    out = clf.predict(X_TEST[:0])
    assert out.shape == (0,) and out.dtype == clf.classes_.dtype
    assert clf.predict_proba(X_TEST[:0]).shape == (0, 3)


@pytest.mark.parametrize("name", list(FITTED))
@pytest.mark.parametrize("scalar", [False, True], ids=["radii", "scalar"])
def test_certify_on_zero_rows(name, scalar):
    clf = FITTED[name]()
    radii = RADII if name == "smoothing" else T_RADII
    radius = radii[0] if scalar else radii
    result = clf.certify(X_TEST[:0], Y_TEST[:0], radius)
    n_radii = 1 if scalar else len(radii)
    assert result.sizes.shape == (0, n_radii)
    assert result.n_true.shape == (0,)
    assert len(result.f1()) == n_radii
    assert result.to_frame().shape[0] == n_radii


@pytest.mark.parametrize("name", list(FITTED))
def test_score_on_zero_rows_does_not_crash(name):
    score = FITTED[name]().score(X_TEST[:0], Y_TEST[:0])
    assert np.isnan(score)  # a mean over no inputs


# ------------------------------------------------------------------ bounded memory
def _peak_bytes(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_smoothing_certify_memory_bounded_by_batch_size_numpy_path():
    """Generic (numpy) sampling path: 10x the draws at the same batch_size must not
    need 10x the memory (numpy allocations are traced by tracemalloc)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 64))
    Y = (rng.random((60, C)) < 0.4).astype(np.int64)
    Y[:C] = np.eye(C, dtype=np.int64)
    X_cert, Y_cert = X[:10], Y[:10]
    peaks = {}
    for n_draws in (2_000, 20_000):
        clf = SmoothedMultiLabelClassifier(
            RidgeClassifier(), sigma=0.5, k=2, n_draws=n_draws, batch_size=500, random_state=0
        ).fit(X, Y)
        clf.certify(X_cert, Y_cert, RADII)  # warm-up: lazy imports, caches
        peaks[n_draws] = _peak_bytes(lambda clf=clf: clf.certify(X_cert, Y_cert, RADII))
    # The copies alone would be 10 * 20000 * 64 * 8 bytes = 100 MB without batching.
    assert peaks[20_000] < 1.5 * peaks[2_000] + 256 * 1024, peaks
    assert peaks[20_000] < 8 * 500 * 64 * 8, peaks  # a few batches' worth at most


class _RowRecorder(torch.nn.Module):
    """Wraps a module and records the largest forward batch."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.max_rows = 0

    def forward(self, x):
        self.max_rows = max(self.max_rows, x.shape[0])
        return self.inner(x)


def test_smoothing_certify_forward_batches_bounded_by_batch_size_torch_path():
    """Torch path (allocations not visible to tracemalloc): every forward pass holds at
    most batch_size noisy copies, whatever n_draws, and numpy-side memory stays flat."""
    torch.manual_seed(0)
    peaks = {}
    for n_draws in (2_000, 20_000):
        module = _RowRecorder(torch.nn.Linear(8, C))
        clf = SmoothedMultiLabelClassifier(
            module,
            sigma=0.5,
            k=2,
            n_draws=n_draws,
            batch_size=512,
            train_noise=False,
            random_state=0,
        )
        clf.fit(X_TRAIN, Y_TRAIN)
        module.max_rows = 0
        peaks[n_draws] = _peak_bytes(lambda clf=clf: clf.certify(X_TEST, Y_TEST, RADII))
        assert 0 < module.max_rows <= 512
    assert peaks[20_000] < 1.5 * peaks[2_000] + 256 * 1024, peaks
