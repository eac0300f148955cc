"""The CUDA code paths, tested on the CPU through their mechanisms.

Resource errors in base models, the devices forked by seeded training, reduced-precision
backbones, determinism settings in joblib workers, pickling of device tensors, block
sizing by memory and the fallback to smaller blocks on out-of-memory errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeClassifier

from sklearn_certify import BaggingCertifiedClassifier, DPACertifiedClassifier
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.ensembles._base_model import _is_resource_error

from ._helpers import repo_module


@pytest.fixture(scope="module")
def digits():
    return make_multidigit(120, 10, random_state=0)


class _FailingOnSomeData(BaseEstimator):
    """A ridge base model whose ``fit`` raises ``error`` on about half of the training sets."""

    def __init__(self, error="oom"):
        self.error = error

    def fit(self, X, Y):
        if int(np.asarray(X).sum() * 1000) % 2:
            raise {
                "oom": torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                "memory": MemoryError(),
                "device": RuntimeError("CUDA error: device-side assert triggered"),
                "data": ValueError("too few samples"),
            }[self.error]
        self.model_ = RidgeClassifier().fit(X, Y)
        return self

    def decision_function(self, X):
        return self.model_.decision_function(X).reshape(len(X), -1)


def _ensembles(error):
    return [
        DPACertifiedClassifier(_FailingOnSomeData(error), n_partitions=8),
        BaggingCertifiedClassifier(
            _FailingOnSomeData(error), n_estimators=8, max_samples=20, random_state=0
        ),
    ]


@pytest.mark.parametrize(
    "error, kind",
    [("oom", torch.OutOfMemoryError), ("memory", MemoryError), ("device", RuntimeError)],
)
@pytest.mark.parametrize("which", [0, 1], ids=["dpa", "bagging"])
def test_resource_errors_propagate_from_fit(digits, error, kind, which):
    X, _, Y, _ = digits
    clf = _ensembles(error)[which]
    with pytest.raises(kind) as info:
        clf.fit(X, Y)
    assert any("n_jobs" in note for note in getattr(info.value, "__notes__", []))


@pytest.mark.parametrize("which", [0, 1], ids=["dpa", "bagging"])
def test_data_errors_still_fall_back(digits, which):
    X, _, Y, _ = digits
    clf = _ensembles("data")[which]
    with pytest.warns(UserWarning, match="could not be fitted"):
        clf.fit(X, Y)
    failed = [m for m in clf.estimators_ if m.fit_error_ is not None]
    assert 0 < len(failed) < len(clf.estimators_)
    assert all(m.fit_error_.startswith("ValueError") for m in failed)


def test_which_errors_are_resource_errors():
    assert _is_resource_error(MemoryError())
    assert _is_resource_error(torch.OutOfMemoryError("x"))
    assert _is_resource_error(RuntimeError("CUDA error: an illegal memory access"))
    assert _is_resource_error(RuntimeError("cuDNN error: CUDNN_STATUS_EXECUTION_FAILED"))
    if hasattr(torch, "AcceleratorError"):
        assert _is_resource_error(torch.AcceleratorError("x"))
    assert not _is_resource_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not _is_resource_error(ValueError("CUDA error"))


# ------------------------------------------------------- seeded training forks used devices
def _no_cuda_allowed(monkeypatch):
    """Pretend two GPUs exist, and fail on anything that would initialise CUDA."""

    def forbidden(*args, **kwargs):
        raise AssertionError("CUDA was initialised")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_rng_state", forbidden)
    monkeypatch.setattr(torch.cuda, "set_rng_state", forbidden)
    monkeypatch.setattr(torch.cuda, "_lazy_init", forbidden)
    monkeypatch.setattr(torch.cuda, "current_device", forbidden)


def _small_net(**params):
    from sklearn_certify.nets import MLPModule, MultiLabelNet

    return MultiLabelNet(
        **{"module": MLPModule, "module__hidden": (8,), "max_epochs": 1, "batch_size": 16, **params}
    )


def test_seeded_cpu_training_does_not_touch_cuda(digits, monkeypatch):
    X, X_test, Y, _ = digits
    expected = DPACertifiedClassifier(_small_net(), n_partitions=3).fit(X, Y).predict_proba(X_test)
    _no_cuda_allowed(monkeypatch)
    clf = DPACertifiedClassifier(_small_net(), n_partitions=3).fit(X, Y)
    np.testing.assert_array_equal(clf.predict_proba(X_test), expected)
    bagging = BaggingCertifiedClassifier(
        _small_net(), n_estimators=3, max_samples=30, random_state=0
    )
    bagging.fit(X, Y)  # the vectorised trainer
    assert clf.estimators_[0].estimator_ is not None  # a skorch net built from the heads


def test_seeded_torch_forks_and_seeds_only_the_devices_in_use(monkeypatch):
    from contextlib import contextmanager

    from sklearn_certify._utils import _torch_seed

    forked, seeded = [], {}

    @contextmanager
    def fake_fork_rng(devices):
        forked.append(list(devices))
        yield

    class FakeGenerator:
        def __init__(self, index):
            self.index = index

        def manual_seed(self, seed):
            seeded[self.index] = seed

    monkeypatch.setattr(torch.random, "fork_rng", fake_fork_rng)
    monkeypatch.setattr(
        torch.cuda,
        "default_generators",
        (FakeGenerator(0), FakeGenerator(1), FakeGenerator(2)),
        raising=False,
    )
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 2)
    state = torch.get_rng_state()
    with _torch_seed.seeded_torch(7, ["cpu", None]):
        pass
    with _torch_seed.seeded_torch(8, ["cuda:1", "cpu"]):
        pass
    with _torch_seed.seeded_torch(9, [torch.device("cuda")]):
        pass
    torch.set_rng_state(state)
    assert forked == [[], [1], [2]]
    assert seeded == {1: 8, 2: 9}


def test_estimator_devices_reads_device_parameters(monkeypatch):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_certify._utils._torch_seed import estimator_devices
    from sklearn_certify.nets import MultiLabelNet

    assert estimator_devices(MultiLabelNet(device="cuda:1")) == ["cuda:1"]
    assert estimator_devices(make_pipeline(StandardScaler(), MultiLabelNet())) == ["cpu"]
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert estimator_devices(RidgeClassifier()) == ["cpu", "cuda:0", "cuda:1"]


# ------------------------------------------------------------ reduced-precision backbones
def _backbone():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
    )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_backbone_gives_float32_features(dtype):
    from sklearn_certify.features import ImageFeatureExtractor

    images = np.random.default_rng(0).random((5, 3, 12, 12), dtype=np.float32)
    reference = ImageFeatureExtractor(_backbone(), image_size=8).fit().transform(images)
    extractor = ImageFeatureExtractor(_backbone().to(dtype), image_size=8, batch_size=2).fit()
    assert next(extractor.backbone_.parameters()).dtype == dtype
    features = extractor.transform(images)
    assert features.dtype == np.float32 and features.shape == (5, 16)
    np.testing.assert_allclose(features, reference, rtol=0.05, atol=0.02)
    assert not np.array_equal(features, reference)  # it did run in reduced precision


def test_weights_are_loaded_on_the_cpu_and_moved_once(tmp_path, monkeypatch):
    from sklearn_certify.features import ImageFeatureExtractor

    path = tmp_path / "w.pt"
    torch.save(_backbone().state_dict(), path)
    calls = []
    load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("map_location"))
        return load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    extractor = ImageFeatureExtractor(_backbone, image_size=8, weights=path).fit()
    assert calls == ["cpu"]
    mean, std = extractor._scale  # built once at fit, on the backbone's device
    assert mean.device == extractor.device_ and tuple(std.shape) == (1, 3, 1, 1)


# ------------------------------------------------- DPA's determinism settings in workers
class _RecordingDeterminism(BaseEstimator):
    """A ridge base model that records torch's determinism settings when it is fitted."""

    def fit(self, X, Y):
        import os

        self.settings_ = (
            torch.are_deterministic_algorithms_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        )
        self.model_ = RidgeClassifier().fit(X, Y)
        return self

    def decision_function(self, X):
        return self.model_.decision_function(X).reshape(len(X), -1)


@pytest.mark.slow  # starts loky workers
def test_dpa_applies_the_callers_determinism_settings_in_loky_workers(digits, monkeypatch):
    X, _, Y, _ = digits
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        clf = DPACertifiedClassifier(_RecordingDeterminism(), n_partitions=4, n_jobs=2)
        clf.fit(X, Y)
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[1:]
    recorded = {model.estimator_.settings_ for model in clf.estimators_}
    assert recorded == {(True, True, False, ":4096:8")}


def test_run_with_determinism_restores_the_workers_own_settings():
    from sklearn_certify._utils._torch_seed import determinism_settings, run_with_determinism

    own = determinism_settings()
    wanted = {
        **own,
        "deterministic": not own["deterministic"],
        "cudnn_benchmark": not own["cudnn_benchmark"],
    }
    seen = run_with_determinism(wanted, determinism_settings)
    assert seen["deterministic"] is wanted["deterministic"]
    assert seen["cudnn_benchmark"] is wanted["cudnn_benchmark"]
    assert determinism_settings() == own
    assert run_with_determinism(None, len, [1, 2]) == 2


# ------------------------------------------------ GPU-trained heads on a CPU-only machine
def _saved_on(obj, device: str):
    """A pickle round trip of ``obj`` as if it had been fitted on ``device``."""
    import pickle

    from sklearn_certify._stacked._models import StackedModels
    from sklearn_certify.heads import LinearHead

    for heads in [o for o in _walk(obj) if isinstance(o, StackedModels)]:
        heads.device_ = torch.device(device)  # what a CUDA fit leaves
    state_of = LinearHead.__getstate__

    def claimed(self):
        state = state_of(self)
        return {**state, "params_device_": device} if "params_" in state else state

    LinearHead.__getstate__ = claimed
    try:
        data = pickle.dumps(obj)
    finally:
        LinearHead.__getstate__ = state_of
    return pickle.loads(data)


def _walk(obj):
    yield obj
    heads = getattr(obj, "stacked_models_", None)
    if heads is not None:
        yield heads
    lazy = getattr(obj, "estimators_", None)
    if hasattr(lazy, "heads"):
        yield lazy.heads


def test_loadable_device_falls_back_to_the_cpu_with_a_warning(monkeypatch):
    from skorch.exceptions import DeviceWarning

    from sklearn_certify._utils._devices import loadable_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert loadable_device("cuda:1") == torch.device("cuda:1")  # restored where it was
    assert loadable_device("cpu") == torch.device("cpu")
    with pytest.warns(DeviceWarning, match="'cuda:2'"):
        assert loadable_device("cuda:2") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceWarning):
        assert loadable_device("cuda") == torch.device("cpu")


def test_heads_pickle_as_cpu_tensors(digits):
    from sklearn_certify._stacked._heads import fit_linear_heads
    from sklearn_certify.heads import LinearHead

    X, X_test, Y, _ = digits
    heads = fit_linear_heads(
        X, Y, [np.arange(0, 60), np.arange(60, 120)], hidden=4, epochs=3, random_state=0
    )
    state = heads.__getstate__()
    assert all(p.device.type == "cpu" for p in state["params_"])
    head = LinearHead(4, epochs=3, random_state=0).fit(X, Y)
    state = head.__getstate__()
    assert state["params_device_"] == "cpu"
    assert all(p.device.type == "cpu" for p in state["params_"])


@pytest.mark.parametrize("kind", ["linear_head", "ensemble", "net_ensemble"])
def test_cuda_saved_heads_load_on_the_cpu(digits, kind):
    from skorch.exceptions import DeviceWarning

    from sklearn_certify.heads import LinearHead

    X, X_test, Y, _ = digits
    if kind == "linear_head":
        model = LinearHead(4, epochs=3, random_state=0).fit(X, Y)
        expected = model.decision_function(X_test)
    else:
        base = LinearHead(epochs=3) if kind == "ensemble" else _small_net()
        model = BaggingCertifiedClassifier(
            base, n_estimators=4, max_samples=30, random_state=0
        ).fit(X, Y)
        assert model.stacked_models_ is not None
        if kind == "net_ensemble":
            model.estimators_.estimator.set_params(device="cuda:0")
        expected = model.predict_proba(X_test)
    with warnings.catch_warnings(record=True) as caught:  # skorch's own warn too
        warnings.simplefilter("always", DeviceWarning)
        loaded = _saved_on(model, "cuda:0")
    assert any("'cuda:0'" in str(w.message) for w in caught)
    if kind == "linear_head":
        assert loaded.params_[0].device.type == "cpu"
        np.testing.assert_array_equal(loaded.decision_function(X_test), expected)
        return
    assert loaded.stacked_models_.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.predict_proba(X_test), expected)
    net = loaded.estimators_[0].estimator_  # a base model built or stored on the CPU
    assert (
        next(
            iter(net.module_.parameters()) if kind == "net_ensemble" else iter(net.params_)
        ).device.type
        == "cpu"
    )


# ------------------------------------------------------- training noise on the device
def test_training_noise_is_drawn_on_the_nets_device():
    from types import SimpleNamespace

    from sklearn_certify.nets import TrainingNoise

    Xi, yi = torch.zeros(4, 3), torch.zeros(4)
    batch = [Xi, yi]
    TrainingNoise(0.5).on_batch_begin(SimpleNamespace(device="meta"), batch, training=True)
    assert batch[0].device.type == "meta" and batch[1] is yi  # moved, then noised there
    assert Xi.abs().sum() == 0  # the CPU tensor was not touched

    torch.manual_seed(0)
    expected = 0.5 * torch.randn(4, 3)
    torch.manual_seed(0)
    batch = [torch.zeros(4, 3), yi]
    TrainingNoise(0.5).on_batch_begin(SimpleNamespace(device="cpu"), batch, training=True)
    torch.testing.assert_close(batch[0], expected, rtol=0, atol=0)  # CPU nets: as before
    clean = [torch.zeros(4, 3), yi]
    TrainingNoise(0.5).on_batch_begin(SimpleNamespace(device="meta"), clean, training=False)
    assert clean[0].device.type == "cpu" and clean[0].abs().sum() == 0


# ---------------------------------------------- block sizing by memory, OOM fallback
GiB = 2**30


def test_block_bytes_match_the_sizes_that_ran_out_of_memory():
    from sklearn_certify._stacked._engine import _model_bytes
    from sklearn_certify.heads import _auto_models_per_batch

    cuda = torch.device("cuda")
    # hidden 1024 on d = 2048, 50 rows per model: 327 models per block by activations
    # alone, about 13-14 GiB with the parameters, gradients and Adam moments
    assert _auto_models_per_batch(cuda, 50, 1024, 2048) == 327
    assert 12 * GiB < 327 * _model_bytes([2048, 1024, 20], 50) < 16 * GiB


def test_gpu_blocks_are_capped_by_the_memory_budget(monkeypatch, digits):
    from dataclasses import replace

    from sklearn_certify._stacked import _engine as _stacked
    from sklearn_certify._stacked import _nets as _stacked_nets
    from sklearn_certify._stacked import _skorch_replica
    from sklearn_certify._stacked._engine import _model_bytes, cap_models_by_memory

    monkeypatch.setattr(
        _stacked, "_memory_budget", lambda device: 4 * GiB if device.type == "cuda" else None
    )
    cuda = torch.device("cuda")
    per_model = _model_bytes([2048, 1024, 20], 50)
    n = cap_models_by_memory(327, cuda, [2048, 1024, 20], 50)
    assert n * per_model <= 4 * GiB < (n + 1) * per_model
    assert cap_models_by_memory(327, torch.device("cpu"), [2048, 1024, 20], 50) == 327
    assert cap_models_by_memory(10, cuda, [10**6, 10**4, 20], 50) == 1  # at least one
    # skorch MLP heads of 512, batches of 16: 2048 nets by activations alone
    X, _, Y, _ = digits
    recipe = replace(
        _skorch_replica.net_recipe(_small_net(module__hidden=(512,), batch_size=16), X), device=cuda
    )
    n_nets = _stacked_nets._models_per_block(recipe, 100, 2048, 20)
    assert n_nets * _model_bytes([2048, 512, 20], 16) <= 4 * GiB
    assert (n_nets + 1) * _model_bytes([2048, 512, 20], 16) > 4 * GiB


def _oom_above(limit, train_block, size_of):
    def train(*args, **kwargs):
        if size_of(*args, **kwargs) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return train_block(*args, **kwargs)

    return train


def test_out_of_memory_falls_back_to_smaller_blocks(monkeypatch, digits):
    from sklearn_certify import heads as _heads
    from sklearn_certify._stacked import _nets as _stacked_nets
    from sklearn_certify._stacked._heads import fit_linear_heads
    from sklearn_certify.heads import LinearHead

    X, X_test, Y, _ = digits
    rows = np.random.default_rng(0).integers(0, len(X), size=(7, 30))
    expected = fit_linear_heads(
        X, Y, rows, hidden=4, epochs=3, random_state=0, models_per_batch=2
    ).vote_counts(X_test, 2)
    bagging = BaggingCertifiedClassifier(
        LinearHead(4, epochs=3), n_estimators=7, max_samples=30, random_state=0
    )
    expected_bagging = bagging.fit(X, Y).predict_proba(X_test)
    recipe = _stacked_nets.net_recipe(_small_net(), X)
    expected_nets, _ = _stacked_nets.train_nets(
        X, Y, rows, recipe, list(range(7)), models_per_block=2
    )
    sizes = []
    monkeypatch.setattr(
        _heads,
        "_train_block",
        _oom_above(2, _heads._train_block, lambda X, Y, rows, sizes_, *a, **k: len(sizes_)),
    )
    monkeypatch.setattr(
        _stacked_nets,
        "_train_block",
        _oom_above(
            2,
            _stacked_nets._train_block,
            lambda X, Y, rows_t, *a, **k: sizes.append(len(rows_t)) or len(rows_t),
        ),
    )

    heads = fit_linear_heads(X, Y, rows, hidden=4, epochs=3, random_state=0, models_per_batch=8)
    np.testing.assert_array_equal(heads.vote_counts(X_test, 2), expected)
    np.testing.assert_array_equal(bagging.fit(X, Y).predict_proba(X_test), expected_bagging)
    params, _ = _stacked_nets.train_nets(X, Y, rows, recipe, list(range(7)), models_per_block=8)
    assert sizes == [7, 4, 2, 2, 2, 1]  # halved until it fits, then the rest
    for got, want in zip(params, expected_nets):
        torch.testing.assert_close(got, want)
    monkeypatch.setattr(
        _heads,
        "_train_block",
        _oom_above(  # not even one model
            0, _heads._train_block, lambda *args, **kwargs: 1
        ),
    )
    with pytest.raises(torch.OutOfMemoryError):
        fit_linear_heads(X, Y, rows, epochs=1, models_per_batch=4)


# ------------------------------------------------------ first-layer layout built once
def test_vote_counts_builds_the_first_layer_layout_once(monkeypatch, digits):
    import pickle

    from sklearn_certify._stacked import _models as _stacked_models
    from sklearn_certify._stacked._heads import fit_linear_heads

    X, X_test, Y, _ = digits
    rows = np.random.default_rng(0).integers(0, len(X), size=(5, 30))
    heads = fit_linear_heads(X, Y, rows, hidden=4, epochs=3, random_state=0)
    expected = heads.vote_counts(X_test, 2, batch_size=3)
    assert expected.sum() == 5 * 2 * len(X_test)
    heads = pickle.loads(pickle.dumps(heads))  # the cached matrix is not pickled
    assert "_first_layer" not in heads.__dict__
    calls = []
    build = _stacked_models.first_layer_matrix
    monkeypatch.setattr(
        _stacked_models, "first_layer_matrix", lambda W: calls.append(W.shape) or build(W)
    )
    np.testing.assert_array_equal(heads.vote_counts(X_test, 2, batch_size=3), expected)
    np.testing.assert_array_equal(heads.vote_counts(X_test, 2, batch_size=2), expected)
    assert len(calls) == 1  # 4 + 5 chunks, one layout copy
    per_model = [heads.top_labels(X_test, 2, i).astype(int) for i in range(5)]
    np.testing.assert_array_equal(np.sum(per_model, axis=0), expected)


# ------------------------------------------------- DPA's LinearHead models, stacked
@pytest.mark.parametrize("hidden", [None, 3])
def test_dpa_stacks_fitted_linear_heads_for_vote_counting(hidden):
    from sklearn_certify.ensembles._base import _count_votes
    from sklearn_certify.heads import LinearHead

    rng = np.random.default_rng(0)
    X, X_test = rng.normal(size=(120, 6)), rng.normal(size=(15, 6))
    Y = np.column_stack(
        [rng.random(120) < 0.5, rng.random(120) < 0.1, np.ones(120, bool), rng.random(120) < 0.3]
    ).astype(int)
    clf = DPACertifiedClassifier(
        LinearHead(hidden, epochs=5, random_state=0), n_partitions=40, k_base=2
    ).fit(X, Y)
    models = clf.estimators_
    assert clf.stacked_models_ is not None and len(clf.stacked_models_) == 40
    kinds = {(m.estimator_ is None, getattr(m.estimator_, "multiclass_", None)) for m in models}
    assert {(True, None), (False, True), (False, False)} <= kinds  # empty, 1-column, more
    by_model = _count_votes(models, X_test, 2)
    np.testing.assert_array_equal(clf.stacked_models_.vote_counts(X_test, 2), by_model)
    np.testing.assert_array_equal(np.rint(clf.predict_proba(X_test) * 40), by_model)
    # the models themselves are those of a one-by-one fit without stacking
    again = DPACertifiedClassifier(
        LinearHead(hidden, epochs=5, random_state=0), n_partitions=40, k_base=2
    ).fit(X, Y)
    for a, b in zip(models, again.estimators_):
        if a.estimator_ is not None:
            for p, q in zip(a.estimator_.params_, b.estimator_.params_):
                torch.testing.assert_close(p, q, rtol=0, atol=0)


# -------------------------------------------------------------- bench/gpu_check.py
def test_gpu_check_finds_the_cuda_tests_and_exits_cleanly_without_cuda(monkeypatch, capsys):
    gpu_check = repo_module("bench/gpu_check.py")
    ids = gpu_check.cuda_test_ids()
    assert "tests/test_nets.py::test_trains_and_predicts_on_cuda" in ids
    assert "tests/test_stacked_nets_training.py::test_cuda_nets_match_cpu_nets" in ids
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA device is available" in capsys.readouterr().out
