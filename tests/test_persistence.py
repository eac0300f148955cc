"""Pickle and joblib round trips: identical predictions, probabilities and certificates.

Sampling is reproducible with an int ``random_state`` (smoothing draws one seed per call
from it) and the ensembles predict deterministically, so a reloaded estimator must
reproduce every output bit for bit. skorch bases (MultiLabelNet) are included.
"""

from __future__ import annotations

import pickle

import joblib
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.multioutput import MultiOutputClassifier
from sklearn.tree import DecisionTreeClassifier

from sklearn_certify import (
    BaggingCertifiedClassifier,
    CertificationResult,
    DPACertifiedClassifier,
    SmoothedMultiLabelClassifier,
)
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import MultiLabelNet


@pytest.fixture(scope="module")
def data():
    X, X_test, Y, Y_test = make_multidigit(120, 25, random_state=0)
    return X, Y, X_test, Y_test


def tiny_net():
    return MultiLabelNet(max_epochs=2, batch_size=32, module__hidden=(16,))


CASES = {
    "smoothed-ridge": (
        lambda: SmoothedMultiLabelClassifier(
            RidgeClassifier(), sigma=0.25, k=2, n_draws=50, random_state=0
        ),
        [0.0, 0.1, 0.3],
    ),
    "smoothed-net": (
        lambda: SmoothedMultiLabelClassifier(
            tiny_net(), sigma=0.25, k=2, n_draws=50, batch_size=200, random_state=0
        ),
        [0.0, 0.1, 0.3],
    ),
    "bagging-tree": (
        lambda: BaggingCertifiedClassifier(
            DecisionTreeClassifier(max_depth=3),
            n_estimators=8,
            max_samples=40,
            k=2,
            alpha=0.05,
            random_state=0,
        ),
        [0, 1, 2],
    ),
    "bagging-net": (
        lambda: BaggingCertifiedClassifier(
            tiny_net(), n_estimators=3, max_samples=60, k=2, alpha=0.05, random_state=0
        ),
        [0, 1],
    ),
    "dpa-logreg": (
        lambda: DPACertifiedClassifier(
            MultiOutputClassifier(LogisticRegression()), n_partitions=5, k=2
        ),
        [0, 1, 2],
    ),
    "dpa-net": (lambda: DPACertifiedClassifier(tiny_net(), n_partitions=3, k=2), [0, 1]),
    "fa-net": (lambda: DPACertifiedClassifier(tiny_net(), n_partitions=2, spread=2, k=2), [0, 1]),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request, data):
    X, Y, _, _ = data
    make, radii = CASES[request.param]
    return make().fit(X, Y), radii


def _outputs(est, X, Y, radii):
    res = est.certify(X, Y, radii)
    return dict(
        predict=est.predict(X),
        proba=est.predict_proba(X),
        sizes=res.sizes,
        counts=res.counts,
        lower=res.lower,
        upper=res.upper,
        f1=res.f1(),
        score=est.score(X, Y),
    )


def _assert_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if a[key] is None:
            assert b[key] is None, key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _roundtrips(est, tmp_path):
    yield "pickle", pickle.loads(pickle.dumps(est))
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    yield "joblib", joblib.load(path)
    path = tmp_path / "model.joblib.xz"
    joblib.dump(est, path, compress=("xz", 3))
    yield "joblib-xz", joblib.load(path)


def test_roundtrip_identical_outputs(fitted, data, tmp_path):
    est, radii = fitted
    _, _, X_test, Y_test = data
    before = _outputs(est, X_test, Y_test, radii)
    assert before["counts"].sum() > 0
    for how, loaded in _roundtrips(est, tmp_path):
        assert type(loaded) is type(est), how
        assert loaded.get_params(deep=False).keys() == est.get_params(deep=False).keys()
        _assert_identical(before, _outputs(loaded, X_test, Y_test, radii))
    # and the original is unchanged by having been saved
    _assert_identical(before, _outputs(est, X_test, Y_test, radii))


def test_roundtrip_keeps_fitted_attributes(fitted, data):
    est, _ = fitted
    loaded = pickle.loads(pickle.dumps(est))
    for name in ("classes_", "n_classes_", "multiclass_", "input_shape_", "n_features_in_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(est, name), err_msg=name)
    if hasattr(est, "estimators_"):
        assert len(loaded.estimators_) == len(est.estimators_)


def test_skorch_base_is_on_cpu_after_loading(data):
    X, Y, X_test, _ = data
    est = CASES["smoothed-net"][0]().fit(X, Y)
    loaded = joblib.load(_dump(est))
    net = loaded.estimator_
    assert isinstance(net, MultiLabelNet)
    assert str(net.device) == "cpu"
    assert all(p.device.type == "cpu" for p in net.module_.parameters())
    for p, q in zip(net.module_.parameters(), est.estimator_.module_.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(net.predict_proba(X_test), est.estimator_.predict_proba(X_test))


def _dump(est):
    import io

    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    buffer.seek(0)
    return buffer


def test_bare_torch_module_base_roundtrip(data):
    X, Y, X_test, Y_test = data
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(X.shape[1], 10))
    est = SmoothedMultiLabelClassifier(
        module, sigma=0.25, k=2, n_draws=50, train_noise=False, random_state=0
    ).fit(X, Y)
    before = _outputs(est, X_test, Y_test, [0.0, 0.2])
    loaded = pickle.loads(pickle.dumps(est))
    assert loaded.estimator_ is not module
    _assert_identical(before, _outputs(loaded, X_test, Y_test, [0.0, 0.2]))


def test_random_state_instance_continues_identically(data):
    """A RandomState is pickled with its state: the copy draws the same next seeds."""
    X, Y, X_test, Y_test = data
    est = SmoothedMultiLabelClassifier(
        RidgeClassifier(), sigma=0.5, k=2, n_draws=30, random_state=np.random.RandomState(7)
    ).fit(X, Y)
    copy = pickle.loads(pickle.dumps(est))
    for _ in range(2):
        np.testing.assert_array_equal(est.predict_proba(X_test), copy.predict_proba(X_test))
        np.testing.assert_array_equal(
            est.certify(X_test, Y_test, 0.1).sizes, copy.certify(X_test, Y_test, 0.1).sizes
        )


def test_certification_result_roundtrip(fitted, data, tmp_path):
    est, radii = fitted
    _, _, X_test, Y_test = data
    res = est.certify(X_test, Y_test, radii)
    joblib.dump(res, tmp_path / "result.joblib")
    for loaded in (pickle.loads(pickle.dumps(res)), joblib.load(tmp_path / "result.joblib")):
        assert isinstance(loaded, CertificationResult)
        np.testing.assert_array_equal(loaded.sizes, res.sizes)
        assert loaded.to_frame().equals(res.to_frame())
        other = [r + 1 for r in radii]
        np.testing.assert_array_equal(loaded.recertify(other).sizes, res.recertify(other).sizes)


def test_net_saved_with_cuda_device_loads_on_cpu(data):
    """What a GPU-trained skorch base carries (device="cuda") maps to the CPU on load.

    Only the device attribute is simulated here (no GPU); skorch maps the tensors with the
    same map_location (docs/persistence.md).
    """
    from skorch.exceptions import DeviceWarning

    X, Y, X_test, Y_test = data
    est = CASES["smoothed-net"][0]().fit(X, Y)
    before = _outputs(est, X_test, Y_test, [0.0, 0.1])
    est.estimator_.device = "cuda"
    with pytest.warns(DeviceWarning):
        loaded = joblib.load(_dump(est))
    assert str(loaded.estimator_.device) == "cpu"
    _assert_identical(before, _outputs(loaded, X_test, Y_test, [0.0, 0.1]))


def test_weights_only_route(data, tmp_path):
    """save_params, then a bare module rebuilt around the weights: same certificates."""
    X, Y, X_test, Y_test = data
    est = CASES["smoothed-net"][0]().fit(X, Y)
    before = _outputs(est, X_test, Y_test, [0.0, 0.1])
    est.estimator_.save_params(f_params=tmp_path / "net_params.pt")
    net = MultiLabelNet(
        module__n_features=X.shape[1], module__n_classes=10, module__hidden=(16,), device="cpu"
    ).initialize()
    net.load_params(f_params=tmp_path / "net_params.pt")
    rebuilt = SmoothedMultiLabelClassifier(
        net.module_, sigma=0.25, k=2, n_draws=50, train_noise=False, batch_size=200, random_state=0
    )
    rebuilt.fit(X_test[:1], np.ones((1, 10), dtype=int))
    _assert_identical(before, _outputs(rebuilt, X_test, Y_test, [0.0, 0.1]))
