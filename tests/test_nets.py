"""AsymmetricLoss against its formula; MultiLabelNet training, noise, shapes and cloning."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import f1_score
from skorch.callbacks import Callback

from sklearn_certify.datasets import make_multidigit
from sklearn_certify.losses import AsymmetricLoss
from sklearn_certify.nets import MLPModule, MultiLabelNet, SmallCNN

LOGITS = np.array([[2.0, -1.0, 0.5, -3.0], [-0.2, 1.5, -4.0, 0.03]])
TARGETS = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]])


def asl_by_hand(logits, targets, gamma_pos, gamma_neg, clip):
    """Element-wise ASL terms, straight from MultiGuard Section 4.1, in float64."""
    q = 1.0 / (1.0 + np.exp(-logits))
    shifted = np.maximum(q - clip, 0.0)
    l_pos = (1.0 - q) ** gamma_pos * np.log(q)
    l_neg = shifted**gamma_neg * np.log(1.0 - shifted)
    return -targets * l_pos - (1.0 - targets) * l_neg


def _asl(logits, targets, **params):
    loss = AsymmetricLoss(**params)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return loss(as_tensor(logits), as_tensor(targets)).numpy()


@pytest.fixture(scope="module")
def digits():
    return make_multidigit(1200, 300, random_state=0)


@pytest.fixture(scope="module")
def digit_images():
    return make_multidigit(1200, 300, image_shape=True, random_state=0)


@pytest.fixture(scope="module")
def fitted_mlp(digits):
    X_train, _, Y_train, _ = digits
    torch.manual_seed(0)
    return MultiLabelNet(max_epochs=20).fit(X_train, Y_train)


# --------------------------------------------------------------------------- ASL


@pytest.mark.parametrize(
    "params",
    [{}, {"gamma_pos": 1.0, "gamma_neg": 2.0, "clip": 0.1}, {"gamma_pos": 0.5, "clip": 0.0}],
)
def test_asl_matches_formula(params):
    full = {"gamma_pos": 0.0, "gamma_neg": 4.0, "clip": 0.05, **params}
    expected = asl_by_hand(LOGITS, TARGETS, **full)
    assert np.allclose(_asl(LOGITS, TARGETS, reduction="none", **params), expected)
    assert np.isclose(_asl(LOGITS, TARGETS, reduction="sum", **params), expected.sum())
    # "mean": mean over inputs of the per-input sum over labels
    assert np.isclose(_asl(LOGITS, TARGETS, **params), expected.sum(axis=1).mean())


def test_asl_default_ignores_easy_negatives():
    # q = sigmoid(-3) < clip = 0.05: a negative label that contributes exactly 0
    terms = _asl(LOGITS, TARGETS, reduction="none")
    assert terms[0, 3] == 0.0
    assert np.all(terms >= 0)


def test_asl_without_focusing_or_clip_is_bce():
    logits = torch.tensor(LOGITS, dtype=torch.float32)
    targets = torch.tensor(TARGETS, dtype=torch.float32)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    for reduction, expected in [("none", bce), ("sum", bce.sum()), ("mean", bce.sum(dim=1).mean())]:
        asl = AsymmetricLoss(gamma_pos=0.0, gamma_neg=0.0, clip=0.0, reduction=reduction)
        torch.testing.assert_close(asl(logits, targets), expected)


def test_asl_is_finite_for_extreme_logits():
    logits = torch.tensor([[60.0, -60.0, 0.0, 30.0]], requires_grad=True)
    targets = torch.tensor([[0.0, 1.0, 0.0, 1.0]])
    for params in [{}, {"gamma_pos": 0.5, "gamma_neg": 0.5}, {"clip": 0.0}]:
        loss = AsymmetricLoss(**params)(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        # the eps floor bounds each wrong label's term by -log(1e-8)
        assert float(loss.detach()) <= 2 * -np.log(1e-8) + 0.1


@pytest.mark.parametrize(
    "params",
    [{"gamma_neg": -1.0}, {"clip": 1.0}, {"clip": -0.1}, {"eps": 0.0}, {"reduction": "avg"}],
)
def test_asl_rejects_bad_parameters(params):
    with pytest.raises(ValueError):
        AsymmetricLoss(**params)


def test_asl_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------- modules


@pytest.mark.parametrize("size", [8, 9, 16, 28, 32, (16, 24)])
def test_small_cnn_output_shape(size):
    height, width = (size, size) if isinstance(size, int) else size
    out = SmallCNN(3, 7, size)(torch.zeros(2, 3, height, width))
    assert out.shape == (2, 7)


def test_small_cnn_rejects_tiny_images():
    with pytest.raises(ValueError, match="4x4"):
        SmallCNN(1, 10, 3)


@pytest.mark.parametrize("hidden", [(), 32, (32, 16)])
def test_mlp_output_shape_and_flattening(hidden):
    module = MLPModule(12, 5, hidden=hidden, dropout=0.1)
    assert module(torch.zeros(4, 12)).shape == (4, 5)
    assert module(torch.zeros(4, 3, 2, 2)).shape == (4, 5)


# ----------------------------------------------------------------- MultiLabelNet


def _top1_precision(Y, scores):
    return Y[np.arange(len(Y)), scores.argmax(axis=1)].mean()


def test_mlp_net_learns_multidigit(digits, fitted_mlp):
    _, X_test, _, Y_test = digits
    net = fitted_mlp
    assert isinstance(net.module_, MLPModule)
    assert (net.n_features_in_, net.n_classes_, net.input_shape_) == (256, 10, (256,))
    # chance: 0.25 top-1 precision; micro F1 0.4 when predicting every label
    assert _top1_precision(Y_test, net.decision_function(X_test)) > 0.9
    assert f1_score(Y_test, net.predict(X_test), average="micro") > 0.6


def test_cnn_net_learns_multidigit_images(digit_images):
    X_train, X_test, Y_train, Y_test = digit_images
    torch.manual_seed(0)
    net = MultiLabelNet(max_epochs=15).fit(X_train, Y_train)
    assert isinstance(net.module_, SmallCNN)
    assert net.input_shape_ == (1, 16, 16)
    assert _top1_precision(Y_test, net.decision_function(X_test)) > 0.9
    assert f1_score(Y_test, net.predict(X_test), average="micro") > 0.6


def test_three_dimensional_X_gets_a_channel_axis(digit_images):
    X_train, X_test, Y_train, _ = digit_images
    torch.manual_seed(0)
    net = MultiLabelNet(max_epochs=1).fit(X_train[:200, 0], Y_train[:200])
    assert isinstance(net.module_, SmallCNN)
    assert net.input_shape_ == (1, 16, 16)
    np.testing.assert_array_equal(
        net.decision_function(X_test[:20, 0]), net.decision_function(X_test[:20])
    )


def test_outputs_are_logits_probabilities_and_label_sets(digits, fitted_mlp):
    X_test = digits[1][:50]
    logits = fitted_mlp.decision_function(X_test)
    proba = fitted_mlp.predict_proba(X_test)
    pred = fitted_mlp.predict(X_test)
    assert logits.shape == proba.shape == pred.shape == (50, 10)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(proba, 1.0 / (1.0 + np.exp(-logits.astype(np.float64))), rtol=1e-5)
    assert np.issubdtype(pred.dtype, np.integer)
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))


def test_user_module_class_gets_inferred_sizes_unless_set(digits):
    X_train, _, Y_train, _ = digits

    class Linear(torch.nn.Module):
        def __init__(self, n_features, n_classes, scale=1.0):
            super().__init__()
            self.lin = torch.nn.Linear(n_features, n_classes)

        def forward(self, x):
            return self.lin(x)

    net = MultiLabelNet(Linear, max_epochs=1).fit(X_train[:100], Y_train[:100])
    assert net.module_.lin.weight.shape == (10, 256)
    # a user-set size wins over the inferred one (and then fails loudly on this data)
    net = MultiLabelNet(Linear, max_epochs=1, module__n_features=3)
    with pytest.raises(RuntimeError):
        net.fit(X_train[:100], Y_train[:100])
    assert net.module_.lin.weight.shape == (10, 3)


def test_user_module_instance_is_used_as_given(digits):
    X_train, _, Y_train, _ = digits
    module = MLPModule(256, 10, hidden=(8,))
    net = MultiLabelNet(module, max_epochs=1).fit(X_train[:100], Y_train[:100])
    assert net.module_ is module


def test_inputs_and_targets_are_cast_to_float32(digits):
    X_train, _, Y_train, _ = digits
    seen = []
    net = MultiLabelNet(max_epochs=1, batch_size=50)
    net.fit(X_train[:50].astype(np.float64), Y_train[:50].astype(bool))
    net.module_.register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    net.decision_function(X_train[:5].astype(np.float64))
    assert seen == [torch.float32]


def test_one_dimensional_y_is_rejected(digits):
    X_train, _, Y_train, _ = digits
    with pytest.raises(ValueError, match="indicator matrix"):
        MultiLabelNet(max_epochs=1).fit(X_train[:20], Y_train[:20].argmax(axis=1))


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), "0.5"])
def test_bad_noise_sigma_is_rejected(digits, sigma):
    X_train, _, Y_train, _ = digits
    with pytest.raises(ValueError, match="noise_sigma"):
        MultiLabelNet(max_epochs=1, noise_sigma=sigma).fit(X_train[:20], Y_train[:20])


# ------------------------------------------------------------------ training noise


class RecordTrainingInputs(Callback):
    """Keeps a copy of every input batch the module sees in training mode."""

    def __init__(self):
        self.seen = []

    def _record(self, module, args):
        if module.training:
            self.seen.append(args[0].detach().clone().numpy())

    def on_train_begin(self, net, **kwargs):
        net.module_.register_forward_pre_hook(self._record)


def _record_module_inputs(net, X, Y):
    """Fit ``net`` and return the inputs its module saw in training, one per batch."""
    recorder = RecordTrainingInputs()
    net.set_params(callbacks=[("recorder", recorder)])
    net.fit(X, Y)
    return recorder.seen


def test_fresh_noise_on_every_training_batch(digits):
    X, Y = digits[0][:64], digits[2][:64]
    net = MultiLabelNet(noise_sigma=0.5, max_epochs=2, batch_size=32, iterator_train__shuffle=False)
    seen = _record_module_inputs(net, X, Y)
    assert len(seen) == 4  # two batches per epoch, two epochs
    noises = [seen[i] - X[32 * (i % 2) : 32 * (i % 2 + 1)] for i in range(4)]
    for noise in noises:
        assert abs(noise.std() - 0.5) < 0.03
        assert abs(noise.mean()) < 0.03
    # the same examples in epoch 1 and 2 get different noise, and so do the two batches
    assert not np.allclose(noises[0], noises[2])
    assert not np.allclose(noises[1], noises[3])
    assert not np.allclose(noises[0], noises[1])


def test_no_noise_when_sigma_is_zero_and_none_at_prediction(digits):
    X, Y = digits[0][:64], digits[2][:64]
    net = MultiLabelNet(max_epochs=2, batch_size=64, iterator_train__shuffle=False)
    seen = _record_module_inputs(net, X, Y)
    assert len(seen) == 2
    for batch in seen:
        np.testing.assert_array_equal(batch, X)

    net.set_params(noise_sigma=1.0)
    net.partial_fit(X, Y)  # noisy training again ...
    before = net.decision_function(X)
    np.testing.assert_array_equal(before, net.decision_function(X))  # ... clean prediction


def test_training_noise_changes_what_is_learned(digits):
    X, Y = digits[0][:200], digits[2][:200]
    fits = []
    for sigma in (0.0, 0.5):
        torch.manual_seed(0)
        net = MultiLabelNet(max_epochs=2, noise_sigma=sigma, module__hidden=(16,))
        fits.append(net.fit(X, Y).decision_function(X))
    assert not np.allclose(fits[0], fits[1])


# ------------------------------------------------------ seeding, cloning, pickling


def test_same_torch_seed_same_model(digits):
    X, Y = digits[0][:200], digits[2][:200]
    preds = []
    for _ in range(2):
        torch.manual_seed(3)
        net = MultiLabelNet(max_epochs=2, noise_sigma=0.3, module__hidden=(16,)).fit(X, Y)
        preds.append(net.decision_function(X))
    np.testing.assert_array_equal(*preds)


def test_clone_keeps_parameters_and_refits_identically(digits):
    X, Y = digits[0][:200], digits[2][:200]
    net = MultiLabelNet(max_epochs=2, noise_sigma=0.3, lr=3e-3, module__hidden=(16,))
    torch.manual_seed(1)
    net.fit(X, Y)
    twin = clone(net)
    assert not hasattr(twin, "module_") and not hasattr(twin, "n_classes_")
    params = twin.get_params()
    assert params["noise_sigma"] == 0.3 and params["module__hidden"] == (16,)
    assert params["module"] is None and params["criterion"] is AsymmetricLoss
    torch.manual_seed(1)
    twin.fit(X, Y)
    np.testing.assert_array_equal(net.decision_function(X), twin.decision_function(X))


def test_pickle_round_trip_gives_identical_predictions(digits, fitted_mlp):
    X_test = digits[1]
    restored = pickle.loads(pickle.dumps(fitted_mlp))
    np.testing.assert_array_equal(
        restored.decision_function(X_test), fitted_mlp.decision_function(X_test)
    )
    np.testing.assert_array_equal(restored.predict(X_test), fitted_mlp.predict(X_test))
    assert restored.n_classes_ == 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_and_predicts_on_cuda(digits):
    X, Y = digits[0][:200], digits[2][:200]
    net = MultiLabelNet(max_epochs=2, noise_sigma=0.5, device="cuda").fit(X, Y)
    assert next(net.module_.parameters()).device.type == "cuda"
    assert net.predict_proba(X).shape == (200, 10)


def test_one_training_noise_mechanism():
    from sklearn_certify.nets import TrainingNoise

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 6)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(np.float32)
    params = dict(module=MLPModule, module__hidden=(4,), max_epochs=2, batch_size=16)
    weights = []
    for net in (
        MultiLabelNet(noise_sigma=0.5, **params),
        MultiLabelNet(callbacks=[TrainingNoise(0.5)], **params),
        MultiLabelNet(**params),
    ):
        torch.manual_seed(3)
        net.fit(X, Y)
        weights.append(torch.cat([p.detach().ravel() for p in net.module_.parameters()]))
    assert "train_noise" in dict(net.callbacks_)
    assert torch.equal(weights[0], weights[1])  # noise_sigma is the callback
    assert not torch.equal(weights[0], weights[2])
    with pytest.raises(ValueError, match="callbacks='disable'"):
        MultiLabelNet(noise_sigma=0.5, callbacks="disable", **params).fit(X, Y)
