"""The memory= cache of fitted base models and the in-process cache of sampled counts."""

import glob
import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from sklearn_certify import SmoothedMultiLabelClassifier, _memory
from sklearn_certify._memory import (
    cache_key,
    cached_call,
    check_cache_memory,
    data_key,
    model_key,
    recent_counts,
)
from sklearn_certify._params import PARAMETER_ROLES, parameter_role
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import certified_scorer
from sklearn_certify.nets import MultiLabelNet
from sklearn_certify.smoothing import _classifier


@pytest.fixture(autouse=True)
def _fresh_recent_counts():
    recent_counts.clear()
    yield
    recent_counts.clear()


@pytest.fixture(scope="module")
def data():
    return make_multidigit(120, 20, random_state=0)


def tiny_net(**kwargs):
    return MultiLabelNet(**{**dict(module__hidden=(16,), max_epochs=2, batch_size=64,
                                   lr=3e-3), **kwargs})


@pytest.fixture
def counters(monkeypatch):
    """Counts of base-model trainings and sampling passes of smoothing."""
    calls = {"fit": 0, "sample": 0}
    train, sample = _classifier.SmoothedMultiLabelClassifier._train, \
        _classifier.sample_label_counts

    def counted_train(*args, **kwargs):
        calls["fit"] += 1
        return train(*args, **kwargs)

    def counted_sample(*args, **kwargs):
        calls["sample"] += 1
        return sample(*args, **kwargs)

    monkeypatch.setattr(_classifier.SmoothedMultiLabelClassifier, "_train", counted_train)
    monkeypatch.setattr(_classifier, "sample_label_counts", counted_sample)
    return calls


# ------------------------------------------------------------------------- the module
def test_keys_hash_content_not_identity():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert model_key(a) == model_key(b)
    with torch.no_grad():
        b.weight[0, 0] += 1e-6
    assert model_key(a) != model_key(b)
    # same weights, another architecture
    c = torch.nn.Sequential(torch.nn.Linear(3, 2))
    c[0].load_state_dict(a.state_dict())
    assert model_key(a) != model_key(c)
    x = np.arange(6.0).reshape(2, 3)
    assert data_key(x) == data_key(x.copy()) == data_key(torch.from_numpy(x))
    assert data_key(x) != data_key(x.astype(np.float32))
    assert data_key(x) != data_key(x.reshape(3, 2))


def test_entries_of_another_cache_format_are_ignored(tmp_path, monkeypatch):
    memory = check_cache_memory(tmp_path)
    calls = []
    key = cache_key("test", 1)
    assert cached_call(memory, "test", key, lambda: calls.append(1) or 7) == 7
    assert cached_call(memory, "test", cache_key("test", 1), lambda: calls.append(1)) == 7
    assert len(calls) == 1
    monkeypatch.setattr(_memory, "CACHE_FORMAT", _memory.CACHE_FORMAT + 1)
    assert cache_key("test", 1) != key
    assert cached_call(memory, "test", cache_key("test", 1), lambda: calls.append(1) or 8) == 8
    monkeypatch.setattr(_memory, "_library_version", lambda: "0.0.0")
    assert cache_key("test", 1) != key


def test_a_corrupt_entry_is_recomputed_never_trusted(tmp_path):
    memory = check_cache_memory(tmp_path)
    key = cache_key("test", "corrupt")
    good = np.arange(4)
    cached_call(memory, "test", key, lambda: good)
    outputs = glob.glob(os.path.join(tmp_path, "**", "output.pkl"), recursive=True)
    assert len(outputs) == 1
    with open(outputs[0], "wb") as f:
        f.write(b"not a pickle")
    value = cached_call(memory, "test", key, lambda: good + 1)  # joblib logs, recomputes
    np.testing.assert_array_equal(value, good + 1)
    # a value that loads but fails the check is recomputed and overwritten too
    joblib.dump(np.zeros(3, dtype=np.float32), outputs[0])
    check = lambda v: v.dtype == np.int64 and v.shape == (4,)  # noqa: E731
    np.testing.assert_array_equal(cached_call(memory, "test", key, lambda: good, check), good)
    np.testing.assert_array_equal(cached_call(memory, "test", key, lambda: -good, check), good)


def test_an_unwritable_memory_fails_at_fit_naming_memory(tmp_path, data):
    X, _, Y, _ = data
    blocker = tmp_path / "file"
    blocker.write_text("")
    clf = SmoothedMultiLabelClassifier(tiny_net(), memory=str(blocker / "cache"),
                                       random_state=0)
    with pytest.raises(ValueError, match=r"memory=.*cannot be used as a cache"):
        clf.fit(X, Y)
    with pytest.raises(ValueError, match="memory"):
        check_cache_memory(42)


# ------------------------------------------------------------------ fitted base models
def test_fits_differing_only_in_free_or_sampling_parameters_train_once(tmp_path, data,
                                                                        counters):
    X, X_test, Y, _ = data
    base = dict(estimator=tiny_net(), sigma=0.25, random_state=0, memory=tmp_path)
    first = SmoothedMultiLabelClassifier(**base, k=1, n_draws=20).fit(X, Y)
    again = SmoothedMultiLabelClassifier(**base, k=3, n_draws=40, alpha=0.01,
                                         method="first-term", batch_size=7).fit(X, Y)
    assert counters["fit"] == 1
    torch.testing.assert_close(first.estimator_.module_.state_dict(),
                               again.estimator_.module_.state_dict(), rtol=0, atol=0)
    # each of these changes training
    for change in (dict(sigma=0.5), dict(random_state=1), dict(train_noise=False),
                   dict(estimator=tiny_net(lr=1e-2))):
        SmoothedMultiLabelClassifier(**{**base, **change}).fit(X, Y)
    SmoothedMultiLabelClassifier(**base).fit(X[1:], Y[1:])
    assert counters["fit"] == 6
    # the loaded model is the trained one: identical counts to an uncached fit
    fresh = SmoothedMultiLabelClassifier(**{**base, "memory": None}, n_draws=40).fit(X, Y)
    recent_counts.clear()
    np.testing.assert_array_equal(fresh.predict_proba(X_test),
                                  again.set_params(batch_size=None).predict_proba(X_test))


def test_nothing_is_cached_without_a_seed(tmp_path, data, counters):
    X, _, Y, _ = data
    for _ in range(2):
        SmoothedMultiLabelClassifier(tiny_net(max_epochs=1), memory=tmp_path).fit(X, Y)
    assert counters["fit"] == 2


def test_grid_search_with_memory_gives_bit_identical_scores(tmp_path, data, counters):
    X, _, Y, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(), random_state=0)
    grid = {"sigma": [0.25, 0.5], "k": [1, 2], "n_draws": [20, 30]}
    scoring = {m: certified_scorer(m, radius=0.25) for m in ("f1", "precision", "recall")}
    results = {}
    for memory in (None, joblib.Memory(str(tmp_path), verbose=0)):
        recent_counts.clear()
        counters.update(fit=0, sample=0)
        search = GridSearchCV(clf.set_params(memory=memory), grid, scoring=scoring,
                              refit="f1", cv=KFold(2)).fit(X, Y)
        results[memory is None] = (search.cv_results_, dict(counters))
    uncached, cached = results[True][0], results[False][0]
    for name in scoring:
        for split in ("split0", "split1"):
            column = f"{split}_test_{name}"
            np.testing.assert_array_equal(uncached[column], cached[column])
    # 8 candidates x 2 folds + refit; with memory one fit per (sigma, fold) + refit.
    # Candidates differing only in k train bitwise identical models, so their counts
    # come from the in-process cache either way: one pass per (sigma, n_draws, fold).
    assert results[True][1] == {"fit": 17, "sample": 8}
    assert results[False][1] == {"fit": 5, "sample": 8}


# ----------------------------------------------------------------- sampled counts, RAM
def test_a_dict_of_scorers_samples_once_per_fold(data, counters):
    X, _, Y, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(), sigma=0.25, k=2, n_draws=30,
                                       random_state=0)
    scoring = {"f1": certified_scorer("f1", radius=0.25),
               "precision_first": certified_scorer("precision", radius=0.1,
                                                   method="first-term"),
               "recall_k1": certified_scorer("recall", radius=0.5, k=1, alpha=0.01)}
    scores = cross_validate(clf, X, Y, scoring=scoring, cv=KFold(3))
    assert counters == {"fit": 3, "sample": 3}
    # each score is the one a lone scorer gives on a fresh sampling pass
    recent_counts.clear()
    lone = cross_validate(clf, X, Y, scoring=scoring["recall_k1"], cv=KFold(3))
    np.testing.assert_array_equal(scores["test_recall_k1"], lone["test_score"])


def test_the_counts_cache_is_never_stale(data, counters):
    X, X_test, Y, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(), sigma=0.25, n_draws=30,
                                       random_state=0).fit(X, Y)
    first = clf.predict_proba(X_test)
    np.testing.assert_array_equal(clf.predict_proba(X_test), first)
    assert counters["sample"] == 1
    clf.predict_proba(X_test[:-1])  # other inputs
    clf.set_params(n_draws=31).predict_proba(X_test)  # another sampling parameter
    assert counters["sample"] == 3
    clf.set_params(n_draws=30)
    with torch.no_grad():  # the model changed in place: another key
        clf.estimator_.module_.state_dict()[next(iter(
            clf.estimator_.module_.state_dict()))].mul_(-1)
    assert not np.array_equal(clf.predict_proba(X_test), first)
    assert counters["sample"] == 4
    # a RandomState instance draws fresh noise on every call: nothing is reused
    clf.set_params(random_state=np.random.RandomState(0))
    clf.predict_proba(X_test)
    clf.predict_proba(X_test)
    assert counters["sample"] == 6


# --------------------------------------------------------------- the parameter table
ALTERNATIVES = {  # another valid value of each SmoothedMultiLabelClassifier parameter
    "estimator": tiny_net(lr=1e-2), "sigma": 0.5, "train_noise": False, "random_state": 1,
    "k_prime": 2, "n_draws": 25, "batch_size": 7, "k": 2, "alpha": 0.01,
    "method": "first-term", "verbose": 0, "n_jobs": 1,
}


def test_every_parameter_has_one_role():
    from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier

    for cls in (SmoothedMultiLabelClassifier, BaggingCertifiedClassifier,
                DPACertifiedClassifier):
        roles = PARAMETER_ROLES[cls.__name__]
        names = [name for group in roles.values() for name in group]
        assert len(names) == len(set(names))
        assert set(cls().get_params(deep=False)) <= set(names)


def test_the_parameter_table_is_what_smoothing_caches(tmp_path, data, counters):
    """Changing a parameter trains again iff the table says "training", and samples
    again iff it says "training" or "counts"."""
    X, X_test, Y, _ = data
    base = dict(estimator=tiny_net(), sigma=0.25, k=1, n_draws=20, random_state=0,
                memory=tmp_path)
    SmoothedMultiLabelClassifier(**base).fit(X, Y).predict_proba(X_test)
    alternatives = {**ALTERNATIVES, "memory": joblib.Memory(str(tmp_path), verbose=0)}
    for name in SmoothedMultiLabelClassifier().get_params(deep=False):
        role = parameter_role("SmoothedMultiLabelClassifier", name)
        before = dict(counters)
        clf = SmoothedMultiLabelClassifier(**{**base, name: alternatives[name]}).fit(X, Y)
        assert counters["fit"] - before["fit"] == (role == "training"), name
        clf.set_params(memory=tmp_path).predict_proba(X_test)
        assert counters["sample"] - before["sample"] == (role != "free"), name
