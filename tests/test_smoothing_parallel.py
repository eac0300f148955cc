"""Sharded sampling: n_jobs (any joblib backend), devices, and the device memory bound."""

import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify.smoothing._parallel import _shards, _worker_counts
from sklearn_certify.smoothing._sampling import sample_label_counts

from .test_sampling import N_CLASSES, N_FEATURES, _linear


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, N_FEATURES)).astype(np.float32)
    Y = (rng.rand(30, N_CLASSES) < 0.4).astype(int)
    return X, Y


def _clf(base=None, **params):
    base = _linear() if base is None else base
    # A torch module is used as already trained: training noise does not apply to it.
    params = dict(
        sigma=1.0,
        k=2,
        n_draws=60,
        batch_size=50,
        random_state=0,
        train_noise=not isinstance(base, torch.nn.Module),
        **params,
    )
    return SmoothedMultiLabelClassifier(base, **params)


@pytest.fixture(scope="module")
def reference(data):
    X, Y = data
    return _clf().fit(X, Y).predict_proba(X)


def test_shards_are_consecutive_and_cover_the_inputs():
    assert _shards(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert _shards(2, 5) == [(0, 1), (1, 2)]
    assert _shards(0, 2) == []


@pytest.mark.parametrize("backend", [pytest.param("loky", marks=pytest.mark.slow), "threading"])
def test_n_jobs_gives_the_counts_of_one_process(data, reference, backend):
    X, Y = data
    clf = _clf(n_jobs=2).fit(X, Y)
    with joblib.parallel_backend(backend):
        np.testing.assert_array_equal(clf.predict_proba(X), reference)
        result = clf.certify(X, Y, [0.0, 0.5])
    np.testing.assert_array_equal(result.counts, np.rint(reference * 60).astype(int))
    one = _clf(n_jobs=1).fit(X, Y)
    np.testing.assert_array_equal(result.sizes, one.certify(X, Y, [0.0, 0.5]).sizes)
    assert clf.score(X, Y) == one.score(X, Y)
    np.testing.assert_array_equal(clf.predict(X), one.predict(X))


def test_n_jobs_with_a_generic_estimator(data):
    X, Y = data
    clf = _clf(RidgeClassifier(), n_jobs=2).fit(X, Y)
    with joblib.parallel_backend("threading"):
        proba = clf.predict_proba(X)
    np.testing.assert_array_equal(proba, _clf(RidgeClassifier()).fit(X, Y).predict_proba(X))


def test_devices_split_the_inputs_over_module_copies(data, reference):
    X, Y = data
    module = _linear()
    module.train()
    clf = _clf(module, devices=["cpu", torch.device("cpu")]).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X), reference)
    assert module.training  # copies were put in eval mode, not the module itself
    np.testing.assert_array_equal(clf.predict_proba(X[:1]), reference[:1])


@pytest.mark.parametrize(
    "devices, match", [([], "at least one device"), (["gpu:7"], "invalid device")]
)
def test_bad_devices_are_clear_errors(data, devices, match):
    X, Y = data
    with pytest.raises(ValueError, match=match):
        _clf(devices=devices).fit(X, Y)


def test_devices_need_a_torch_model(data):
    X, Y = data
    with pytest.raises(ValueError, match="devices needs a torch base model"):
        _clf(RidgeClassifier(), devices=["cpu"]).fit(X, Y)
    clf = _clf(RidgeClassifier()).fit(X, Y).set_params(devices=["cpu"])
    with pytest.raises(ValueError, match="devices needs a torch base model"):
        clf.predict(X)


def test_draw_ranges_add_up(data):
    X, _ = data
    kwargs = dict(n_classes=N_CLASSES, sigma=1.0, k_prime=2, batch_size=37, seed=5)
    whole = sample_label_counts(_linear(), X, n_draws=100, **kwargs)
    head = sample_label_counts(_linear(), X, n_draws=30, **kwargs)
    tail = sample_label_counts(_linear(), X, n_draws=70, first_draw=30, **kwargs)
    np.testing.assert_array_equal(head + tail, whole)


class ThreadCount(torch.nn.Module):
    """Votes for label ``torch.get_num_threads()``: counts show the threads in use."""

    def forward(self, x):
        scores = torch.zeros(len(x), 64)
        scores[:, torch.get_num_threads()] = 1.0
        return scores


def test_a_worker_process_uses_its_share_of_the_cores():
    before = torch.get_num_threads()
    try:
        counts = _worker_counts(
            ThreadCount(),
            np.zeros((1, 2), np.float32),
            0,
            None,
            -1,
            1,
            seed=0,
            n_classes=64,
            sigma=1.0,
            k_prime=1,
            n_draws=5,
            batch_size=5,
        )
        assert counts[0, min(joblib.cpu_count(), 63)] == 5
    finally:
        torch.set_num_threads(before)
    # in the caller's own process (threading backend, n_jobs=1) nothing is changed
    counts = _worker_counts(
        ThreadCount(),
        np.zeros((1, 2), np.float32),
        0,
        None,
        os.getpid(),
        8,
        seed=0,
        n_classes=64,
        sigma=1.0,
        k_prime=1,
        n_draws=5,
        batch_size=5,
    )
    assert counts[0, before] == 5


def test_clean_inputs_on_the_device_are_bounded_by_batch_size(monkeypatch):
    from sklearn_certify.smoothing import _runners

    seen = []
    module_input = _runners.module_input

    def recording(model, X, device, dtype):
        seen.append(len(X))
        return module_input(model, X, device, dtype)

    monkeypatch.setattr(_runners, "module_input", recording)
    X = np.zeros((100, N_FEATURES), np.float32)
    sample_label_counts(
        _linear(),
        X,
        n_classes=N_CLASSES,
        sigma=1.0,
        k_prime=1,
        n_draws=2,
        batch_size=8,
        random_state=0,
    )
    assert max(seen) == 8 and sum(seen) == 100
    seen.clear()  # many draws per input: 32 batches of draws per chunk
    sample_label_counts(
        _linear(),
        X[:10],
        n_classes=N_CLASSES,
        sigma=1.0,
        k_prime=1,
        n_draws=128,
        batch_size=8,
        random_state=0,
    )
    assert seen == [2] * 5


@pytest.mark.slow
def test_dask_cluster_gives_the_counts_of_one_process(data, reference):
    distributed = pytest.importorskip("dask.distributed")
    X, Y = data
    clf = _clf().fit(X, Y)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as stream,
        joblib.parallel_backend("dask"),
    ):
        proba = clf.predict_proba(X)
        sizes = clf.certify(X, Y, [0.0, 0.5]).sizes
        workers = set(client.scheduler_info()["workers"])
    # one task per worker and call, run on the cluster's worker processes
    assert len(stream.data) == 4 and {task["worker"] for task in stream.data} == workers
    np.testing.assert_array_equal(proba, reference)
    np.testing.assert_array_equal(sizes, _clf().fit(X, Y).certify(X, Y, [0.0, 0.5]).sizes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_devices_on_cuda_give_the_counts_of_one_gpu(data):
    X, Y = data
    module = _linear().cuda()
    one = _clf(module).fit(X, Y).predict_proba(X)
    devices = [f"cuda:{i % torch.cuda.device_count()}" for i in range(2)]
    if torch.cuda.device_count() > 1 and (
        torch.cuda.get_device_name(0) != torch.cuda.get_device_name(1)
    ):
        pytest.skip("GPUs of different models may draw different noise")
    np.testing.assert_array_equal(_clf(module, devices=devices).fit(X, Y).predict_proba(X), one)
    assert next(module.parameters()).device.index == 0  # the module itself did not move


@pytest.mark.parametrize(
    "layout",
    [dict(), dict(n_jobs=2), dict(devices=["cpu", "cpu"])],
    ids=["one", "n_jobs", "devices"],
)
def test_each_chunk_is_reported_where_it_is_sampled(data, layout):
    from sklearn_certify.smoothing._parallel import sharded_label_counts

    X, _ = data
    reported = {}
    kwargs = dict(n_classes=N_CLASSES, sigma=1.0, k_prime=1, n_draws=40, batch_size=4)
    with joblib.parallel_backend("threading"):
        counts = sharded_label_counts(
            _linear(),
            X,
            seed=3,
            on_chunk=lambda a, b, c: reported.update({(a, b): c}),
            **layout,
            **kwargs,
        )
    np.testing.assert_array_equal(counts, sample_label_counts(_linear(), X, seed=3, **kwargs))
    ranges = sorted(reported)
    assert max(b - a for a, b in ranges) == 3  # chunk_inputs(4, 40)
    assert [a for a, _ in ranges] == [0] + [b for _, b in ranges[:-1]]
    assert ranges[-1][1] == len(X)
    np.testing.assert_array_equal(np.concatenate([reported[r] for r in ranges]), counts)


class NaNFor(torch.nn.Module):
    """Scores NaN for inputs whose first feature is positive."""

    def forward(self, x):
        scores = torch.zeros(len(x), N_CLASSES)
        scores[x[:, 0] > 100, 1] = float("nan")
        return scores


@pytest.mark.parametrize("generic", [False, True], ids=["torch", "generic"])
@pytest.mark.parametrize(
    "layout", [dict(n_jobs=3), dict(on_chunk=lambda *a: None)], ids=["shards", "chunks"]
)
def test_nan_errors_name_inputs_as_the_caller_numbers_them(generic, layout):
    from sklearn_certify.smoothing._parallel import sharded_label_counts

    from .test_sampling import TorchAdapter

    X = np.zeros((12, N_FEATURES), np.float32)
    X[10, 0] = 1000.0  # input 2 of its shard (of 4) and of its chunk (of 8)
    model = TorchAdapter(NaNFor()) if generic else NaNFor()
    with (
        joblib.parallel_backend("threading"),
        pytest.raises(ValueError, match=r"input\(s\) \[?10\b"),
    ):
        sharded_label_counts(
            model,
            X,
            seed=0,
            n_classes=N_CLASSES,
            sigma=0.1,
            k_prime=1,
            n_draws=20,
            batch_size=8,
            **layout,
        )
