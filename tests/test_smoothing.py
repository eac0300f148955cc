"""SmoothedMultiLabelClassifier: fitting, training noise, prediction and certification."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier
from sklearn.utils._param_validation import InvalidParameterError
from skorch import NeuralNet

from sklearn_certify import CertificationResult, SmoothedMultiLabelClassifier
from sklearn_certify.bounds import clopper_pearson_bounds
from sklearn_certify.certificates import gaussian_certified_size
from sklearn_certify.datasets import make_multidigit
from sklearn_certify.nets import MultiLabelNet

RADII = [0.0, 0.1, 0.25, 0.5]  # 0.5: beyond what 60 draws certify at sigma 0.25 (a warning)


def _beyond_reach():
    """The warning for a radius no input can be certified at with these draws."""
    return pytest.warns(UserWarning, match="lies at or beyond")


@pytest.fixture(scope="module")
def data():
    return make_multidigit(240, 30, random_state=0)


def tiny_net(**kwargs):
    params = dict(module__hidden=(32,), max_epochs=3, batch_size=64, lr=3e-3)
    params.update(kwargs)
    return MultiLabelNet(**params)


@pytest.fixture(scope="module")
def fitted(data):
    X_train, _, Y_train, _ = data
    clf = SmoothedMultiLabelClassifier(
        tiny_net(), sigma=0.25, k=3, n_draws=60, batch_size=50, random_state=0
    )
    return clf.fit(X_train, Y_train)


# ------------------------------------------------------------------------------ fitting
def test_skorch_net_trains_and_predicts_on_cpu(fitted, data):
    _, X_test, _, _ = data
    assert isinstance(fitted.estimator_, MultiLabelNet)
    assert fitted.estimator_ is not fitted.estimator
    assert str(fitted.estimator_.device) == "cpu"
    assert next(fitted.estimator_.module_.parameters()).device.type == "cpu"
    assert fitted.n_classes_ == 10 and not fitted.multiclass_
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert fitted.n_features_in_ == 256 and fitted.input_shape_ == (256,)
    assert fitted.estimator_.history[-1, "epoch"] == 3
    pred = fitted.predict(X_test)
    assert pred.shape == (30, 10)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred.sum(axis=1), 3)


def test_predict_proba_rows_sum_to_k_prime(data):
    X_train, X_test, Y_train, _ = data
    clf = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=1), k_prime=2, k=3, n_draws=40, random_state=0
    ).fit(X_train, Y_train)
    proba = clf.predict_proba(X_test)
    assert proba.shape == (30, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 2.0)
    # predict is the top-k of the same (deterministically sampled) counts
    top = np.argsort(-proba, axis=1, kind="stable")[:, :3]
    expected = np.zeros_like(proba, dtype=int)
    np.put_along_axis(expected, top, 1, axis=1)
    np.testing.assert_array_equal(clf.predict(X_test), expected)


def test_default_estimator_is_a_multilabel_net(data):
    X_train, X_test, Y_train, _ = data
    clf = SmoothedMultiLabelClassifier(n_draws=20, random_state=0)
    clf.fit(X_train[:80], Y_train[:80])
    assert isinstance(clf.estimator_, MultiLabelNet)
    assert clf.estimator is None
    assert clf.predict(X_test[:3]).shape == (3, 10)


def test_fit_is_reproducible_and_leaves_the_global_torch_rng_alone(data):
    X_train, X_test, Y_train, _ = data
    state = torch.get_rng_state()
    make = lambda: SmoothedMultiLabelClassifier(  # noqa: E731
        tiny_net(max_epochs=1), n_draws=30, random_state=3
    ).fit(X_train, Y_train)
    a, b = make(), make()
    assert torch.equal(state, torch.get_rng_state())
    for pa, pb in zip(a.estimator_.module_.parameters(), b.estimator_.module_.parameters()):
        assert torch.equal(pa, pb)
    np.testing.assert_array_equal(a.predict_proba(X_test), b.predict_proba(X_test))


def test_get_params_and_clone_keep_the_constructor_arguments():
    clf = SmoothedMultiLabelClassifier(tiny_net(), sigma=0.3, k=2, batch_size=17)
    params = clf.get_params(deep=False)
    assert params["sigma"] == 0.3 and params["k"] == 2 and params["batch_size"] == 17
    assert clone(clf).get_params(deep=False)["sigma"] == 0.3
    assert "estimator__max_epochs" in clf.get_params()


def test_unfitted_classifier_raises(data):
    with pytest.raises(NotFittedError):
        SmoothedMultiLabelClassifier().predict(data[1])


# ------------------------------------------------------------------------ training noise
class Recorder(torch.nn.Module):
    """Linear scores that record every input batch seen in training mode."""

    def __init__(self, n_features=4, n_classes=3):
        super().__init__()
        self.linear = torch.nn.Linear(n_features, n_classes)
        self.seen = []

    def forward(self, x):
        if self.training:
            self.seen.append(x.detach().clone())
        return self.linear(x)


def _zeros_problem(n=32):
    X = np.zeros((n, 4), dtype=np.float32)
    Y = np.tile(np.array([[1, 0, 1]]), (n, 1))
    return X, Y


def _epochs(seen, per_epoch):
    rows = torch.cat(seen).numpy()
    return [rows[i * per_epoch : (i + 1) * per_epoch] for i in range(len(rows) // per_epoch)]


@pytest.mark.parametrize("kind", ["multilabel_net", "skorch_callback"])
def test_fresh_training_noise_on_every_batch(kind):
    X, Y = _zeros_problem()
    if kind == "multilabel_net":
        net = MultiLabelNet(Recorder, max_epochs=2, batch_size=8)
    else:
        net = NeuralNet(
            Recorder,
            criterion=torch.nn.BCEWithLogitsLoss,
            max_epochs=2,
            batch_size=8,
            train_split=None,
            iterator_train__shuffle=True,
        )
    clf = SmoothedMultiLabelClassifier(net, sigma=0.5, k=2, n_draws=10, random_state=0)
    clf.fit(X, Y)
    epoch1, epoch2 = _epochs(clf.estimator_.module_.seen, 32)
    # X is all zeros: what the module saw is the noise itself
    assert abs(epoch1.std() - 0.5) < 0.1 and abs(epoch1.mean()) < 0.1
    # a one-time noisy copy would show the same rows (permuted) in every epoch
    assert np.abs(epoch1[:, None, :] - epoch2[None, :, :]).sum(axis=2).min() > 1e-3
    assert len({row.tobytes() for row in epoch1}) == 32
    if kind == "multilabel_net":
        assert clf.estimator_.noise_sigma == 0.5
        assert net.noise_sigma == 0.0  # the given estimator is not modified


def test_no_training_noise_when_disabled():
    X, Y = _zeros_problem()
    net = MultiLabelNet(Recorder, max_epochs=1, batch_size=8)
    clf = SmoothedMultiLabelClassifier(net, sigma=0.5, k=2, n_draws=10, train_noise=False)
    clf.fit(X, Y)
    assert clf.estimator_.noise_sigma == 0.0
    assert torch.cat(clf.estimator_.module_.seen).abs().max() == 0
    # the net is trained as configured: its own noise_sigma is kept
    own = MultiLabelNet(Recorder, max_epochs=1, batch_size=8, noise_sigma=0.2)
    clf = SmoothedMultiLabelClassifier(own, sigma=0.5, k=2, train_noise=False).fit(X, Y)
    assert clf.estimator_.noise_sigma == 0.2


class XRecorder(MultiOutputClassifier):
    def fit(self, X, Y, **fit_params):
        self.X_fit_ = np.array(X)
        return super().fit(X, Y, **fit_params)


def test_sklearn_estimator_is_fitted_on_one_noisy_copy():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 3))
    Y = (X > 0).astype(int)
    clf = SmoothedMultiLabelClassifier(
        XRecorder(LogisticRegression()), sigma=0.7, k=1, n_draws=20, random_state=0
    ).fit(X, Y)
    seen = clf.estimator_.X_fit_
    assert seen.shape == X.shape
    assert abs((seen - X).std() - 0.7) < 0.1
    plain = SmoothedMultiLabelClassifier(
        XRecorder(LogisticRegression()), k=1, train_noise=False
    ).fit(X, Y)
    np.testing.assert_array_equal(plain.estimator_.X_fit_, X)


def test_torch_module_is_used_as_is_without_training(data):
    X_train, X_test, Y_train, Y_test = data
    torch.manual_seed(0)
    module = torch.nn.Linear(256, 10)
    before = [p.detach().clone() for p in module.parameters()]
    clf = SmoothedMultiLabelClassifier(module, n_draws=30, train_noise=False, random_state=0)
    clf.fit(X_train, Y_train)
    assert clf.estimator_ is module
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert clf.certify(X_test, Y_test, RADII).sizes.shape == (30, 4)
    with pytest.raises(ValueError, match="scores 10 labels per input but 9"):
        clf.fit(X_train, Y_train[:, :9])


# --------------------------------------------------------------------------- certifying
def test_certify_equals_the_pure_certificate_of_the_counts(fitted, data):
    _, X_test, _, Y_test = data
    with _beyond_reach():
        result = fitted.certify(X_test, Y_test, RADII)
    assert isinstance(result, CertificationResult)
    assert result.sizes.shape == (30, len(RADII))
    counts = np.rint(fitted.predict_proba(X_test) * fitted.n_draws).astype(int)
    np.testing.assert_array_equal(result.counts, counts)  # same seed, same counts
    lower, upper = clopper_pearson_bounds(counts, 60, 0.001)
    expected = gaussian_certified_size(
        lower, upper, Y_test, k=3, k_prime=1, sigma=0.25, radius=RADII, method="multiguard"
    )
    np.testing.assert_array_equal(result.sizes, expected)
    np.testing.assert_array_equal(result.lower, lower)


@pytest.mark.parametrize(
    "options",
    [
        dict(method="jia"),
        dict(method="first-term"),
        dict(alpha=0.05),
        dict(k=1),
        dict(k=5, method="jia", alpha=0.01),
    ],
)
def test_recertify_equals_a_fresh_certification(fitted, data, options):
    _, X_test, _, Y_test = data
    radii = [0.0, 0.3, 0.6]
    with _beyond_reach():
        fresh = fitted.certify(X_test, Y_test, radii, **options)
    with _beyond_reach():
        again = fitted.certify(X_test, Y_test, RADII).recertify(radii, **options)
    np.testing.assert_array_equal(again.sizes, fresh.sizes)
    assert again.method == fresh.method and again.k == fresh.k
    np.testing.assert_allclose(again.f1(), fresh.f1())


def test_certified_sizes_shrink_with_the_radius(fitted, data):
    _, X_test, _, Y_test = data
    with _beyond_reach():
        sizes = fitted.certify(X_test, Y_test, [0.0, 0.25, 0.5, 1.0, 5.0]).sizes
    assert np.all(np.diff(sizes, axis=1) <= 0)
    assert np.all(sizes[:, -1] == np.maximum(0, 3 - (10 - Y_test.sum(axis=1))))


def test_score_is_the_certified_f1_at_radius_zero(fitted, data):
    _, X_test, _, Y_test = data
    score = fitted.score(X_test, Y_test)
    assert score == pytest.approx(fitted.certify(X_test, Y_test, 0).f1()[0])
    assert 0.0 <= score <= 1.0


def test_prediction_changes_no_state(fitted, data):
    _, X_test, _, _ = data
    before = dict(vars(fitted))
    fitted.predict(X_test)
    fitted.predict_proba(X_test)
    assert vars(fitted).keys() == before.keys()
    assert all(vars(fitted)[key] is value for key, value in before.items())


def test_batch_size_only_changes_the_draw_order(fitted, data):
    _, X_test, _, _ = data
    a = clone(fitted).set_params(batch_size=7)
    a.__dict__.update({k: v for k, v in vars(fitted).items() if k.endswith("_")})
    proba_a, proba = a.predict_proba(X_test), fitted.predict_proba(X_test)
    np.testing.assert_allclose(proba_a.sum(axis=1), proba.sum(axis=1))
    assert np.abs(proba_a - proba).mean() < 0.1


def test_one_dimensional_targets_give_class_labels():
    rng = np.random.RandomState(0)
    centers = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    labels = rng.randint(3, size=150)
    X = centers[labels] + rng.normal(size=(150, 2))
    names = np.array(["cat", "dog", "emu"])
    y = names[labels]
    clf = SmoothedMultiLabelClassifier(
        LogisticRegression(), sigma=0.5, k=1, n_draws=50, random_state=0
    ).fit(X, y)
    assert clf.multiclass_ and clf.n_classes_ == 3
    np.testing.assert_array_equal(clf.classes_, names)
    pred = clf.predict(X[:20])
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    assert np.mean(pred == y[:20]) > 0.8
    result = clf.certify(X[:20], y[:20], [0.0, 0.5])
    assert result.sizes.shape == (20, 2) and result.f1()[0] > 0.8


def test_one_dimensional_targets_with_a_skorch_net():
    rng = np.random.RandomState(0)
    y = rng.randint(3, size=60)
    X = (np.eye(3)[y] * 3 + rng.normal(scale=0.3, size=(60, 3))).astype(np.float32)
    clf = SmoothedMultiLabelClassifier(
        tiny_net(max_epochs=20), sigma=0.25, k=1, n_draws=20, random_state=0
    ).fit(X, y + 10)
    np.testing.assert_array_equal(clf.classes_, [10, 11, 12])
    assert np.mean(clf.predict(X) == y + 10) > 0.8


class SoftmaxMLP(torch.nn.Module):
    def __init__(self, n_features=3, n_classes=3):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(n_features, 16),
            torch.nn.ReLU(),
            torch.nn.Linear(16, n_classes),
            torch.nn.Softmax(-1),
        )

    def forward(self, x):
        return self.layers(x)


def test_one_dimensional_targets_with_a_skorch_classifier():
    from skorch import NeuralNetClassifier

    rng = np.random.RandomState(0)
    y = rng.randint(3, size=90)
    X = (np.eye(3)[y] * 3 + rng.normal(scale=0.3, size=(90, 3))).astype(np.float32)
    net = NeuralNetClassifier(SoftmaxMLP, max_epochs=30, lr=0.1, train_split=None, batch_size=32)
    names = np.array(["a", "b", "c"])
    clf = SmoothedMultiLabelClassifier(net, sigma=0.25, k=1, n_draws=20, random_state=0).fit(
        X, names[y]
    )
    # class indices were passed to the net; the noise callback was added to its clone
    assert "smoothing_train_noise" in dict(clf.estimator_.callbacks_)
    assert net.callbacks is None
    assert np.mean(clf.predict(X) == names[y]) > 0.8


def test_empty_input_gives_empty_results(fitted):
    X = np.zeros((0, 256), dtype=np.float32)
    assert fitted.predict(X).shape == (0, 10)
    assert fitted.predict_proba(X).shape == (0, 10)
    counts, n_draws = fitted._label_counts(X)
    assert counts.shape == (0, 10) and n_draws == 60
    with _beyond_reach():
        result = fitted.certify(X, np.zeros((0, 10), dtype=int), RADII)
    assert result.sizes.shape == (0, len(RADII))


def test_image_shaped_inputs(data):
    X_train, X_test, Y_train, Y_test = make_multidigit(120, 10, image_shape=True, random_state=0)
    clf = SmoothedMultiLabelClassifier(MultiLabelNet(max_epochs=1), n_draws=20, random_state=0).fit(
        X_train, Y_train
    )
    assert clf.input_shape_ == (1, 16, 16) and not hasattr(clf, "n_features_in_")
    assert clf.certify(X_test, Y_test, 0.25).sizes.shape == (10, 1)
    with pytest.raises(ValueError, match="shape"):
        clf.predict(X_test[:, :, :8])


def test_three_dimensional_images_get_the_channel_axis_the_net_adds():
    X_train, X_test, Y_train, Y_test = make_multidigit(60, 5, image_shape=True, random_state=0)
    clf = SmoothedMultiLabelClassifier(MultiLabelNet(max_epochs=1), n_draws=10, random_state=0).fit(
        X_train[:, 0], Y_train
    )
    assert clf.estimator_.input_shape_ == (1, 16, 16)  # SmallCNN sees (n, 1, H, W)
    assert clf.predict_proba(X_test[:, 0]).shape == (5, 10)


# ------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "params, match",
    [
        (dict(k=11), "k=11 exceeds"),
        (dict(k_prime=11), "k_prime=11 exceeds"),
        (dict(method="jia", k_prime=2), "k_prime == 1"),
    ],
)
def test_label_parameters_are_checked_at_fit(data, params, match):
    X_train, _, Y_train, _ = data
    clf = SmoothedMultiLabelClassifier(tiny_net(max_epochs=1), **params)
    with pytest.raises(ValueError, match=match):
        clf.fit(X_train, Y_train)


@pytest.mark.parametrize(
    "params",
    [
        dict(sigma=0.0),
        dict(sigma=-1),
        dict(k=0),
        dict(k_prime=1.5),
        dict(n_draws=0),
        dict(alpha=1.0),
        dict(method="cohen"),
        dict(batch_size=0),
        dict(train_noise="yes"),
        dict(estimator=object()),
    ],
)
def test_invalid_parameters(data, params):
    X_train, _, Y_train, _ = data
    with pytest.raises(InvalidParameterError):
        SmoothedMultiLabelClassifier(**params).fit(X_train, Y_train)


def test_certify_and_predict_errors(fitted, data):
    _, X_test, _, Y_test = data
    with pytest.raises(TypeError, match="unexpected keyword argument .attack."):
        fitted.certify(X_test, Y_test, 0.1, attack="deletion")
    with pytest.raises(ValueError, match="method"):
        fitted.certify(X_test, Y_test, 0.1, method="dpa")
    with pytest.raises(ValueError, match="at most 10, got 11"):
        fitted.certify(X_test, Y_test, 0.1, k=11)
    with pytest.raises(ValueError, match="X has 255 features, but"):
        fitted.predict(X_test[:, :255])
    with pytest.raises(ValueError, match="rows"):
        fitted.certify(X_test, Y_test[:5], 0.1)


def test_mismatched_rows_at_fit(data):
    X_train, _, Y_train, _ = data
    with pytest.raises(ValueError, match="must match"):
        SmoothedMultiLabelClassifier(tiny_net()).fit(X_train, Y_train[:10])
