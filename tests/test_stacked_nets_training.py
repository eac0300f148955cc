"""Vectorised training of MultiLabelNet base models reproduces skorch's one-by-one fits."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from skorch.callbacks import EpochScoring

from sklearn_certify import BaggingCertifiedClassifier
from sklearn_certify._stacked import _nets as _stacked_nets
from sklearn_certify._stacked._nets import replication_check, replication_is_exact, train_nets
from sklearn_certify._stacked._skorch_replica import (
    ELEMENTWISE_OPTIMIZERS,
    Blocker,
    net_blocker,
    net_recipe,
)
from sklearn_certify.ensembles._base_model import _ConstantAwareMultiLabel
from sklearn_certify.losses import AsymmetricLoss
from sklearn_certify.nets import MLPModule, MultiLabelNet

N_TRAIN, N_FEATURES, N_CLASSES = 120, 6, 4


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_TRAIN, N_FEATURES)).astype(np.float32)
    Y = X[:, :N_CLASSES] + rng.normal(scale=0.7, size=(N_TRAIN, N_CLASSES)) > 0.3
    Y = Y.astype(np.int64)
    Y[:, 1] = X[:, 1] > 1.7  # rare: constant (all 0) in many small subsamples
    rows = rng.integers(0, N_TRAIN, size=(5, 23))
    rows[0] = rng.choice(np.flatnonzero(Y[:, 1] == 0), size=23)  # label 1 constant there
    return X, Y, rows


def _net(**params):
    return MultiLabelNet(
        **{
            "module": MLPModule,
            "module__hidden": (),
            "max_epochs": 4,
            "batch_size": 5,
            "lr": 0.05,
            **params,
        }
    )


def _skorch_weights(net, X, Y, seed):
    """Module weights of the one-by-one path, and the trained columns."""
    model = _ConstantAwareMultiLabel(net, seed=seed).fit(X, Y)
    if model.estimator_ is None:
        return None, model.columns_
    return [p.detach() for p in model.estimator_.module_.parameters()], model.columns_


def _own_weights(params, i, columns):
    """Net i's stacked weights in torch's layout, output rows of its trained columns."""
    out = []
    n_layers = len(params) // 2
    for layer in range(n_layers):
        W, b = params[2 * layer][i].T, params[2 * layer + 1][i, 0]
        if layer == n_layers - 1:
            W, b = W[columns], b[columns]
        out += [W, b]
    return out


RECIPES = {
    "linear-asl-adam": {},
    "mlp-two-layers": dict(module__hidden=(7, 3)),
    "bce-sgd-momentum": dict(
        criterion=torch.nn.BCEWithLogitsLoss,
        optimizer=torch.optim.SGD,
        optimizer__momentum=0.9,
        optimizer__nesterov=True,
        lr=0.1,
    ),
    "asl-sum-adamw": dict(
        criterion__reduction="sum",
        criterion__gamma_pos=1.0,
        optimizer=torch.optim.AdamW,
        optimizer__weight_decay=0.1,
        module__hidden=4,
        lr=0.01,
    ),
    "full-batch-no-shuffle-rmsprop": dict(
        iterator_train__batch_size=-1,
        iterator_train__shuffle=False,
        optimizer=torch.optim.RMSprop,
        lr=0.01,
    ),
    "bce-sum-adagrad": dict(
        criterion=torch.nn.BCEWithLogitsLoss,
        criterion__reduction="sum",
        optimizer=torch.optim.Adagrad,
        batch_size=100,
    ),
    "default-module-nadam": dict(module=None, module__hidden=(5,), optimizer=torch.optim.NAdam),
}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_vectorised_nets_equal_skorch_fits(data, name):
    """Same init, batches, loss and optimiser: weights agree to float rounding."""
    X, Y, rows = data
    net = _net(**RECIPES[name])
    assert net_blocker(net, X) is None
    seeds = [3, 14, 15, 92, 65]
    params, constant = train_nets(X, Y, rows, net_recipe(net, X), seeds)
    assert [p.shape[0] for p in params] == [5] * len(params)
    checked_constant = 0
    for i, seed in enumerate(seeds):
        expected, columns = _skorch_weights(net, X[rows[i]], Y[rows[i]], seed)
        np.testing.assert_array_equal(np.flatnonzero(torch.isnan(constant[i]).numpy()), columns)
        checked_constant += len(columns) < N_CLASSES
        got = _own_weights(params, i, columns)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-6)
    assert checked_constant  # the fixture makes some columns constant in some subsamples


def test_untrained_output_rows_stay_zero_and_constant_scores(data):
    X, Y, rows = data
    Y = Y.copy()
    Y[:, 3] = 1
    params, constant = train_nets(X, Y, rows, net_recipe(_net(), X), [1, 2, 3, 4, 5])
    assert torch.all(constant[:, 3] == np.inf)
    assert torch.all(params[0][:, :, 3] == 0) and torch.all(params[1][:, :, 3] == 0)


def test_net_with_every_column_constant_is_not_trained(data):
    X, _, rows = data
    Y = np.zeros((N_TRAIN, 3), dtype=np.int64)
    Y[:, 0] = 1
    params, constant = train_nets(X, Y, rows[:2], net_recipe(_net(), X), [1, 2])
    assert constant.tolist() == [[np.inf, -np.inf, -np.inf]] * 2
    assert all(torch.all(p == 0) for p in params)


def test_result_does_not_depend_on_the_block_size(data):
    X, Y, rows = data
    recipe = net_recipe(_net(module__hidden=(4,)), X)
    one, _ = train_nets(X, Y, rows, recipe, [1, 2, 3, 4, 5], models_per_block=1)
    all_, _ = train_nets(X, Y, rows, recipe, [1, 2, 3, 4, 5], models_per_block=5)
    for a, b in zip(one, all_):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_replication_probe_passes_here():
    assert replication_is_exact()


def test_bagging_trains_nets_vectorised_with_the_same_models(data):
    X, Y, _ = data
    net = _net(module__hidden=(5,))
    params = dict(n_estimators=8, max_samples=30, k_base=2, k=2, random_state=0)
    state = torch.random.get_rng_state()
    fast = BaggingCertifiedClassifier(net, **params).fit(X, Y)
    assert torch.equal(state, torch.random.get_rng_state())  # caller's generator untouched
    assert fast.stacked_models_ is not None
    slow = BaggingCertifiedClassifier(net, vectorize=False, **params).fit(X, Y)
    assert slow.stacked_models_ is None
    np.testing.assert_array_equal(fast.seeds_, slow.seeds_)
    counts_fast, n_fast = fast._label_counts(X)
    counts_slow, n_slow = slow._label_counts(X)
    assert n_fast == n_slow == 8
    np.testing.assert_array_equal(counts_fast, counts_slow)
    np.testing.assert_array_equal(fast.predict(X), slow.predict(X))
    # estimators_: the one-by-one path's fitted wrappers, built on access
    assert len(fast.estimators_) == 8
    for i in (0, 7, -1):
        a, b = fast.estimators_[i], slow.estimators_[i]
        assert isinstance(a.estimator_, MultiLabelNet)
        np.testing.assert_array_equal(a.columns_, b.columns_)
        np.testing.assert_array_equal(a.constant_scores_, b.constant_scores_)
        assert a.seed == b.seed
        np.testing.assert_allclose(
            a.decision_function(X), b.decision_function(X), rtol=1e-4, atol=1e-5
        )
    assert fast.estimators_[3] is fast.estimators_[3]
    assert len(fast.estimators_[2:5]) == 3
    with pytest.raises(IndexError):
        fast.estimators_[8]


def test_vectorised_bagging_pickles_and_multiclass_targets(data):
    X, Y, _ = data
    y = Y.argmax(axis=1)
    clf = BaggingCertifiedClassifier(
        _net(), n_estimators=6, max_samples=20, k=1, random_state=1
    ).fit(X, y)
    assert clf.stacked_models_ is not None
    _ = clf.estimators_[0]
    restored = pickle.loads(pickle.dumps(clf))
    assert restored.estimators_._built == {}
    np.testing.assert_array_equal(restored.predict(X), clf.predict(X))
    np.testing.assert_allclose(
        restored.estimators_[0].decision_function(X), clf.estimators_[0].decision_function(X)
    )
    assert set(clf.predict(X)) <= set(clf.classes_)


BLOCKERS = {
    "noise_sigma": dict(noise_sigma=0.1),
    "dropout": dict(module__dropout=0.5),
    "callbacks": dict(callbacks=[EpochScoring("f1_micro")]),
    "train_split": dict(train_split=lambda dataset, y: (dataset, None)),
    "criterion": dict(criterion=torch.nn.MSELoss),
    "criterion instance": dict(criterion=AsymmetricLoss()),
    "reduction none": dict(criterion__reduction="none"),
    "bce pos_weight": dict(
        criterion=torch.nn.BCEWithLogitsLoss, criterion__pos_weight=torch.ones(4)
    ),
    "optimizer": dict(optimizer=torch.optim.LBFGS),
    "optimizer arguments": dict(optimizer__betas=(2.0, 0.9)),
    "param_groups": dict(optimizer__param_groups=[("layers.0.bias", {"lr": 0})]),
    "num_workers": dict(iterator_train__num_workers=1),
    "module": dict(module=torch.nn.Linear, module__in_features=6, module__out_features=4),
    "module sizes": dict(module__n_classes=4),
}


@pytest.mark.parametrize("name", sorted(BLOCKERS))
def test_what_is_not_vectorised_is_trained_one_by_one(data, name):
    X, Y, _ = data
    net = _net(**BLOCKERS[name])
    blocker = net_blocker(net, X)
    # the record names the parameter that was set
    assert blocker.parameter.split("__")[0] in {key.split("__")[0] for key in BLOCKERS[name]}
    assert blocker.reason and str(blocker).startswith(blocker.parameter)
    if name in ("noise_sigma", "dropout", "callbacks", "optimizer"):
        clf = BaggingCertifiedClassifier(net, n_estimators=2, max_samples=20, random_state=0).fit(
            X, Y
        )
        assert clf.stacked_models_ is None and isinstance(clf.estimators_, list)


def test_other_estimators_and_image_modules_are_not_vectorised(data):
    X, _, _ = data
    assert "not a MultiLabelNet" in net_blocker(MLPModule, X).reason

    class Sub(MultiLabelNet):
        pass

    assert net_blocker(Sub(MLPModule), X) == Blocker("estimator", "Sub is not a MultiLabelNet")
    images = np.zeros((4, 1, 8, 8), dtype=np.float32)
    assert net_blocker(MultiLabelNet(), images)  # SmallCNN
    assert net_blocker(MultiLabelNet(MLPModule), images) is None  # flattens the images
    assert set(ELEMENTWISE_OPTIMIZERS) >= {torch.optim.Adam, torch.optim.SGD}


def test_images_with_mlp_module_match(data):
    X, Y, _ = data
    images = np.concatenate([X, X[:, :2]], axis=1).reshape(N_TRAIN, 1, 2, 4)
    net = _net(module__hidden=(3,))
    params = dict(n_estimators=4, max_samples=25, k_base=1, k=2, random_state=3)
    fast = BaggingCertifiedClassifier(net, **params).fit(images, Y)
    assert fast.stacked_models_ is not None
    slow = BaggingCertifiedClassifier(net, vectorize=False, **params).fit(images, Y)
    np.testing.assert_array_equal(fast._label_counts(images)[0], slow._label_counts(images)[0])


def test_falls_back_with_a_warning_when_replication_is_not_exact(data, monkeypatch):
    X, Y, _ = data
    monkeypatch.setattr(
        _stacked_nets, "replication_check", lambda: _stacked_nets.ReplicationReport(False, "test")
    )
    with pytest.warns(RuntimeWarning, match="one by one"):
        clf = BaggingCertifiedClassifier(
            _net(), n_estimators=2, max_samples=20, random_state=0
        ).fit(X, Y)
    assert clf.stacked_models_ is None


def test_verbose_shows_progress(data, capsys):
    X, Y, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm's notebook check
        BaggingCertifiedClassifier(
            _net(), n_estimators=3, max_samples=20, verbose=1, random_state=0
        ).fit(X, Y)
    assert "training base models" in capsys.readouterr().err


def test_the_users_net_is_left_unfitted(data):
    X, Y, _ = data
    net = _net()
    clf = BaggingCertifiedClassifier(net, n_estimators=2, max_samples=20, random_state=0).fit(X, Y)
    assert clf.estimator is net and net.initialized_ is False
    assert clf.estimators_[0].estimator_ is not net
    assert not hasattr(clone(clf), "stacked_models_")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_nets_match_cpu_nets(data):  # pragma: no cover - no GPU in CI
    X, Y, rows = data
    cpu, _ = train_nets(X, Y, rows, net_recipe(_net(), X), [1, 2, 3, 4, 5])
    gpu, _ = train_nets(X, Y, rows, net_recipe(_net(device="cuda"), X), [1, 2, 3, 4, 5])
    for a, b in zip(cpu, gpu):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- DPA
def test_dpa_trains_nets_without_skorch_with_the_same_models(data):
    from sklearn_certify import DPACertifiedClassifier

    X, Y, _ = data
    net = _net(module__hidden=(3,))
    fast = DPACertifiedClassifier(net, n_partitions=150, k_base=2, k=2).fit(X, Y)
    assert fast.stacked_models_ is not None
    assert (fast.partition_sizes_ == 0).any()  # 120 examples, 150 partitions
    slow = DPACertifiedClassifier(net, n_partitions=150, k_base=2, k=2, vectorize=False).fit(X, Y)
    assert slow.stacked_models_ is None
    np.testing.assert_array_equal(fast._label_counts(X)[0], slow._label_counts(X)[0])
    for j in (int(np.argmax(fast.partition_sizes_)), int(np.argmin(fast.partition_sizes_))):
        a, b = fast.estimators_[j], slow.estimators_[j]
        assert a.n_samples_fit_ == b.n_samples_fit_
        np.testing.assert_array_equal(a.constant_scores_, b.constant_scores_)
        assert (a.estimator_ is None) == (b.estimator_ is None)
        np.testing.assert_allclose(
            a.decision_function(X), b.decision_function(X), rtol=1e-4, atol=1e-5
        )


def test_dpa_nets_depend_only_on_their_own_partition_bit_for_bit(data):
    """Adding examples leaves every untouched partition's net bitwise identical."""
    from sklearn_certify import DPACertifiedClassifier

    X, Y, _ = data
    net = _net(module__hidden=(4,))
    clean = DPACertifiedClassifier(net, n_partitions=20, k=2).fit(X, Y)
    rng = np.random.default_rng(5)
    X_add = rng.normal(size=(15, N_FEATURES)).astype(np.float32)
    Y_add = (rng.random((15, N_CLASSES)) < 0.5).astype(np.int64)
    poisoned = DPACertifiedClassifier(net, n_partitions=20, k=2, n_jobs=2).fit(
        np.vstack([X, X_add]), np.vstack([Y, Y_add])
    )
    touched = set(poisoned.partitions_[N_TRAIN:].tolist())
    assert 0 < len(touched) < 20
    untouched = sorted(set(range(20)) - touched)
    for a, b in zip(clean.stacked_models_.params_, poisoned.stacked_models_.params_):
        assert torch.equal(a[untouched], b[untouched])
    torch.testing.assert_close(
        clean.stacked_models_.constant_scores_[untouched],
        poisoned.stacked_models_.constant_scores_[untouched],
        rtol=0,
        atol=0,
        equal_nan=True,
    )


# ------------------------------- where the replica could part from skorch, and its probe
REJECTED = {
    "dataset parameters": dict(dataset__length=10),
    "differentiable": dict(optimizer__differentiable=True),
    "capturable": dict(optimizer__capturable=True),
    "float batch_size": dict(batch_size=16.0),
    "float max_epochs": dict(max_epochs=2.0),
    "batch_size None": dict(iterator_train__batch_size=None),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_configurations_skorch_trains_differently_are_rejected(data, name):
    X, _, _ = data
    assert net_blocker(_net(**REJECTED[name]), X)


def test_device_none_trains_on_the_cpu_like_skorch(data):
    X, Y, rows = data
    net = _net(device=None)
    assert net_blocker(net, X) is None
    params, _ = train_nets(X, Y, rows[:1], net_recipe(net, X), [7])
    expected, columns = _skorch_weights(net, X[rows[0]], Y[rows[0]], 7)
    for a, b in zip(_own_weights(params, 0, columns), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-6)


def test_fitted_models_do_not_follow_later_set_params(data):
    X, Y, _ = data
    clf = BaggingCertifiedClassifier(_net(), n_estimators=3, max_samples=20, random_state=0).fit(
        X, Y
    )
    expected = clf.estimators_[0].decision_function(X)
    clf.set_params(estimator__module__hidden=(9,), estimator__lr=123.0)
    fresh = pickle.loads(pickle.dumps(clf))  # drops the built items
    assert fresh.estimators_[1].estimator_.lr == 0.05
    np.testing.assert_allclose(fresh.estimators_[0].decision_function(X), expected)


def test_a_seeded_fit_may_nest_another(data):
    """An ensemble as the base model of a seeded fit: the torch lock is re-entrant."""
    import threading

    X, Y, _ = data
    inner = BaggingCertifiedClassifier(_net(), n_estimators=2, max_samples=20, k=2, random_state=0)
    outcome = []
    worker = threading.Thread(
        target=lambda: outcome.append(_ConstantAwareMultiLabel(inner, seed=1).fit(X, Y)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=120)
    assert outcome and outcome[0].estimator_.stacked_models_ is not None


def test_the_probe_says_no_when_the_replica_breaks(monkeypatch):
    """A replica that drifts from skorch (here: epochs in reverse order) or fails is
    detected, so the ensembles fall back to one-by-one training."""
    original = _stacked_nets.initial_weights_and_sampler_seeds

    def drifted(*args, **kwargs):
        weights, seeds = original(*args, **kwargs)
        return weights, None if seeds is None else seeds[:, ::-1].copy()

    replication_check.cache_clear()
    try:
        monkeypatch.setattr(_stacked_nets, "initial_weights_and_sampler_seeds", drifted)
        assert not replication_is_exact()
        assert "differ from skorch's fit" in replication_check().reason
        replication_check.cache_clear()
        monkeypatch.setattr(_stacked_nets, "train_nets", None)  # raises TypeError
        report = replication_check()
        assert not report.exact and report.reason.startswith("the replica raised TypeError")
        replication_check.cache_clear()

        def bug(*args, **kwargs):  # not an error a changed torch can cause: propagates
            raise ZeroDivisionError("a bug in the replica")

        monkeypatch.setattr(_stacked_nets, "train_nets", bug)
        with pytest.raises(ZeroDivisionError):
            replication_check()
    finally:
        replication_check.cache_clear()
    monkeypatch.undo()
    assert replication_is_exact()


# ------------------------------------------------------------------- vectorize=False
def _vectorize_cases():
    from sklearn_certify import DPACertifiedClassifier
    from sklearn_certify.heads import LinearHead

    bagging = dict(n_estimators=12, max_samples=25, k_base=2, k=2, random_state=4)
    return {
        "bagging LinearHead": lambda v: BaggingCertifiedClassifier(
            LinearHead(epochs=20, lr=0.05), vectorize=v, **bagging
        ),
        "bagging LinearHead MLP": lambda v: BaggingCertifiedClassifier(
            LinearHead(hidden=4, epochs=20, lr=0.05), vectorize=v, **bagging
        ),
        "bagging MultiLabelNet": lambda v: BaggingCertifiedClassifier(
            _net(module__hidden=(4,)), vectorize=v, **bagging
        ),
        "DPA MultiLabelNet": lambda v: DPACertifiedClassifier(
            _net(), n_partitions=15, k_base=2, k=2, vectorize=v
        ),
    }


@pytest.mark.parametrize("name", sorted(_vectorize_cases()))
def test_vectorize_false_and_auto_give_identical_votes(data, name):
    X, Y, _ = data
    make = _vectorize_cases()[name]
    auto, one_by_one = make("auto").fit(X, Y), make(False).fit(X, Y)
    assert auto.stacked_models_ is not None and one_by_one.stacked_models_ is None
    assert isinstance(one_by_one.estimators_, list)
    np.testing.assert_array_equal(auto._label_counts(X)[0], one_by_one._label_counts(X)[0])
    np.testing.assert_array_equal(
        auto.certify(X[:20], Y[:20], radius=[0, 1, 2]).sizes,
        one_by_one.certify(X[:20], Y[:20], radius=[0, 1, 2]).sizes,
    )


@pytest.mark.parametrize("value", ["yes", True, None, 1])
def test_vectorize_is_validated(data, value):
    X, Y, _ = data
    with pytest.raises(ValueError, match="vectorize"):
        BaggingCertifiedClassifier(vectorize=value, n_estimators=2).fit(X, Y)
