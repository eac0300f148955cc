"""The memory= cache of fitted base models and the in-process cache of sampled counts."""

import glob
import os
from collections.abc import MutableMapping

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV, KFold, cross_validate

from sklearn_certify import SmoothedMultiLabelClassifier, config_context
from sklearn_certify._params import PARAMETER_ROLES, parameter_role
from sklearn_certify._utils import _memory
from sklearn_certify._utils._keys import model_key
from sklearn_certify._utils._memory import (
    cache_key,
    cached_call,
    check_cache_memory,
    data_key,
    recent_counts,
)
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.metrics import certified_scorer
from sklearn_certify.nets import GaussianDenoiser
from sklearn_certify.smoothing import _training

from ._helpers import tiny_net


@pytest.fixture(autouse=True)
def _counts_cache_on():
    """These tests need the in-process counts cache on: the public switch."""
    with config_context(counts_cache=True):
        yield


@pytest.fixture(scope="module")
def data():
    return make_multidigit(120, 20, random_state=0)


class _Counts(MutableMapping):
    """Counts read from recorded calls when read; setting a count moves its zero."""

    def __init__(self, **read):
        self._read, self._zero = read, dict.fromkeys(read, 0)

    def __getitem__(self, key):
        return self._read[key]() - self._zero[key]

    def __setitem__(self, key, value):
        self._zero[key] = self._read[key]() - value

    def __delitem__(self, key):
        raise TypeError("counters are fixed")

    def __iter__(self):
        return iter(self._read)

    def __len__(self):
        return len(self._read)


@pytest.fixture
def counters(count_calls, sampling_calls):
    """Counts of trainings (base models and denoisers) and sampling passes of smoothing."""
    trains = [count_calls(_training, "train_base_estimator"), count_calls(GaussianDenoiser, "fit")]
    return _Counts(
        fit=lambda: sum(map(len, trains)),
        sample=lambda: len(sampling_calls),
        inputs=lambda: sum(len(args[1]) for args, _ in sampling_calls),
    )


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
    a.register_buffer("scale", torch.ones(2), persistent=False)  # not in state_dict
    before = model_key(a)
    a.scale[0] = 2.0
    assert model_key(a) != before
    # a plain attribute that forward may read (a temperature, say) is content too
    before = model_key(a)
    a.temperature = 2.0
    assert model_key(a) != before
    # tensors, arrays and lists held as plain attributes (a normalization layer's means,
    # as in Cohen et al.'s NormalizeLayer) are content too
    a.means = torch.tensor([0.5, 0.5])
    before = model_key(a)
    a.means = torch.tensor([0.4, 0.5])
    assert model_key(a) != before
    a.offsets = np.zeros(2)
    before = model_key(a)
    a.offsets[0] = 1.0
    assert model_key(a) != before
    a.scales = [1.0, 2.0]
    before = model_key(a)
    a.scales[1] = 3.0
    assert model_key(a) != before
    assert model_key(a.eval()) == model_key(a.train())  # sampling runs in eval mode
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
    clf = SmoothedMultiLabelClassifier(tiny_net(), memory=str(blocker / "cache"), random_state=0)
    with pytest.raises(ValueError, match=r"memory=.*cannot be used as a cache"):
        clf.fit(X, Y)
    with pytest.raises(ValueError, match="memory"):
        check_cache_memory(42)


# ------------------------------------------------------------------ fitted base models
def test_fits_differing_only_in_free_or_sampling_parameters_train_once(tmp_path, data, counters):
    X, X_test, Y, _ = data
    base = dict(estimator=tiny_net(), sigma=0.25, random_state=0, memory=tmp_path)
    first = SmoothedMultiLabelClassifier(**base, k=1, n_draws=20).fit(X, Y)
    again = SmoothedMultiLabelClassifier(
        **base, k=3, n_draws=40, alpha=0.01, method="first-term", batch_size=7
    ).fit(X, Y)
    assert counters["fit"] == 1
    torch.testing.assert_close(
        first.estimator_.module_.state_dict(), again.estimator_.module_.state_dict(), rtol=0, atol=0
    )
    # each of these changes training
    for change in (
        dict(sigma=0.5),
        dict(random_state=1),
        dict(train_noise=False),
        dict(estimator=tiny_net(lr=1e-2)),
    ):
        SmoothedMultiLabelClassifier(**{**base, **change}).fit(X, Y)
    SmoothedMultiLabelClassifier(**base).fit(X[1:], Y[1:])
    assert counters["fit"] == 6
    # the loaded model is the trained one: identical counts to an uncached fit
    fresh = SmoothedMultiLabelClassifier(**{**base, "memory": None}, n_draws=40).fit(X, Y)
    recent_counts.clear()
    np.testing.assert_array_equal(
        fresh.predict_proba(X_test), again.set_params(batch_size=None).predict_proba(X_test)
    )


def test_nothing_is_cached_without_a_seed(tmp_path, data, counters):
    X, _, Y, _ = data
    for _ in range(2):
        SmoothedMultiLabelClassifier(tiny_net(max_epochs=1), memory=tmp_path).fit(X, Y)
    assert counters["fit"] == 2


def test_grid_search_with_memory_gives_bit_identical_scores(tmp_path, data, counters):
    X, _, Y, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(), random_state=0)
    grid = {"sigma": [0.25, 0.5], "k": [1, 2], "n_draws": [20, 30]}
    scoring = {m: certified_scorer(m, radius=0.05) for m in ("f1", "precision", "recall")}
    results = {}
    for memory in (None, joblib.Memory(str(tmp_path), verbose=0)):
        recent_counts.clear()
        counters.update(fit=0, sample=0, inputs=0)
        search = GridSearchCV(
            clf.set_params(memory=memory), grid, scoring=scoring, refit="f1", cv=KFold(2)
        ).fit(X, Y)
        results[memory is None] = (search.cv_results_, {k: counters[k] for k in ("fit", "sample")})
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
    clf = SmoothedMultiLabelClassifier(tiny_net(), sigma=0.25, k=2, n_draws=30, random_state=0)
    scoring = {
        "f1": certified_scorer("f1", radius=0.1),
        "precision_first": certified_scorer("precision", radius=0.1, method="first-term"),
        "recall_k1": certified_scorer("recall", radius=0.1, k=1, alpha=0.01),
    }
    scores = cross_validate(clf, X, Y, scoring=scoring, cv=KFold(3))
    assert (counters["fit"], counters["sample"]) == (3, 3)
    # each score is the one a lone scorer gives on a fresh sampling pass
    recent_counts.clear()
    lone = cross_validate(clf, X, Y, scoring=scoring["recall_k1"], cv=KFold(3))
    np.testing.assert_array_equal(scores["test_recall_k1"], lone["test_score"])


def test_the_counts_cache_is_never_stale(data, counters):
    X, X_test, Y, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(), sigma=0.25, n_draws=30, random_state=0).fit(X, Y)
    first = clf.predict_proba(X_test)
    np.testing.assert_array_equal(clf.predict_proba(X_test), first)
    assert counters["sample"] == 1
    clf.predict_proba(X_test[:-1])  # other inputs
    clf.set_params(n_draws=31).predict_proba(X_test)  # another sampling parameter
    assert counters["sample"] == 3
    clf.set_params(n_draws=30)
    with torch.no_grad():  # the model changed in place: another key
        clf.estimator_.module_.state_dict()[next(iter(clf.estimator_.module_.state_dict()))].mul_(
            -1
        )
    assert not np.array_equal(clf.predict_proba(X_test), first)
    assert counters["sample"] == 4
    # a RandomState instance draws fresh noise on every call: nothing is reused
    clf.set_params(random_state=np.random.RandomState(0))
    clf.predict_proba(X_test)
    clf.predict_proba(X_test)
    assert counters["sample"] == 6


# --------------------------------------------------------------- the parameter table
ALTERNATIVES = {  # another valid value of each SmoothedMultiLabelClassifier parameter
    "estimator": tiny_net(lr=1e-2),
    "sigma": 0.5,
    "train_noise": False,
    "random_state": 1,
    "k_prime": 2,
    "n_draws": 25,
    "batch_size": 7,
    "k": 2,
    "alpha": 0.01,
    "method": "first-term",
    "verbose": 0,
    "n_jobs": 1,
    "devices": ["cpu", "cpu"],
    "denoiser": GaussianDenoiser(max_epochs=1, module__hidden=(8,)),
    "sampling_dtype": "bfloat16",
    "compile": True,
}


def test_every_parameter_has_one_role():
    from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier

    for cls in (SmoothedMultiLabelClassifier, BaggingCertifiedClassifier, DPACertifiedClassifier):
        roles = PARAMETER_ROLES[cls.__name__]
        names = [name for group in roles.values() for name in group]
        assert len(names) == len(set(names))
        assert set(cls().get_params(deep=False)) <= set(names)


def test_the_parameter_table_is_what_smoothing_caches(tmp_path, data, counters, monkeypatch):
    """Changing a parameter trains again iff the table says "training", and samples
    again iff it says "training" or "counts"."""
    from sklearn_certify.smoothing import _runners

    # compile=True through dynamo alone (no code generation: seconds less)
    monkeypatch.setattr(
        _runners, "_torch_compile", lambda module: torch.compile(module, backend="eager")
    )
    X, X_test, Y, _ = data
    base = dict(estimator=tiny_net(), sigma=0.25, k=1, n_draws=20, random_state=0, memory=tmp_path)
    SmoothedMultiLabelClassifier(**base).fit(X, Y).predict_proba(X_test)
    alternatives = {**ALTERNATIVES, "memory": joblib.Memory(str(tmp_path), verbose=0)}
    for name in SmoothedMultiLabelClassifier().get_params(deep=False):
        role = parameter_role("SmoothedMultiLabelClassifier", name)
        before = dict(counters)
        clf = SmoothedMultiLabelClassifier(**{**base, name: alternatives[name]}).fit(X, Y)
        assert counters["fit"] - before["fit"] == (role == "training"), name
        clf.set_params(memory=tmp_path).predict_proba(X_test)
        assert counters["sample"] - before["sample"] == (role != "free"), name


# ---------------------------------------------------------------- sampled counts, disk
KILL_SCRIPT = """
import os, signal, sys
import joblib
from sklearn_certify.smoothing import _parallel
clf, X = joblib.load(sys.argv[1])
sample, calls = _parallel.sample_label_counts, []
def dies_in_the_third_chunk(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return sample(*args, **kwargs)
_parallel.sample_label_counts = dies_in_the_third_chunk
clf.predict_proba(X)
"""


@pytest.fixture(scope="module")
def smoothed(data):
    X, _, Y, _ = data
    return SmoothedMultiLabelClassifier(
        tiny_net(), sigma=0.25, k=2, n_draws=20, batch_size=5, random_state=0
    ).fit(X, Y)


def chunk_files(location):
    return sorted(glob.glob(os.path.join(location, "sklearn_certify", "counts", "*", "*.npz")))


def uncached_counts(clf, X):
    recent_counts.clear()
    memory = clf.memory
    try:
        return clf.set_params(memory=None).predict_proba(X) * clf.n_draws
    finally:
        clf.set_params(memory=memory)
        recent_counts.clear()


def test_an_input_is_sampled_once_across_calls_orders_and_options(
    tmp_path, data, smoothed, counters
):
    _, X_test, _, Y_test = data
    reference = uncached_counts(smoothed, X_test)
    clf = smoothed.set_params(memory=tmp_path)
    counters.update(sample=0, inputs=0)
    first = clf.certify(X_test, Y_test, 0.1)
    assert counters["inputs"] == len(X_test)
    assert len(chunk_files(tmp_path)) == 4  # stored in chunks of batch_size=5 inputs
    np.testing.assert_array_equal(first.counts, reference)
    recent_counts.clear()
    order = np.arange(len(X_test))[::-1]
    again = clf.certify(
        X_test[order], Y_test[order], [0.0, 0.2], k=3, alpha=0.01, method="first-term"
    )
    np.testing.assert_array_equal(again.counts, reference[order])
    np.testing.assert_array_equal(clf.predict_proba(X_test[:7]) * 20, reference[:7])
    assert counters["inputs"] == len(X_test)
    # new inputs only, each duplicate once
    fresh = X_test[:3] + 0.5
    counts = clf.predict_proba(np.concatenate([fresh, X_test, fresh[:1]])) * 20
    assert counters["inputs"] == len(X_test) + 3
    np.testing.assert_array_equal(counts[3:-1], reference)
    np.testing.assert_array_equal(counts[-1], counts[0])
    np.testing.assert_array_equal(counts[:3], uncached_counts(clf, fresh))


def test_damaged_counts_are_sampled_again(tmp_path, data, smoothed, counters):
    _, X_test, _, _ = data
    reference = uncached_counts(smoothed, X_test)
    clf = smoothed.set_params(memory=tmp_path)
    clf.predict_proba(X_test)
    chunks = chunk_files(tmp_path)
    assert len(chunks) == 4
    with open(chunks[0], "wb") as f:  # unreadable
        f.write(b"garbage")
    with np.load(chunks[1]) as f:  # readable, but a row that cannot be counts
        keys, counts = f["keys"], f["counts"].copy()
    counts[0, 0] += 1
    np.savez(chunks[1], keys=keys, counts=counts)
    recent_counts.clear()
    counters.update(inputs=0)
    np.testing.assert_array_equal(clf.predict_proba(X_test) * 20, reference)
    assert counters["inputs"] == 5 + 1


def test_a_killed_certify_resumes_from_the_cache(tmp_path, data, smoothed, counters):
    import subprocess
    import sys

    _, X_test, _, Y_test = data
    reference = uncached_counts(smoothed, X_test)
    clf = smoothed.set_params(memory=str(tmp_path / "cache"))
    job = tmp_path / "job.joblib"
    joblib.dump((clf, X_test), job)
    script = tmp_path / "certify.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, str(script), str(job)], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    counters.update(sample=0, inputs=0)
    result = clf.certify(X_test, Y_test, 0.1)
    assert counters["inputs"] == len(X_test) - 10  # two chunks of 5 were finished
    np.testing.assert_array_equal(result.counts, reference)


# ------------------------------------------------------------------------- ensembles
def test_incremental_dpa_retrains_only_the_changed_partitions(tmp_path, base_model_fits):
    from sklearn.datasets import make_multilabel_classification

    from sklearn_certify import DPACertifiedClassifier

    X, Y = make_multilabel_classification(2005 + 50, 20, n_classes=5, random_state=0)
    X_test, X, Y = X[-50:], X[:-50], Y[:-50]
    clf = DPACertifiedClassifier(n_partitions=100, memory=tmp_path)
    clf.fit(X[:2000], Y[:2000])
    assert len(base_model_fits) == 100
    base_model_fits.clear()
    clf.fit(X, Y)  # 5 examples added
    assert 1 <= len(base_model_fits) <= 5
    fresh = DPACertifiedClassifier(n_partitions=100).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X_test), fresh.predict_proba(X_test))
    np.testing.assert_array_equal(clf.predict(X_test), fresh.predict(X_test))
    base_model_fits.clear()
    clf.set_params(k=1, method="dpa").fit(X[5:], Y[5:])  # 5 removed, free parameters
    assert len(base_model_fits) <= 5


def test_bagging_reuses_models_whose_subsample_and_seed_are_unchanged(tmp_path, base_model_fits):
    from sklearn.datasets import make_multilabel_classification

    from sklearn_certify import BaggingCertifiedClassifier

    X, Y = make_multilabel_classification(300, 10, n_classes=4, random_state=0)
    clf = BaggingCertifiedClassifier(
        n_estimators=20, max_samples=30, k=2, memory=str(tmp_path), random_state=0
    ).fit(X, Y)
    clf.set_params(k=1, alpha=0.01, method="bagging").fit(X, Y)
    assert len(base_model_fits) == 20
    more = clf.set_params(n_estimators=30).fit(X, Y)  # the first 20 seeds are the same
    assert len(base_model_fits) == 30
    fresh = BaggingCertifiedClassifier(n_estimators=30, max_samples=30, k=1, random_state=0).fit(
        X, Y
    )
    np.testing.assert_array_equal(more.predict_proba(X), fresh.predict_proba(X))


def test_the_counts_cache_with_parallel_workers(tmp_path, data, smoothed, counters):
    _, X_test, _, _ = data
    reference = uncached_counts(smoothed, X_test)
    clf = smoothed.set_params(memory=tmp_path, n_jobs=2)
    try:
        with joblib.parallel_config(backend="threading"):
            counters.update(sample=0, inputs=0)
            np.testing.assert_array_equal(clf.predict_proba(X_test) * 20, reference)
            assert len(chunk_files(tmp_path)) == 4  # each worker: 2 chunks of 5
            recent_counts.clear()
            np.testing.assert_array_equal(clf.predict_proba(X_test) * 20, reference)
            assert counters["inputs"] == len(X_test)
    finally:
        clf.set_params(n_jobs=None)
