"""The sampling engine: counts, determinism, batching, tie-breaking, torch vs generic."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.multioutput import MultiOutputClassifier
from skorch import NeuralNet

from sklearn_certify.smoothing._models import torch_module_and_device
from sklearn_certify.smoothing._sampling import sample_label_counts

N_CLASSES = 4
N_FEATURES = 6


def _linear(seed=0, n_features=N_FEATURES, n_classes=N_CLASSES):
    torch.manual_seed(seed)
    return torch.nn.Linear(n_features, n_classes)


class _FitsNothing:
    """A minimal sklearn-style estimator: ``fit`` learns nothing."""

    def fit(self, X, y=None):
        return self


class TorchAdapter(_FitsNothing):
    """Scores with a torch module (the generic path)."""

    def __init__(self, module):
        self.module = module

    def decision_function(self, X):
        with torch.no_grad():
            return self.module(torch.as_tensor(X, dtype=torch.float32)).numpy()


class Constant(torch.nn.Module):
    """Scores every label the same: a top-k' is decided by the tie-break alone."""

    def __init__(self, n_classes):
        super().__init__()
        self.n_classes = n_classes

    def forward(self, x):
        return torch.zeros(len(x), self.n_classes, dtype=x.dtype, device=x.device)


class ConstantEstimator(_FitsNothing):
    """Every label's probability is 0.5 (the generic path)."""

    def __init__(self, n_classes):
        self.n_classes = n_classes

    def predict_proba(self, X):
        return np.full((len(X), self.n_classes), 0.5)


class Identity(torch.nn.Module):
    """Scores = the input itself: the top label of x + noise is x's arg-max."""

    def forward(self, x):
        return x.flatten(1)


def counts(model, X, **kwargs):
    params = dict(
        n_classes=N_CLASSES, sigma=0.5, k_prime=1, n_draws=200, batch_size=64, random_state=0
    )
    params.update(kwargs)
    return sample_label_counts(model, X, **params)


@pytest.fixture
def X():
    return np.random.RandomState(0).normal(size=(5, N_FEATURES)).astype(np.float32)


@pytest.mark.parametrize("k_prime", [1, 2, 3])
@pytest.mark.parametrize("generic", [False, True])
def test_counts_sum_to_draws_times_k_prime(X, k_prime, generic):
    model = _linear()
    model = TorchAdapter(model) if generic else model
    c = counts(model, X, k_prime=k_prime, n_draws=150, batch_size=64)
    assert c.shape == (5, N_CLASSES)
    assert c.dtype == np.int64
    np.testing.assert_array_equal(c.sum(axis=1), 150 * k_prime)
    assert c.min() >= 0 and c.max() <= 150


def _assert_same_distribution(c1, c2, n_draws):
    """Label frequencies within 5 two-sample binomial standard deviations (+ slack)."""
    p1, p2 = c1 / n_draws, c2 / n_draws
    p = (p1 + p2) / 2
    tolerance = 5 * np.sqrt(2 * p * (1 - p) / n_draws) + 2.0 / n_draws
    assert np.all(np.abs(p1 - p2) <= tolerance), (c1, c2)


@pytest.mark.parametrize("k_prime", [1, 2])
def test_torch_and_generic_paths_agree_in_distribution(X, k_prime):
    module = _linear(seed=1)
    n = 3000
    c_torch = counts(module, X, k_prime=k_prime, n_draws=n, batch_size=1000, random_state=1)
    c_generic = counts(
        TorchAdapter(module), X, k_prime=k_prime, n_draws=n, batch_size=1000, random_state=2
    )
    _assert_same_distribution(c_torch, c_generic, n)
    # the noise matters: some input spreads its draws over more than one label
    assert np.any((c_torch > 0).sum(axis=1) > k_prime)


@pytest.mark.parametrize("generic", [False, True])
def test_same_seed_and_batch_size_give_identical_counts(X, generic):
    model = TorchAdapter(_linear()) if generic else _linear()
    a = counts(model, X, random_state=7, batch_size=33)
    b = counts(model, X, random_state=7, batch_size=33)
    np.testing.assert_array_equal(a, b)
    c = counts(model, X, random_state=8, batch_size=33)
    assert not np.array_equal(a, c)


def test_random_state_instance_advances_between_calls(X):
    model = _linear()
    rng = np.random.RandomState(3)
    first, second = counts(model, X, random_state=rng), counts(model, X, random_state=rng)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, counts(model, X, random_state=np.random.RandomState(3)))


@pytest.mark.parametrize("generic", [False, True])
def test_batch_size_does_not_change_the_distribution(X, generic):
    model = TorchAdapter(_linear(seed=2)) if generic else _linear(seed=2)
    n = 2000
    small = counts(model, X, n_draws=n, batch_size=37, random_state=0)
    large = counts(model, X, n_draws=n, batch_size=4096, random_state=1)
    _assert_same_distribution(small, large, n)


@pytest.mark.parametrize("batch_size", [1, 7, 50, 51, 149, 10_000])
@pytest.mark.parametrize("generic", [False, True])
def test_batches_spanning_inputs_count_for_the_right_input(batch_size, generic):
    # input i has a huge score on label i: every draw of input i predicts label i
    X = 100.0 * np.eye(N_CLASSES, dtype=np.float32)[[0, 1, 2, 3, 1]]
    model = TorchAdapter(Identity()) if generic else Identity()
    c = counts(model, X, n_draws=50, batch_size=batch_size, sigma=0.1)
    expected = 50 * np.eye(N_CLASSES, dtype=np.int64)[[0, 1, 2, 3, 1]]
    np.testing.assert_array_equal(c, expected)


@pytest.mark.parametrize("k_prime", [1, 2, 3])
@pytest.mark.parametrize(
    "model", [Constant(N_CLASSES), ConstantEstimator(N_CLASSES)], ids=["torch", "generic"]
)
def test_ties_go_to_the_lower_label_index(X, model, k_prime):
    c = counts(model, X, k_prime=k_prime, n_draws=40, batch_size=16)
    expected = np.zeros((len(X), N_CLASSES), dtype=np.int64)
    expected[:, :k_prime] = 40
    np.testing.assert_array_equal(c, expected)


def test_image_shaped_inputs_and_conv_module():
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3, padding=1),
        torch.nn.Flatten(),
        torch.nn.Linear(2 * 4 * 4, N_CLASSES),
    )
    X = np.random.RandomState(0).rand(3, 1, 4, 4).astype(np.float32)
    c = counts(module, X, n_draws=64, batch_size=40, k_prime=2)
    np.testing.assert_array_equal(c.sum(axis=1), 128)


def test_torch_tensor_input_and_float64_module(X):
    module = _linear().double()
    from_tensor = counts(module, torch.as_tensor(X), random_state=0)
    from_array = counts(module, X, random_state=0)
    np.testing.assert_array_equal(from_tensor, from_array)


def test_module_modes_are_restored_and_eval_is_used_while_sampling(X):
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append((self.training, torch.is_inference_mode_enabled()))
            return x[:, :N_CLASSES]

    inner = torch.nn.Dropout(0.5)
    module = torch.nn.Sequential(inner, Recorder())
    module.train()
    inner.eval()  # a submodule in its own mode must keep it
    counts(module, X, n_draws=10, batch_size=8)
    assert seen and all(mode == (False, True) for mode in seen)
    assert module.training and module[1].training and not inner.training


def test_skorch_net_uses_its_module_and_device(X):
    net = NeuralNet(
        torch.nn.Linear,
        criterion=torch.nn.BCEWithLogitsLoss,
        module__in_features=N_FEATURES,
        module__out_features=N_CLASSES,
        max_epochs=1,
        train_split=None,
        device="cpu",
    )
    net.initialize()
    module, device = torch_module_and_device(net)
    assert module is net.module_ and device == torch.device("cpu")
    np.testing.assert_array_equal(counts(net, X), counts(net.module_, X))


def test_parameterless_module_runs_on_cpu():
    module, device = torch_module_and_device(Constant(3))
    assert device == torch.device("cpu")


def test_multi_output_list_of_probability_arrays():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 3))
    Y = (X[:, : N_CLASSES - 1] > 0).astype(int)
    Y = np.c_[Y, 1 - Y[:, 0]]
    model = MultiOutputClassifier(LogisticRegression()).fit(X, Y)
    c = sample_label_counts(
        model,
        X[:4],
        n_classes=N_CLASSES,
        sigma=0.3,
        k_prime=2,
        n_draws=30,
        batch_size=25,
        random_state=0,
    )
    np.testing.assert_array_equal(c.sum(axis=1), 60)


def test_binary_decision_function_scores_both_classes():
    X = np.r_[np.full((20, 1), -3.0), np.full((20, 1), 3.0)]
    y = np.r_[np.zeros(20), np.ones(20)]
    model = LogisticRegression().fit(X, y)
    c = sample_label_counts(
        model,
        np.array([[-3.0], [3.0]]),
        n_classes=2,
        sigma=0.1,
        k_prime=1,
        n_draws=20,
        batch_size=16,
        random_state=0,
    )
    np.testing.assert_array_equal(c, [[20, 0], [0, 20]])


@pytest.mark.parametrize("generic", [False, True])
def test_empty_input_gives_empty_counts(generic):
    model = TorchAdapter(_linear()) if generic else _linear()
    c = counts(model, np.zeros((0, N_FEATURES), dtype=np.float32))
    assert c.shape == (0, N_CLASSES) and c.dtype == np.int64


@pytest.mark.parametrize("generic", [False, True])
def test_wrong_output_width_is_an_error(X, generic):
    model = TorchAdapter(_linear()) if generic else _linear()
    with pytest.raises(ValueError, match="scores 4 labels per input but 5"):
        counts(model, X, n_classes=5)


def test_k_prime_larger_than_n_classes_is_an_error(X):
    with pytest.raises(ValueError, match="k_prime"):
        counts(_linear(), X, k_prime=5)


def test_progress_bar_when_verbose(X, capsys):
    counts(_linear(), X, verbose=1)
    assert "sampling" in capsys.readouterr().err
