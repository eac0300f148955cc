"""Noise-robust training: train_noise="gaussian" | "consistency" | False, ConsistencyLoss,
TrainingNoise with several copies."""

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from skorch import NeuralNet
from skorch.callbacks import Callback

from sklearn_certify import SmoothedMultiLabelClassifier
from sklearn_certify._consistency import consistency_divergence
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.losses import AsymmetricLoss, ConsistencyLoss
from sklearn_certify.nets import MLPModule, TrainingNoise
from sklearn_certify.smoothing._training import DEFAULT_CONSISTENCY, DEFAULT_COPIES

from ._helpers import tiny_net


@pytest.fixture(scope="module")
def data():
    return make_multidigit(400, 60, random_state=0)


def weights(net):
    return [p.detach().clone() for p in net.module_.parameters()]


# ---------------------------------------------------------------------------- the loss
def test_one_copy_without_weight_is_the_base_loss():
    torch.manual_seed(0)
    scores, targets = torch.randn(8, 5), (torch.rand(8, 5) > 0.5).float()
    asl = AsymmetricLoss()
    loss = ConsistencyLoss(asl, copies=1, weight=0.0)
    assert torch.equal(loss(scores, targets), asl(scores, targets))
    # and two copies without weight: the mean of the copies' losses
    two = ConsistencyLoss(asl, copies=2, weight=0.0)
    expected = (asl(scores[:4], targets[:4]) + asl(scores[4:], targets[4:])) / 2
    assert torch.allclose(two(scores, targets), expected)
    # evaluation mode (skorch's validation): the base loss on all rows
    assert torch.equal(two.eval()(scores, targets), asl(scores, targets))


def test_divergences_by_hand():
    z = torch.tensor([[[2.0, -1.0, 0.0]], [[0.0, 1.0, -2.0]]])  # 2 copies, 1 input
    q = 1 / (1 + np.exp(-z.numpy()[:, 0]))
    qbar = q.mean(0)
    bern = np.mean(
        [np.sum(qbar * np.log(qbar / qc) + (1 - qbar) * np.log((1 - qbar) / (1 - qc))) for qc in q]
    )
    assert float(consistency_divergence(z, "bernoulli-kl")) == pytest.approx(bern, rel=1e-5)
    p = np.exp(z.numpy()[:, 0]) / np.exp(z.numpy()[:, 0]).sum(1, keepdims=True)
    pbar = p.mean(0)
    soft = np.mean([np.sum(pbar * np.log(pbar / pc)) for pc in p])
    assert float(consistency_divergence(z, "softmax-kl")) == pytest.approx(soft, rel=1e-5)
    # equal copies: no divergence
    same = torch.cat([z[:1], z[:1]])
    for divergence in ("bernoulli-kl", "softmax-kl"):
        assert float(consistency_divergence(same, divergence)) == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="divergence"):
        consistency_divergence(z, "l2")


def test_gradients_flow_through_every_copy():
    torch.manual_seed(0)
    scores = torch.randn(3 * 4, 5, requires_grad=True)
    targets = (torch.rand(4, 5) > 0.5).float().repeat(3, 1)
    ConsistencyLoss(AsymmetricLoss(), copies=3, weight=2.0)(scores, targets).backward()
    per_copy = scores.grad.reshape(3, 4, 5).abs().sum(dim=(1, 2))
    assert (per_copy > 0).all()
    # the consistency term alone pulls every copy too (towards the others)
    scores.grad = None
    zero = ConsistencyLoss(AsymmetricLoss(gamma_neg=0, clip=0), copies=3, weight=1.0)
    (zero(scores, targets) - zero.criterion(scores, targets)).backward()
    assert (scores.grad.reshape(3, 4, 5).abs().sum(dim=(1, 2)) > 0).all()


def test_invalid_knobs_are_refused(data):
    X, _, Y, _ = data
    for kwargs, match in [
        (dict(noise_copies=0), "noise_copies"),
        (dict(consistency=-1.0), "consistency"),
        (dict(noise_copies=2.5), "noise_copies"),
    ]:
        with pytest.raises(ValueError, match=match):
            tiny_net(noise_sigma=0.5, **kwargs).fit(X, Y)
    with pytest.raises(ValueError, match="noise_sigma"):
        tiny_net(noise_copies=2, consistency=1.0).fit(X, Y)


# ------------------------------------------------------------------- the training noise
class Recorder(Callback):
    def initialize(self):
        self.batches, self.criteria = [], []
        return self

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            self.batches.append((batch[0].clone(), batch[1].clone()))
            self.criteria.append(type(net.criterion_).__name__)


def test_copies_are_stacked_with_independent_noise(data):
    X, _, Y, _ = data
    recorder = Recorder()
    # the recorder runs after the noise callback (user callbacks come after defaults)
    net = tiny_net(
        noise_sigma=0.5, noise_copies=3, consistency=1.0, max_epochs=1, callbacks=[recorder]
    ).fit(X, Y)
    Xb, Yb = recorder.batches[0]
    assert Xb.shape == (3 * 64, X.shape[1]) and Yb.shape == (3 * 64, Y.shape[1])
    copies = Xb.reshape(3, 64, -1)
    assert torch.equal(Yb[:64], Yb[64:128]) and torch.equal(Yb[:64], Yb[128:])
    # same clean inputs (the mean of the copies' difference is noise only), fresh noise
    diff = copies[0] - copies[1]
    assert float(diff.std()) == pytest.approx(0.5 * np.sqrt(2), rel=0.05)
    assert set(recorder.criteria) == {"ConsistencyLoss"}
    assert type(net.criterion_) is AsymmetricLoss  # unwrapped after training


def test_one_copy_trains_exactly_as_gaussian_augmentation(data):
    X, _, Y, _ = data
    torch.manual_seed(3)
    plain = tiny_net(noise_sigma=0.5).fit(X, Y)
    torch.manual_seed(3)
    one = tiny_net(noise_sigma=0.5, noise_copies=1, consistency=0.0).fit(X, Y)
    assert all(torch.equal(a, b) for a, b in zip(weights(plain), weights(one)))


def test_consistency_is_measurably_more_stable_under_noise(data):
    """On a small fixed problem, a consistency-trained net's top-1 label under noise
    agrees more often with its majority top-1 label than a Gaussian-trained one's."""
    X, X_test, Y, _ = data
    X_t = torch.as_tensor(X_test)

    def stability(net):
        torch.manual_seed(0)
        noisy = X_t.unsqueeze(0) + 0.5 * torch.randn(200, *X_t.shape)
        with torch.no_grad():
            top = net.module_(noisy.reshape(-1, X_t.shape[1])).argmax(1).reshape(200, -1)
        votes = torch.nn.functional.one_hot(top, Y.shape[1]).sum(0)  # (inputs, labels)
        return float(votes.max(1).values.float().mean() / 200)

    results = {}
    for name, kwargs in [("gaussian", {}), ("consistency", dict(noise_copies=2, consistency=10.0))]:
        torch.manual_seed(0)
        net = tiny_net(noise_sigma=0.5, max_epochs=6, module__hidden=(32,), **kwargs).fit(X, Y)
        results[name] = stability(net)
    # measured (torch seeds 0, 1, 2): 0.43, 0.46, 0.44 (gaussian) against 0.51, 0.53,
    # 0.56 (consistency, weight 10): the majority label's share of the noisy votes
    assert results["consistency"] > results["gaussian"] + 0.05, results


# ------------------------------------------------------------------- train_noise option
def test_train_noise_consistency_sets_the_recommended_knobs(data):
    X, _, Y, _ = data
    clf = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=1), train_noise="consistency", n_draws=10, random_state=0
    ).fit(X, Y)
    net = clf.estimator_
    assert (net.noise_sigma, net.noise_copies, net.consistency) == (
        0.5,
        DEFAULT_COPIES,
        DEFAULT_CONSISTENCY,
    )
    # a value the net sets is kept (a grid search reaches it as estimator__consistency)
    own = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=1, consistency=0.5, noise_copies=3),
        train_noise="consistency",
        n_draws=10,
        random_state=0,
    ).fit(X, Y)
    assert (own.estimator_.noise_copies, own.estimator_.consistency) == (3, 0.5)
    # reproducible from random_state
    again = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=1), train_noise="consistency", n_draws=10, random_state=0
    ).fit(X, Y)
    assert all(torch.equal(a, b) for a, b in zip(weights(net), weights(again.estimator_)))


def test_true_is_gaussian(data):
    X, _, Y, _ = data
    fits = [
        SmoothedMultiLabelClassifier(
            tiny_net(max_epochs=1), train_noise=value, n_draws=10, random_state=0
        ).fit(X, Y)
        for value in (True, "gaussian")
    ]
    assert all(
        torch.equal(a, b) for a, b in zip(weights(fits[0].estimator_), weights(fits[1].estimator_))
    )
    assert fits[0].estimator_.noise_copies is None


def test_grid_search_reaches_consistency(data):
    X, _, Y, _ = data
    clf = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=1), train_noise="consistency", n_draws=10, random_state=0
    )
    search = GridSearchCV(clf, {"estimator__consistency": [0.0, 3.0]}, cv=2).fit(X, Y)
    assert search.best_estimator_.estimator_.consistency in (0.0, 3.0)
    assert search.best_estimator_.estimator_.noise_copies == DEFAULT_COPIES


def test_other_skorch_nets_get_the_callback(data):
    X, _, Y, _ = data
    net = NeuralNet(
        MLPModule,
        criterion=torch.nn.BCEWithLogitsLoss,
        max_epochs=1,
        module__n_features=X.shape[1],
        module__n_classes=Y.shape[1],
        module__hidden=(8,),
        train_split=None,
    )
    clf = SmoothedMultiLabelClassifier(
        net, train_noise="consistency", n_draws=10, random_state=0
    ).fit(X, Y)
    callback = dict(clf.estimator_.callbacks_)["smoothing_train_noise"]
    assert (callback.sigma, callback.copies, callback.consistency) == (
        0.5,
        DEFAULT_COPIES,
        DEFAULT_CONSISTENCY,
    )
    assert type(clf.estimator_.criterion_) is torch.nn.BCEWithLogitsLoss


def test_models_that_cannot_train_with_consistency_say_so(data):
    X, _, Y, _ = data
    trained = tiny_net(max_epochs=1).fit(X, Y)
    for estimator in (FrozenEstimator(trained), trained.module_, RidgeClassifier()):
        with pytest.raises(ValueError, match="train_noise='consistency'"):
            SmoothedMultiLabelClassifier(estimator, train_noise="consistency").fit(X, Y)
    with pytest.raises(ValueError, match="train_noise"):
        SmoothedMultiLabelClassifier(tiny_net(), train_noise="mixup").fit(X, Y)


def test_tuple_batches_cannot_take_copies():
    callback = TrainingNoise(0.5, copies=2)

    class Net:
        noise_sigma, device = 0.5, None

    with pytest.raises(TypeError, match="list batches"):
        callback.on_batch_begin(Net(), batch=(torch.zeros(2, 3), torch.zeros(2, 1)), training=True)
