"""The vectorised ensemble trainer: batched fits equal separate fits, per-model data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from sklearn_certify._stacked._engine import loss_grad
from sklearn_certify._stacked._heads import fit_base_models, fit_linear_heads, is_vectorizable
from sklearn_certify._stacked._models import StackedModels
from sklearn_certify._utils._random import SEED_HIGH
from sklearn_certify._utils._scores import top_k_indicator
from sklearn_certify.ensembles._base_model import _ConstantAwareMultiLabel, fit_base_model
from sklearn_certify.heads import LinearHead
from sklearn_certify.losses import AsymmetricLoss

N_TRAIN, N_FEATURES, N_CLASSES = 300, 12, 5
FAST = dict(epochs=30, lr=0.05)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_TRAIN, N_FEATURES)).astype(np.float32)
    W = rng.normal(size=(N_FEATURES, N_CLASSES))
    Y = (X @ W + rng.normal(scale=0.5, size=(N_TRAIN, N_CLASSES)) > 0.5).astype(np.int64)
    index_sets = rng.integers(0, N_TRAIN, size=(16, 40))
    return X, Y, index_sets


def _separate_scores(X, Y, index_sets, heads, X_eval, **params):
    return np.stack(
        [
            LinearHead(random_state=int(heads.seeds_[i]), **params)
            .fit(X[rows], Y[rows])
            .decision_function(X_eval)
            for i, rows in enumerate(index_sets)
        ]
    )


@pytest.mark.parametrize("loss", ["asl", "bce"])
def test_batched_fit_equals_separate_linear_fits(data, loss):
    X, Y, index_sets = data
    heads = fit_linear_heads(
        X,
        Y,
        index_sets,
        loss=loss,
        random_state=0,
        constant_columns="fit",
        models_per_batch=5,
        **FAST,
    )
    separate = _separate_scores(X, Y, index_sets, heads, X[:50], loss=loss, **FAST)
    np.testing.assert_allclose(heads.decision_function(X[:50]), separate, atol=1e-4)


def test_batched_fit_equals_separate_mlp_fits(data):
    X, Y, index_sets = data
    params = dict(hidden=8, epochs=10, lr=0.02)
    heads = fit_linear_heads(
        X, Y, index_sets[:6], random_state=3, constant_columns="fit", models_per_batch=4, **params
    )
    separate = _separate_scores(X, Y, index_sets[:6], heads, X[:50], **params)
    np.testing.assert_allclose(heads.decision_function(X[:50]), separate, atol=1e-4)


def test_result_does_not_depend_on_models_per_batch(data):
    X, Y, index_sets = data
    a = fit_linear_heads(X, Y, index_sets, random_state=0, models_per_batch=1, **FAST)
    b = fit_linear_heads(X, Y, index_sets, random_state=0, models_per_batch=16, **FAST)
    np.testing.assert_allclose(a.decision_function(X[:30]), b.decision_function(X[:30]), atol=1e-4)


@pytest.mark.parametrize("hidden", [None, 6])
def test_fit_base_models_matches_generic_path(data, hidden):
    """fit_base_models reproduces fit_base_model (wrapper around LinearHead, constant
    columns dropped, empty-set fallback) model by model."""
    X, Y, _ = data
    Y = Y.copy()
    Y[:, 4] = 0  # a label nobody has
    rng = np.random.default_rng(1)
    index_sets = [rng.integers(0, N_TRAIN, size=30) for _ in range(6)]
    index_sets[2] = np.flatnonzero(Y[:, 0] == 1)[:10]  # label 0 always present
    index_sets[3] = np.zeros(0, dtype=np.int64)  # an empty partition
    seeds = rng.integers(SEED_HIGH, size=6)
    empty = [np.array([i % N_CLASSES]) for i in range(6)]
    template = LinearHead(hidden, epochs=20, lr=0.05)
    assert is_vectorizable(template) and not is_vectorizable(_ConstantAwareMultiLabel(template))
    heads, models = fit_base_models(template, X, Y, index_sets, seeds, empty)
    scores = heads.decision_function(X[:40])
    for i, rows in enumerate(index_sets):
        generic = fit_base_model(
            template, X[rows], Y[rows], seed=int(seeds[i]), empty_labels=empty[i]
        )
        assert isinstance(models[i], _ConstantAwareMultiLabel)
        assert models[i].seed == generic.seed
        np.testing.assert_array_equal(models[i].columns_, generic.columns_)
        np.testing.assert_array_equal(models[i].constant_scores_, generic.constant_scores_)
        assert models[i].n_samples_fit_ == generic.n_samples_fit_
        assert models[i].fit_error_ is None and generic.fit_error_ is None
        if generic.estimator_ is None:
            assert models[i].estimator_ is None
        else:
            assert models[i].estimator_.get_params() == generic.estimator_.get_params()
        np.testing.assert_allclose(
            models[i].decision_function(X[:40]), generic.decision_function(X[:40]), atol=1e-4
        )
        np.testing.assert_allclose(scores[i], generic.decision_function(X[:40]), atol=1e-4)
        np.testing.assert_array_equal(
            models[i].top_labels(X[:40], 2), generic.top_labels(X[:40], 2)
        )
    assert np.isneginf(models[0].constant_scores_[4])
    assert np.isposinf(models[2].constant_scores_[0])
    assert models[3].estimator_ is None and np.isposinf(models[3].constant_scores_[3])
    with pytest.raises(TypeError, match="LinearHead"):
        fit_base_models(_ConstantAwareMultiLabel(template), X, Y, index_sets, seeds, empty)


def test_per_model_data_respected():
    """A model whose rows all carry label 0 only votes for label 0, the others not."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    Y = np.zeros((200, 3), dtype=np.int64)
    Y[:100, 0] = 1
    Y[100:, 1] = 1
    Y[100:150, 2] = 1
    index_sets = [np.arange(100), np.arange(100, 200), np.arange(100, 150)]
    for constant_columns in ("inf", "fit"):
        heads = fit_linear_heads(
            X, Y, index_sets, epochs=60, lr=0.1, constant_columns=constant_columns
        )
        assert heads.top_labels(X, 1, model=0)[:, 0].all()
        assert heads.top_labels(X, 1, model=1)[:, 1].all()
        assert heads.top_labels(X, 2, model=2)[:, [1, 2]].all()
        counts = heads.vote_counts(X, k_base=1)
        np.testing.assert_array_equal(counts[:, 0], 1)
    constant = heads.constant_scores_.cpu().numpy()
    assert np.isnan(constant).all()  # "fit": nothing fixed
    heads = fit_linear_heads(X, Y, index_sets, epochs=5)
    constant = heads.constant_scores_.cpu().numpy()
    np.testing.assert_array_equal(constant[0], [np.inf, -np.inf, -np.inf])
    np.testing.assert_array_equal(constant[2], [-np.inf, np.inf, np.inf])
    assert np.isnan(constant[1, 2]) and np.isposinf(constant[1, 1])


def test_ragged_and_empty_index_sets(data):
    X, Y, _ = data
    index_sets = [np.arange(5), np.zeros(0, dtype=int), np.arange(50, 120), [7]]
    heads = fit_linear_heads(X, Y, index_sets, empty_labels=[[0], [3], [0], [0]], **FAST)
    np.testing.assert_array_equal(heads.sizes_, [5, 0, 70, 1])
    scores = heads.decision_function(X[:10])
    assert np.isposinf(scores[1, :, 3]).all() and np.isneginf(scores[1][:, [0, 1, 2, 4]]).all()
    votes = heads.top_labels(X[:10], 1, model=1)
    assert votes[:, 3].all() and votes.sum() == 10
    # model 3 saw one example: its labels are fixed to that example's labels
    np.testing.assert_array_equal(np.isposinf(scores[3, 0]), Y[7] == 1)
    # a model on rows 50..119 matches a separate fit on those rows (padding is inert)
    single = LinearHead(**FAST).fit(X[50:120], Y[50:120])
    mask = np.isnan(heads.constant_scores_[2].cpu().numpy())
    np.testing.assert_allclose(
        scores[2][:, mask], single.decision_function(X[:10])[:, mask], atol=1e-4
    )


@pytest.mark.parametrize("k_base", [1, 2, 3])
def test_vote_counts_shape_sum_and_definition(data, k_base):
    X, Y, index_sets = data
    heads = fit_linear_heads(X, Y, index_sets, random_state=0, **FAST)
    counts = heads.vote_counts(X[:37], k_base, batch_size=10)
    assert counts.shape == (37, N_CLASSES) and counts.dtype == np.int64
    np.testing.assert_array_equal(counts.sum(axis=1), len(index_sets) * k_base)
    expected = sum(
        top_k_indicator(np.nan_to_num(s, nan=-np.inf), k_base).astype(np.int64)
        for s in heads.decision_function(X[:37])
    )
    np.testing.assert_array_equal(counts, expected)
    as_tensor = heads.vote_counts(X[:37], k_base, as_tensor=True)
    assert torch.is_tensor(as_tensor) and as_tensor.device.type == "cpu"
    np.testing.assert_array_equal(as_tensor.numpy(), counts)


def test_ties_break_towards_lower_label_index():
    X = np.zeros((4, 3), dtype=np.float32)
    Y = np.ones((4, 4), dtype=np.int64)  # every label always present: all scores +inf
    heads = fit_linear_heads(X, Y, [np.arange(4)] * 3, epochs=1)
    np.testing.assert_array_equal(heads.vote_counts(X, 2)[0], [3, 3, 0, 0])


def test_cpu_device_handling_and_determinism(data):
    X, Y, index_sets = data
    a = fit_linear_heads(
        torch.as_tensor(X), Y, index_sets, hidden=4, device="cpu", random_state=7, **FAST
    )
    b = fit_linear_heads(
        X, Y, index_sets, hidden=4, device=torch.device("cpu"), random_state=7, **FAST
    )
    c = fit_linear_heads(X, Y, index_sets, hidden=4, random_state=8, **FAST)
    assert isinstance(a, StackedModels) and len(a) == len(index_sets)
    assert a.device_.type == "cpu"
    assert all(p.device.type == "cpu" for p in a.params_)
    for p, q in zip(a.params_, b.params_):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.seeds_, b.seeds_)
    assert not np.array_equal(a.seeds_, c.seeds_)
    assert not torch.equal(a.params_[0], c.params_[0])
    # linear heads start at zero: the seed does not matter
    d = fit_linear_heads(X, Y, index_sets, random_state=1, **FAST)
    e = fit_linear_heads(X, Y, index_sets, random_state=2, **FAST)
    assert torch.equal(d.params_[0], e.params_[0])


def test_asl_gradient_matches_autograd():
    torch.manual_seed(0)
    z = torch.cat(
        [torch.randn(2, 3, 400) * 6, torch.linspace(-30, 30, 600).reshape(2, 3, 100)], dim=2
    ).double()
    y = (torch.rand_like(z) < 0.3).double()
    for params in [
        {},
        dict(gamma_pos=1.0, clip=0.1),
        dict(gamma_neg=2.5, clip=0.0),
        dict(gamma_neg=0.0, clip=0.0),
    ]:
        loss = AsymmetricLoss(reduction="none", **params)
        z_grad = z.clone().requires_grad_(True)
        loss(z_grad, y).sum().backward()
        torch.testing.assert_close(loss_grad(loss, z, y), z_grad.grad, atol=1e-12, rtol=0)


def test_callable_loss_uses_autograd(data):
    X, Y, index_sets = data
    loss = AsymmetricLoss(reduction="none")
    a = fit_linear_heads(X, Y, index_sets[:4], loss=lambda z, t: loss(z, t), **FAST)
    b = fit_linear_heads(X, Y, index_sets[:4], loss="asl", **FAST)
    np.testing.assert_allclose(a.decision_function(X[:20]), b.decision_function(X[:20]), atol=1e-4)


def test_linear_head_estimator(data):
    X, Y, _ = data
    head = LinearHead(epochs=80, lr=0.05).fit(X, Y)
    assert head.decision_function(X).shape == (N_TRAIN, N_CLASSES)
    assert head.predict(X).shape == (N_TRAIN, N_CLASSES)
    assert head.score(X, Y) > 0.3  # subset accuracy, well above chance
    proba = head.predict_proba(X)
    assert ((proba > 0) & (proba < 1)).all()
    assert head.coefs_[0].shape == (N_FEATURES, N_CLASSES)
    y = np.argmax(X[:, :3], axis=1)
    multi = LinearHead(epochs=80, lr=0.05).fit(X, y)
    assert multi.score(X, y) > 0.8
    assert set(multi.predict(X)) <= {0, 1, 2}
    restored = pickle.loads(pickle.dumps(head))
    np.testing.assert_array_equal(restored.decision_function(X), head.decision_function(X))


def test_input_validation(data):
    X, Y, index_sets = data
    with pytest.raises(ValueError, match="outside"):
        fit_linear_heads(X, Y, [[0, N_TRAIN]])
    with pytest.raises(ValueError, match="empty"):
        fit_linear_heads(X, Y, [])
    with pytest.raises(ValueError, match="seeds"):
        fit_linear_heads(X, Y, index_sets, random_state=[1, 2])
    with pytest.raises(ValueError, match="constant_columns"):
        fit_linear_heads(X, Y, index_sets, constant_columns="drop")
    with pytest.raises(ValueError, match="loss"):
        fit_linear_heads(X, Y, index_sets, loss="hinge")
    heads = fit_linear_heads(X, Y, index_sets, epochs=1)
    with pytest.raises(ValueError, match="features"):
        heads.vote_counts(X[:, :3], 1)
    with pytest.raises(ValueError, match="k_base"):
        heads.vote_counts(X, N_CLASSES + 1)


def _ensemble_data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    Y = (X[:, :4] + rng.normal(scale=0.5, size=(120, 4)) > 0.3).astype(np.int64)
    return X, Y


def test_bagging_with_linear_head_equals_fit_base_models():
    """Whether or not the ensemble trains LinearHead bases through the vectorised path,
    its votes are those of fit_base_models on the same subsamples and seeds."""
    from sklearn_certify import BaggingCertifiedClassifier
    from sklearn_certify.ensembles._bagging import subsample_indices
    from sklearn_certify.ensembles._base_model import fallback_labels

    X, Y = _ensemble_data()
    head = LinearHead(epochs=15, lr=0.05)
    clf = BaggingCertifiedClassifier(
        head, n_estimators=12, max_samples=25, k_base=2, k=2, random_state=0
    ).fit(X, Y)
    rows = np.stack([subsample_indices(s, len(X), 25) for s in clf.seeds_])
    heads, _ = fit_base_models(
        head, X, Y, rows, clf.seeds_, [fallback_labels(i, 2, 4) for i in range(12)]
    )
    counts, n_models = clf._label_counts(X[:30])
    assert n_models == 12
    np.testing.assert_array_equal(counts, heads.vote_counts(X[:30], 2))


def test_dpa_models_depend_only_on_their_own_partition():
    """DPA trains LinearHead bases one by one: adding examples leaves every untouched
    partition's model bitwise identical (the vectorised trainer pads to the largest
    partition, which would let the others' sizes leak into float rounding)."""
    from sklearn_certify import DPACertifiedClassifier

    X, Y = _ensemble_data()
    head = LinearHead(hidden=16, epochs=15, lr=0.05)
    clean = DPACertifiedClassifier(head, n_partitions=30, k_base=1, k=2).fit(X, Y)
    assert clean.stacked_models_ is not None  # stacked for vote counting only, after training
    rng = np.random.default_rng(9)
    X_add = rng.normal(size=(40, X.shape[1])).astype(np.float32)
    Y_add = (rng.random((40, Y.shape[1])) < 0.5).astype(np.int64)
    poisoned = DPACertifiedClassifier(head, n_partitions=30, k_base=1, k=2).fit(
        np.vstack([X, X_add]), np.vstack([Y, Y_add])
    )
    touched = set(poisoned.partitions_[len(X) :].tolist())
    assert 0 < len(touched) < 30
    for j in set(range(30)) - touched:
        a, b = clean.estimators_[j].estimator_, poisoned.estimators_[j].estimator_
        if a is None:
            assert b is None
            continue
        for wa, wb in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
            np.testing.assert_array_equal(wa, wb)
